"""Round-robin: by id, cycling, steady when candidates come and go."""

from __future__ import annotations

from switchboard.config import Deployment
from switchboard.routing.round_robin import RoundRobin
from switchboard.routing.strategy import CallKind
from tests.unit.routing.fakes import deployment

A, B, C, D = (deployment(id) for id in "abcd")


def _ids(strategy: RoundRobin, candidates: tuple[Deployment, ...], calls: int) -> str:
    return "".join(
        strategy.choose(candidates, CallKind.COMPLETE).deployment.id for _ in range(calls)
    )


def test_cycles_in_id_order_whatever_the_given_order() -> None:
    assert _ids(RoundRobin(), (C, A, B), 7) == "abcabca"


def test_a_deployment_leaving_or_joining_does_not_reset_the_cycle() -> None:
    strategy = RoundRobin()
    assert _ids(strategy, (A, B, C, D), 2) == "ab"
    assert _ids(strategy, (A, B, D), 2) == "da"  # c cooling down: skipped, not restarted
    assert _ids(strategy, (A, B, C, D), 3) == "bcd"  # c back in its turn


def test_groups_keep_their_own_turns() -> None:
    strategy = RoundRobin()
    x, y = deployment("x", group="h"), deployment("y", group="h")
    assert _ids(strategy, (A, B), 1) == "a"
    assert _ids(strategy, (x, y), 1) == "x"
    assert _ids(strategy, (A, B), 1) == "b"
