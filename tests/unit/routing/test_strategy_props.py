"""Properties every strategy keeps, whatever the candidates and their state."""

from __future__ import annotations

import random
from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from switchboard.config import Deployment
from switchboard.routing.latency import LatencyTracker
from switchboard.routing.load import InFlight
from switchboard.routing.strategies import STRATEGY_NAMES, build_strategy
from switchboard.routing.strategy import CallKind
from tests.unit.routing.fakes import FakeClock, deployment

maybe_positive = st.none() | st.integers(1, 10**6)
maybe_price = st.none() | st.floats(0, 1e-3)


@dataclass
class Candidate:
    deployment: Deployment
    in_flight: int
    latencies: list[float]
    age_s: float
    headroom: tuple[int | None, int | None]


@st.composite
def candidates(draw: st.DrawFn) -> list[Candidate]:
    ids = draw(
        st.lists(st.text("abcdefgh", min_size=1, max_size=3), min_size=1, max_size=6, unique=True)
    )
    out = []
    for id in ids:
        rpm, tpm = draw(maybe_positive), draw(maybe_positive)
        d = deployment(
            id,
            rpm=rpm,
            tpm=tpm,
            weight=draw(st.none() | st.floats(0.01, 100)),
            input_cost_per_token=draw(maybe_price),
            output_cost_per_token=draw(maybe_price),
        )
        headroom = (
            None if rpm is None else draw(st.integers(0, rpm)),
            None if tpm is None else draw(st.integers(0, tpm)),
        )
        out.append(
            Candidate(
                d,
                draw(st.integers(0, 5)),
                draw(st.lists(st.floats(0, 100), max_size=12)),
                draw(st.floats(0, 200)),
                headroom,
            )
        )
    return out


@given(
    cands=candidates(),
    name=st.sampled_from(STRATEGY_NAMES),
    kind=st.sampled_from(CallKind),
    seed=st.integers(0, 2**32),
    epsilon=st.floats(0, 1),
)
def test_choose_returns_one_of_the_candidates(
    cands: list[Candidate], name: str, kind: CallKind, seed: int, epsilon: float
) -> None:
    clock = FakeClock()
    tracker = LatencyTracker(clock)
    load = InFlight()
    for c in cands:
        for seconds in c.latencies:
            tracker.record(c.deployment.id, kind, seconds)
        for _ in range(c.in_flight):
            load.started(c.deployment.id)
    clock.advance(max((c.age_s for c in cands), default=0.0))
    headroom = {c.deployment.id: c.headroom for c in cands}
    strategy = build_strategy(
        name,
        {"epsilon": epsilon} if name == "latency-based-routing" else {},
        rng=random.Random(seed),
        clock=clock,
        load=load,
        latency=tracker,
        headroom=lambda d: headroom[d.id],
    )
    offered = tuple(c.deployment for c in cands)
    for _ in range(3):
        chosen = strategy.choose(offered, kind).deployment
        assert any(chosen is d for d in offered)
