"""Which groups a call may move on to when its own group cannot answer.

A call starts in its model group and may try up to `1 + num_retries`
distinct deployments there; when those fail, the group's fallback groups
are tried in order, each the same way. Context-window and content-policy
failures switch to their own fallback lists, as in LiteLLM.
"""

from __future__ import annotations

import enum

from switchboard.config import RouterSettings


class FallbackKind(enum.Enum):
    # Members are singletons: identity hashing, in C, for the dicts keyed by them.
    __hash__ = object.__hash__

    GENERAL = "fallbacks"
    CONTEXT_WINDOW = "context_window_fallbacks"
    CONTENT_POLICY = "content_policy_fallbacks"


class Planner:
    def __init__(self, router: RouterSettings) -> None:
        self._router = router

    def fallbacks(self, group: str, kind: FallbackKind) -> tuple[str, ...]:
        table = {
            FallbackKind.GENERAL: self._router.fallbacks,
            FallbackKind.CONTEXT_WINDOW: self._router.context_window_fallbacks,
            FallbackKind.CONTENT_POLICY: self._router.content_policy_fallbacks,
        }[kind]
        return table.get(group, ())
