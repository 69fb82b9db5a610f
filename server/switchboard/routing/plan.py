"""Which deployments a call may try, in which groups, in what order.

A call starts in its model group and may try up to `1 + num_retries`
distinct deployments there; when those fail, the group's fallback groups
are tried in order, each the same way. Context-window and content-policy
failures switch to their own fallback lists, as in LiteLLM.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping

from switchboard.config import Deployment, RouterSettings
from switchboard.routing.strategies import Strategy


class FallbackKind(enum.Enum):
    GENERAL = "fallbacks"
    CONTEXT_WINDOW = "context_window_fallbacks"
    CONTENT_POLICY = "content_policy_fallbacks"


class Planner:
    def __init__(
        self,
        groups: Mapping[str, tuple[Deployment, ...]],
        router: RouterSettings,
        strategy: Strategy,
    ) -> None:
        self._groups = groups
        self._router = router
        self._strategy = strategy

    @property
    def strategy_name(self) -> str:
        return self._strategy.name

    def fallbacks(self, group: str, kind: FallbackKind) -> tuple[str, ...]:
        table = {
            FallbackKind.GENERAL: self._router.fallbacks,
            FallbackKind.CONTEXT_WINDOW: self._router.context_window_fallbacks,
            FallbackKind.CONTENT_POLICY: self._router.content_policy_fallbacks,
        }[kind]
        return table.get(group, ())

    def deployments(self, group: str) -> Iterator[Deployment]:
        """Distinct deployments of `group`, chosen one at a time by the strategy."""
        remaining = list(self._groups[group])
        for _ in range(1 + self._router.num_retries):
            if not remaining:
                return
            chosen = self._strategy.choose(remaining)
            remaining.remove(chosen)
            yield chosen
