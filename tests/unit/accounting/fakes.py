"""A wall clock that tests set and advance, and call records built by keyword."""

from __future__ import annotations

from switchboard.accounting import AttemptRecord, CallRecord

# 2026-12-03T10:20:00Z: inside an hour, a day and a month, none of them at its edge.
T0 = 1_796_293_200.0


class Wall:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def attempt(
    deployment: str = "gpt-a",
    outcome: str = "success",
    *,
    provider: str = "openai",
    latency_s: float = 0.5,
    input_tokens: int = 0,
    output_tokens: int = 0,
    cost_usd: float = 0.0,
) -> AttemptRecord:
    return AttemptRecord(
        deployment, provider, outcome, latency_s, input_tokens, output_tokens, cost_usd
    )


def call(
    *attempts: AttemptRecord,
    group: str = "chat",
    key: str | None = "alice",
    team: str | None = "red",
    outcome: str = "success",
    latency_s: float | None = 0.5,
    input_tokens: int = 0,
    output_tokens: int = 0,
    cost_usd: float = 0.0,
    saved_usd: float = 0.0,
    cache_hit: bool = False,
) -> CallRecord:
    return CallRecord(
        group=group,
        key=key,
        team=team,
        outcome=outcome,
        latency_s=latency_s,
        attempts=attempts,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cost_usd=cost_usd,
        saved_usd=saved_usd,
        cache_hit=cache_hit,
    )


def paid(cost_usd: float, *, deployment: str = "gpt-a", **kwargs: object) -> CallRecord:
    """A successful call of one attempt that cost `cost_usd`."""
    answered = attempt(deployment, cost_usd=cost_usd, input_tokens=10, output_tokens=5)
    return call(answered, cost_usd=cost_usd, input_tokens=10, output_tokens=5, **kwargs)  # type: ignore[arg-type]
