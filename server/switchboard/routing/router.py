"""The routing state of one gateway: who may take a call, who is chosen, what is learnt.

The gateway asks `eligible` for a group's candidates (minus deployments
already tried, cooling down, turned away by their ramp, or too small for
the prompt), lets the strategy choose among them, and reports back how each
attempt went so cooldowns, latency estimates and load stay current.

An optional `RouterObserver` hears of the cooldowns this router begins and
the latency samples it keeps, so replicas can share them
(`switchboard.replicas`). What other replicas report goes into the
health and the tracker directly, never through here, so nothing echoes.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from switchboard.config import Deployment
from switchboard.routing.health import DeploymentHealth, HealthState, HealthView
from switchboard.routing.latency import LatencyTracker
from switchboard.routing.load import InFlight
from switchboard.routing.strategy import CallKind, Decision, Strategy

HEALTHY, COOLING_DOWN = HealthState.HEALTHY, HealthState.COOLING_DOWN


@dataclass(frozen=True, slots=True)
class Eligible:
    candidates: tuple[Deployment, ...]
    # The earliest end of a cooldown that kept a deployment out, if any.
    cooling_until: float | None
    # Every cooldown that kept one out is a provider quota pause.
    cooling_for_quota: bool
    # Deployments whose context window is smaller than the prompt.
    too_small: tuple[Deployment, ...]


class RouterObserver(Protocol):
    """Told of this router's own events, after they are applied; must not raise or block."""

    def cooled(self, deployment_id: str, until: float, quota: bool) -> None:
        """A cooldown began (or was extended) until `until` on the router's clock."""
        ...

    def measured(
        self, deployment_id: str, kind: CallKind, seconds: float, output_tokens: int | None
    ) -> None:
        """The latency tracker kept a sample."""
        ...


class Router:
    def __init__(
        self,
        *,
        groups: Mapping[str, tuple[Deployment, ...]],
        strategy: Strategy,
        health: DeploymentHealth,
        load: InFlight,
        latency: LatencyTracker,
        pre_call_checks: bool = True,
        paused: Callable[[Deployment], float | None] | None = None,
        observer: RouterObserver | None = None,
        vision: Callable[[Deployment], bool] | None = None,
    ) -> None:
        """`paused`: when a deployment may be used again (its provider over budget), or None;
        `vision`: whether a deployment takes images (None: all do)."""
        self._observer = observer
        self._vision = vision
        self._groups = groups
        self._paused = paused
        self._strategy = strategy
        self._health = health
        self._load = load
        self._latency = latency
        self._pre_call_checks = pre_call_checks
        # What `eligible` finds on most calls, every deployment of a group, built once.
        self._whole = {group: Eligible(tuple(ds), None, True, ()) for group, ds in groups.items()}

    @property
    def strategy_name(self) -> str:
        return self._strategy.name

    def takes_images(self, deployment: Deployment) -> bool:
        return self._vision is None or self._vision(deployment)

    def eligible(
        self, group: str, *, exclude: Collection[str], prompt_tokens: int, images: bool = False
    ) -> Eligible:
        """`images`: the request has images, and only deployments with vision may take it."""
        candidates: list[Deployment] = []
        ramping: list[Deployment] = []
        too_small: list[Deployment] = []
        cooling_until: float | None = None
        cooling_for_quota = True
        checks, paused_until = self._pre_call_checks, self._paused
        health = self._health
        view_of = health.view
        deployments = self._groups[group]
        for deployment in deployments:
            if deployment.id in exclude:
                continue
            if images and not self.takes_images(deployment):
                continue
            limit = deployment.max_input_tokens
            if limit is not None and checks and prompt_tokens > limit:
                too_small.append(deployment)
                continue
            paused = paused_until(deployment) if paused_until is not None else None
            if paused is not None:
                # Skipped as if cooling down, and like a quota pause: it ends at the reset.
                cooling_until = paused if cooling_until is None else min(cooling_until, paused)
                continue
            view = view_of(deployment.id)
            state = view.state
            if state is HEALTHY:  # the common case: admitted without a draw
                candidates.append(deployment)
            elif state is COOLING_DOWN:
                assert view.until is not None
                cooling_until = (
                    view.until if cooling_until is None else min(cooling_until, view.until)
                )
                cooling_for_quota = cooling_for_quota and view.quota
            elif health.admits(view):
                candidates.append(deployment)
            else:
                ramping.append(deployment)
        if len(candidates) == len(deployments):  # all of them, in order: nothing kept out
            return self._whole[group]
        # The ramp thins traffic to a recovering deployment; it never refuses
        # a call that has nowhere else to go.
        return Eligible(
            tuple(candidates or ramping), cooling_until, cooling_for_quota, tuple(too_small)
        )

    def choose(self, candidates: Sequence[Deployment], kind: CallKind) -> Decision:
        return self._strategy.choose(candidates, kind)

    def started(self, deployment: Deployment) -> None:
        self._load.started(deployment.id)

    def finished(self, deployment: Deployment) -> None:
        self._load.finished(deployment.id)

    def succeeded(
        self, deployment: Deployment, kind: CallKind, seconds: float, output_tokens: int | None
    ) -> None:
        self._measured(deployment.id, kind, seconds, output_tokens)

    def failed(
        self,
        deployment: Deployment,
        *,
        retry_after: float | None,
        seconds: float | None = None,
        kind: CallKind = CallKind.COMPLETE,
    ) -> float | None:
        """A retryable failure; a slow failure (timeout) also teaches the latency estimate."""
        if seconds is not None:
            self._measured(deployment.id, kind, seconds, None)
        sole = len(self._groups[deployment.model_group]) == 1
        until = self._health.record_failure(deployment.id, retry_after=retry_after, sole=sole)
        if until is not None:
            self._cooled(deployment.id, until)
        return until

    def pause(self, deployment: Deployment, seconds: float) -> float:
        until = self._health.pause(deployment.id, seconds)
        self._cooled(deployment.id, until)
        return until

    def health(self, deployment: Deployment) -> HealthView:
        return self._health.view(deployment.id)

    def in_flight(self, deployment: Deployment) -> int:
        return self._load[deployment.id]

    def _measured(
        self, deployment_id: str, kind: CallKind, seconds: float, output_tokens: int | None
    ) -> None:
        kept = self._latency.record(deployment_id, kind, seconds, output_tokens)
        if kept and self._observer is not None:
            self._observer.measured(deployment_id, kind, seconds, output_tokens)

    def _cooled(self, deployment_id: str, until: float) -> None:
        if self._observer is not None:
            # The running cooldown's kind: a longer one already running wins.
            quota = self._health.view(deployment_id).quota
            self._observer.cooled(deployment_id, until, quota)
