"""Latency-based routing: epsilon-greedy over a decaying, bounded latency estimate.

Latency drifts (a provider region gets busy, a model is redeployed), so the
estimate weights recent samples most and forgets a deployment whose newest
sample is older than `stale_after_s`: unknown is explored again rather than
trusted or starved. Exploration has two parts. A deployment with no usable
estimate is probed first, but only while it has no call in flight, so a
burst does not pile onto one unmeasured (perhaps just recovered) deployment.
Then a fixed share `epsilon` of calls goes uniformly to any candidate, which
keeps every estimate fresh enough to notice that a slow deployment got fast.

LiteLLM's `routing_strategy_args` names are accepted (`ttl`,
`lowest_latency_buffer`, `max_latency_list_size`) beside Switchboard's own
(`epsilon`, `half_life_s`, `per_output_token`); anything else is an error.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from switchboard.config import Deployment
from switchboard.routing.load import InFlight
from switchboard.routing.strategy import CallKind, Decision

# routing_strategy_args name -> constructor keyword, for each of the two objects.
TRACKER_ARGS: Mapping[str, str] = {
    "max_latency_list_size": "window",
    "ttl": "stale_after_s",
    "half_life_s": "half_life_s",
    "per_output_token": "per_output_token",
}
ROUTING_ARGS: Mapping[str, str] = {
    "lowest_latency_buffer": "tie_tolerance",
    "epsilon": "epsilon",
}


@dataclass(slots=True, eq=False)
class _Series:
    """One deployment's samples of one call kind, and their decayed mean once asked for."""

    # (time, value) samples, oldest first.
    samples: deque[tuple[float, float]]
    # None until an estimate needs it after a sample arrived: ages count from the
    # newest sample, so only a new sample changes it, and only latency routing reads it.
    mean: float | None = None


class LatencyTracker:
    """Recent latency samples per deployment and call kind, at most `window` each.

    COMPLETE samples are whole-call latency (per output token with
    `per_output_token`, so long answers do not look like slow deployments);
    STREAM samples are time to first token. The two never mix.
    """

    def __init__(
        self,
        clock: Callable[[], float],
        *,
        window: int = 10,
        half_life_s: float = 10.0,
        stale_after_s: float = 60.0,
        per_output_token: bool = False,
    ) -> None:
        if window < 1:
            raise ValueError(f"window must be at least 1, got {window}")
        if not half_life_s > 0:
            raise ValueError(f"half_life_s must be positive, got {half_life_s}")
        if not stale_after_s > 0:
            raise ValueError(f"stale_after_s must be positive, got {stale_after_s}")
        self._clock = clock
        self._window = window
        self._half_life_s = half_life_s
        self._stale_after_s = stale_after_s
        self._per_output_token = per_output_token
        self._series: dict[tuple[str, CallKind], _Series] = {}

    @property
    def window(self) -> int:
        return self._window

    @property
    def stale_after_s(self) -> float:
        return self._stale_after_s

    def record(
        self,
        deployment_id: str,
        kind: CallKind,
        seconds: float,
        output_tokens: int | None = None,
        *,
        age_s: float = 0.0,
    ) -> bool:
        """Keep one successful call's latency; False when the sample was dropped.

        With `per_output_token`, a COMPLETE sample without a token count is
        dropped: seconds and seconds-per-token cannot share one mean.
        `age_s`: how long ago the call ended, for a sample measured by another
        replica (it takes its place among the samples by that time).
        """
        value = seconds
        if self._per_output_token and kind is CallKind.COMPLETE:
            if output_tokens is None:
                return False
            value = seconds / max(output_tokens, 1)
        key = (deployment_id, kind)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = _Series(deque(maxlen=self._window))
        samples = series.samples
        at = self._clock() - age_s
        if not samples or at >= samples[-1][0]:
            samples.append((at, value))
        else:
            # Older than the newest: into its place. A full window then drops
            # its oldest, which may be this sample.
            ordered = sorted([*samples, (at, value)], key=lambda sample: sample[0])
            samples.clear()
            samples.extend(ordered)
        series.mean = None
        return True

    def estimate(self, deployment_id: str, kind: CallKind) -> float | None:
        """Decay-weighted mean of the kept samples; None when absent or stale."""
        series = self._series.get((deployment_id, kind))
        if series is None:
            return None
        samples = series.samples
        if self._clock() - samples[-1][0] > self._stale_after_s:
            return None
        mean = series.mean
        if mean is None:
            mean = series.mean = self._mean(samples)
        return mean

    def _mean(self, samples: deque[tuple[float, float]]) -> float:
        # Ages are taken from the newest sample: the same ratios as from now,
        # without underflowing every weight to zero after a long gap.
        newest = samples[-1][0]
        half_life = self._half_life_s
        total = weights = 0.0
        for at, value in samples:
            weight = 0.5 ** ((newest - at) / half_life)
            total += weight * value
            weights += weight
        return total / weights

    def last_seen(self, deployment_id: str, kind: CallKind) -> float | None:
        series = self._series.get((deployment_id, kind))
        return series.samples[-1][0] if series is not None else None


class LatencyRouting:
    """Epsilon-greedy on the tracker's estimates, near-ties to the least busy."""

    name = "latency-based-routing"

    def __init__(
        self,
        tracker: LatencyTracker,
        load: InFlight,
        rng: random.Random,
        *,
        epsilon: float = 0.1,
        tie_tolerance: float = 0.1,
    ) -> None:
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"epsilon must be within [0, 1], got {epsilon}")
        if not tie_tolerance >= 0.0:
            raise ValueError(f"tie_tolerance must not be negative, got {tie_tolerance}")
        self._tracker = tracker
        self._load = load
        self._rng = rng
        self._epsilon = epsilon
        # Estimates within this factor of the best are near-ties.
        self._tie_factor = 1.0 + tie_tolerance

    def choose(self, candidates: Sequence[Deployment], kind: CallKind) -> Decision:
        # One pass: each candidate estimated once, in order (an estimate reads the clock).
        estimate, load = self._tracker.estimate, self._load
        known: list[tuple[Deployment, float]] = []
        idle_unknown: list[Deployment] = []
        best: float | None = None
        for deployment in candidates:
            seconds = estimate(deployment.id, kind)
            if seconds is not None:
                known.append((deployment, seconds))
                if best is None or seconds < best:  # as min(): the first of equals
                    best = seconds
            elif load[deployment.id] == 0:
                idle_unknown.append(deployment)
        rng = self._rng
        if idle_unknown:
            return Decision(rng.choice(idle_unknown), explored=True)
        if rng.random() < self._epsilon:
            return Decision(rng.choice(candidates), explored=True)
        if best is None:
            # Every candidate is unknown and already probed: spread the wait.
            return Decision(self._least_busy(candidates), explored=True)
        bound = best * self._tie_factor
        return Decision(self._least_busy([d for d, seconds in known if seconds <= bound]))

    def _least_busy(self, deployments: Sequence[Deployment]) -> Deployment:
        if len(deployments) > 1:
            load = self._load
            counts = [load[d.id] for d in deployments]
            fewest = min(counts)
            deployments = [d for d, n in zip(deployments, counts, strict=True) if n == fewest]
        # rng.choice draws even from one: kept, so a seeded run draws as it always did.
        return self._rng.choice(deployments)


def tracker_from_args(args: Mapping[str, Any], clock: Callable[[], float]) -> LatencyTracker:
    """The tracker `routing_strategy_args` describe (routing-only args are left alone)."""
    check_arg_names(args)
    kwargs: dict[str, Any] = {}
    for name, keyword in TRACKER_ARGS.items():
        if name not in args:
            continue
        value = args[name]
        if keyword == "window":
            kwargs[keyword] = _integer(name, value)
        elif keyword == "per_output_token":
            kwargs[keyword] = _boolean(name, value)
        else:
            kwargs[keyword] = _number(name, value)
    return LatencyTracker(clock, **kwargs)


def routing_from_args(
    args: Mapping[str, Any], tracker: LatencyTracker, load: InFlight, rng: random.Random
) -> LatencyRouting:
    """The router `routing_strategy_args` describe (tracker args are left alone)."""
    check_arg_names(args)
    kwargs = {kw: _number(name, args[name]) for name, kw in ROUTING_ARGS.items() if name in args}
    return LatencyRouting(tracker, load, rng, **kwargs)


def check_arg_names(args: Mapping[str, Any]) -> None:
    unknown = sorted(set(args) - set(TRACKER_ARGS) - set(ROUTING_ARGS))
    if unknown:
        known = sorted({*TRACKER_ARGS, *ROUTING_ARGS})
        raise ValueError(
            f"unknown routing_strategy_args for latency-based-routing: {unknown}; "
            f"expected some of {known}"
        )


def _number(name: str, value: Any) -> float:
    # bool is an int to Python, never a latency or a share to a config author.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"routing_strategy_args.{name} must be a number, got {value!r}")
    return float(value)


def _integer(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"routing_strategy_args.{name} must be an integer, got {value!r}")
    return value


def _boolean(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"routing_strategy_args.{name} must be true or false, got {value!r}")
    return value
