"""Profiles: what kind of upstream the simulator pretends to be.

A profile is a value, chosen per request by the request's `model`, so one simulator
process can stand in for a fast deployment, a slow one and a flaky one at once, the
way the gateway's config names several deployments.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from .errors import InvalidProfileError
from .faults import FaultRates

MODEL_PREFIX = "sim-"
"""Accepted in front of a profile name so configs can say `openai/sim-fast`."""


@dataclass(frozen=True, slots=True)
class LatencyShift:
    """From `at_s` seconds after the simulator started, the profile runs at another speed.

    Overrides replace the profile's base value first; the factors then scale the
    result. Shifts do not compound: the latest shift that has started applies to the
    base profile alone, so a schedule reads as a list of states, not of deltas.
    """

    at_s: float
    ttft_factor: float = 1.0
    tps_factor: float = 1.0
    ttft_ms: float | None = None
    tokens_per_second: float | None = None

    def __post_init__(self) -> None:
        if not self.at_s >= 0:
            raise InvalidProfileError("at_s", "must be >= 0")
        if not self.ttft_factor >= 0:
            raise InvalidProfileError("ttft_factor", "must be >= 0")
        if not self.tps_factor > 0:
            raise InvalidProfileError("tps_factor", "must be > 0")
        if self.ttft_ms is not None and not self.ttft_ms >= 0:
            raise InvalidProfileError("ttft_ms", "must be >= 0")
        if self.tokens_per_second is not None and not self.tokens_per_second > 0:
            raise InvalidProfileError("tokens_per_second", "must be > 0")


@dataclass(frozen=True, slots=True)
class SimProfile:
    """Speed, output length and failure behaviour of one simulated deployment.

    `tokens_per_second` may be `math.inf` (no inter-token delay). Output length is
    drawn uniformly from `[min_output_tokens, max_output_tokens]` and then capped by
    the request's `max_tokens`, which is what makes `finish_reason` "length".
    """

    ttft_ms: float = 0.0
    ttft_jitter_ms: float = 0.0
    tokens_per_second: float = math.inf
    min_output_tokens: int = 20
    max_output_tokens: int = 60
    faults: FaultRates = field(default_factory=FaultRates)
    tpm_budget: int | None = None
    """Tokens (prompt + completion) per rolling window before answering 429."""
    rpm_budget: int | None = None
    """Requests per rolling window before answering 429."""
    budget_window_s: float = 60.0
    """The rolling window of both budgets (a minute, as providers count; shorter in tests)."""
    max_context_tokens: int | None = None
    """Prompts longer than this get OpenAI's context_length_exceeded error."""
    latency_schedule: tuple[LatencyShift, ...] = ()
    quality: float = 0.8
    """How well the model it plays answers hard prompts, in [0, 1]: read by evaluations
    of difficulty routing (bench/auto.py) and reported in the `x-sim-quality` header."""
    broken_json_rate: float = 0.0
    """The share of answers to `response_format` JSON requests that are not valid JSON
    (cut short), so a gateway's validation and fallback can be tested."""

    def __post_init__(self) -> None:
        if not self.ttft_ms >= 0:
            raise InvalidProfileError("ttft_ms", "must be >= 0")
        if not self.ttft_jitter_ms >= 0:
            raise InvalidProfileError("ttft_jitter_ms", "must be >= 0")
        if not self.tokens_per_second > 0:
            raise InvalidProfileError("tokens_per_second", "must be > 0 (inf for no delay)")
        if self.min_output_tokens < 1:
            raise InvalidProfileError("min_output_tokens", "must be >= 1")
        if self.max_output_tokens < self.min_output_tokens:
            raise InvalidProfileError("max_output_tokens", "must be >= min_output_tokens")
        if self.tpm_budget is not None and self.tpm_budget < 1:
            raise InvalidProfileError("tpm_budget", "must be >= 1")
        if self.rpm_budget is not None and self.rpm_budget < 1:
            raise InvalidProfileError("rpm_budget", "must be >= 1")
        if not self.budget_window_s > 0:
            raise InvalidProfileError("budget_window_s", "must be > 0")
        if self.max_context_tokens is not None and self.max_context_tokens < 1:
            raise InvalidProfileError("max_context_tokens", "must be >= 1")
        if not 0 <= self.quality <= 1:
            raise InvalidProfileError("quality", "must be in [0, 1]")
        if not 0 <= self.broken_json_rate <= 1:
            raise InvalidProfileError("broken_json_rate", "must be in [0, 1]")
        starts = [shift.at_s for shift in self.latency_schedule]
        if starts != sorted(starts):
            raise InvalidProfileError("latency_schedule", "must be sorted by at_s")


def builtin_profiles() -> dict[str, SimProfile]:
    """The profiles every simulator knows; a fresh dict so callers may extend it.

    Speeds differ by well over their jitter so routing tests can tell them apart;
    outputs stay short so a test suite full of streams stays quick.
    """
    return {
        "instant": SimProfile(ttft_ms=0.0, tokens_per_second=math.inf),
        "fast": SimProfile(ttft_ms=40.0, ttft_jitter_ms=10.0, tokens_per_second=200.0),
        "medium": SimProfile(ttft_ms=120.0, ttft_jitter_ms=30.0, tokens_per_second=80.0),
        "slow": SimProfile(ttft_ms=300.0, ttft_jitter_ms=75.0, tokens_per_second=40.0),
        # A small cheap model and a large strong one, for the cost aliases.
        "mini": SimProfile(
            ttft_ms=30.0, ttft_jitter_ms=10.0, tokens_per_second=250.0, quality=0.55
        ),
        "large": SimProfile(
            ttft_ms=250.0, ttft_jitter_ms=60.0, tokens_per_second=50.0, quality=0.95
        ),
    }


def resolve_profile_name(model: str, profiles: Mapping[str, SimProfile], default: str) -> str:
    """Map a request's `model` to a profile name; unknown models get the default.

    Falling back instead of answering 404 lets any config model string
    (`openai/gpt-4o` pointed at the simulator) work without a matching profile.
    """
    if model in profiles:
        return model
    if model.startswith(MODEL_PREFIX) and model[len(MODEL_PREFIX) :] in profiles:
        return model[len(MODEL_PREFIX) :]
    return default
