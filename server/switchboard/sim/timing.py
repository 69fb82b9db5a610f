"""When tokens come out: the latency schedule and the per-request timing draw.

Kept apart from the HTTP code so the routing benchmarks can reason about (and tests
can check) exactly how fast a profile is at any moment without starting a server.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from .profiles import LatencyShift, SimProfile


@dataclass(frozen=True, slots=True)
class Speed:
    """A profile's speed at one moment, after the latency schedule is applied."""

    ttft_ms: float
    ttft_jitter_ms: float
    tokens_per_second: float

    @property
    def inter_token_s(self) -> float:
        return 0.0 if math.isinf(self.tokens_per_second) else 1.0 / self.tokens_per_second


@dataclass(frozen=True, slots=True)
class Timing:
    """The delays of one response: before the first token, then between tokens."""

    ttft_s: float
    inter_token_s: float

    def total_s(self, tokens: int) -> float:
        """How long a non-streamed response of `tokens` tokens takes to produce."""
        return self.ttft_s + max(tokens - 1, 0) * self.inter_token_s


def active_shift(profile: SimProfile, elapsed_s: float) -> LatencyShift | None:
    current: LatencyShift | None = None
    for shift in profile.latency_schedule:
        if shift.at_s <= elapsed_s:
            current = shift
        else:
            break
    return current


def speed_at(profile: SimProfile, elapsed_s: float) -> Speed:
    """The profile's speed `elapsed_s` seconds after the simulator started."""
    shift = active_shift(profile, elapsed_s)
    if shift is None:
        return Speed(profile.ttft_ms, profile.ttft_jitter_ms, profile.tokens_per_second)
    ttft = profile.ttft_ms if shift.ttft_ms is None else shift.ttft_ms
    tps = profile.tokens_per_second if shift.tokens_per_second is None else shift.tokens_per_second
    return Speed(
        ttft_ms=ttft * shift.ttft_factor,
        ttft_jitter_ms=profile.ttft_jitter_ms * shift.ttft_factor,
        tokens_per_second=tps * shift.tps_factor,
    )


def draw_timing(speed: Speed, rng: random.Random) -> Timing:
    """Draw this request's time to first token: uniform within mean ± jitter, never < 0.

    A zero jitter consumes nothing from the RNG, so instant profiles stay cheap and
    their content stays independent of timing.
    """
    ttft_ms = speed.ttft_ms
    if speed.ttft_jitter_ms > 0:
        ttft_ms += rng.uniform(-speed.ttft_jitter_ms, speed.ttft_jitter_ms)
    return Timing(ttft_s=max(ttft_ms, 0.0) / 1000.0, inter_token_s=speed.inter_token_s)
