"""Which groups a call may move on to when its own group cannot answer.

A call starts in its model group and may try up to `1 + num_retries`
distinct deployments there; when those fail, the group's fallback groups
are tried in order, each the same way. Context-window and content-policy
failures switch to their own fallback lists, as in LiteLLM.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from switchboard.config import RouterSettings


class FallbackKind(enum.Enum):
    # Members are singletons: identity hashing, in C, for the dicts keyed by them.
    __hash__ = object.__hash__

    GENERAL = "fallbacks"
    CONTEXT_WINDOW = "context_window_fallbacks"
    CONTENT_POLICY = "content_policy_fallbacks"


class Planner:
    def __init__(self, router: RouterSettings) -> None:
        # The settings are frozen: each kind's table is looked up once, here.
        self._tables: dict[FallbackKind, Mapping[str, tuple[str, ...]]] = {
            FallbackKind.GENERAL: router.fallbacks,
            FallbackKind.CONTEXT_WINDOW: router.context_window_fallbacks,
            FallbackKind.CONTENT_POLICY: router.content_policy_fallbacks,
        }

    def fallbacks(self, group: str, kind: FallbackKind) -> tuple[str, ...]:
        return self._tables[kind].get(group, ())
