"""Does a call cost more CPU when many connections and calls are open at once?

Switchboard (fast path, Complete, one worker) at the same arrival rate R twice:

- 1 connection: one k6 VU (so one client connection and at most one call in
  flight), the upstream answering at once;
- 256 connections: 256 VUs, each on its own connection, and an upstream that
  waits just under 256/R seconds, so about 256 calls (and as many upstream
  connections) are open at any moment.

Both runs do the same calls per second, so any difference in CPU-seconds per
call comes from holding many connections and calls open (timers, buffers,
scheduling). The CPU window skips each run's ramp (the first upstream delay).
The pair runs in rounds, one run right after the other, and the ratio is the
median of the rounds' ratios: the machine's speed drifts over minutes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.compare.report import median
from bench.compare.suite import Record, Runner
from bench.compare.systems import BY_NAME, launch, start_upstream

SYSTEM = BY_NAME["sb_fast"]
MANY = 256
# Keep the calls in flight a little under the VUs, so arrivals never find every VU busy.
FILL = 0.92


@dataclass(frozen=True)
class Outcome:
    rate: float
    rounds: list[tuple[Record, Record]]  # (1 connection, 256 connections), a round each
    many_delay_ms: float

    def to_json(self) -> dict[str, object]:
        """Each figure is the median over rounds; the ratio pairs the runs of one round."""
        ones = [per_call_ms(one) for one, _ in self.rounds]
        manys = [per_call_ms(many) for _, many in self.rounds]
        ratios = [m / o for o, m in zip(ones, manys, strict=True) if o and m]
        last = self.rounds[-1][1].step
        return {
            "system": SYSTEM.name,
            "rate": self.rate,
            "many_connections": MANY,
            "many_upstream_delay_ms": self.many_delay_ms,
            "cpu_ms_per_call_1": median([v for v in ones if v]),
            "cpu_ms_per_call_256": median([v for v in manys if v]),
            "ratio": median(ratios),
            "ratios": ratios,
            "in_flight_256": median([v for _, m in self.rounds if (v := in_flight(m))]),
            "client_conns_256": last.client_conns,
            "upstream_conns_256": last.upstream_conns,
        }


def per_call_ms(record: Record) -> float | None:
    step = record.step
    if step.sut_cores is None or not step.completed_rate:
        return None
    return 1000 * step.sut_cores / step.completed_rate


def in_flight(record: Record) -> float | None:
    """Calls open at once on average (Little's law: rate times mean latency)."""
    mean = record.step.latency_ms.get("mean")
    return record.step.completed_rate * mean / 1000 if mean else None


def run(runner: Runner, rate: float, duration_s: float, scratch: Path, rounds: int) -> Outcome:
    """`rounds` pairs of runs, 1 then 256 connections, so each pair shares the machine's mood."""
    many_delay_ms = round(FILL * MANY / rate * 1000)
    pairs = []
    for number in range(1, max(1, rounds) + 1):
        one = _one(runner, rate, duration_s, scratch / f"{number}", 1, 0.0, "cpu_1conn")
        many = _one(
            runner, rate, duration_s, scratch / f"{number}", MANY, many_delay_ms, "cpu_256conn"
        )
        pairs.append((one, many))
    return Outcome(rate, pairs, many_delay_ms)


def _one(
    runner: Runner,
    rate: float,
    duration_s: float,
    scratch: Path,
    vus: int,
    delay_ms: float,
    phase: str,
) -> Record:
    upstream = start_upstream(delay_ms)
    try:
        with launch(SYSTEM, upstream, scratch / phase, None) as running:
            skip = delay_ms / 1000 + 1.0
            runner.step(SYSTEM, running, upstream, rate, "warmup", duration_s=skip + 2.0, vus=vus)
            return runner.step(
                SYSTEM,
                running,
                upstream,
                rate,
                phase,
                duration_s=duration_s + skip,
                vus=vus,
                cpu_skip_s=skip,
            )
    finally:
        upstream.proc.terminate()
