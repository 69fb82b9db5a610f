"""Usage-based: the largest fraction of the token limit left, then of requests."""

from __future__ import annotations

import random
from collections import Counter

from switchboard.config import Deployment
from switchboard.routing.strategy import CallKind
from switchboard.routing.usage import UsageBased
from tests.unit.routing.fakes import deployment


def _strategy(left: dict[str, tuple[int | None, int | None]]) -> UsageBased:
    return UsageBased(lambda d: left[d.id], random.Random(2))


def _chosen(strategy: UsageBased, candidates: tuple[Deployment, ...]) -> Counter[str]:
    return Counter(strategy.choose(candidates, CallKind.COMPLETE).deployment.id for _ in range(500))


def test_the_largest_share_of_tokens_left_wins_not_the_most_tokens() -> None:
    big = deployment("big", rpm=100, tpm=100_000)
    small = deployment("small", rpm=100, tpm=1_000)
    strategy = _strategy({"big": (100, 40_000), "small": (1, 600)})
    assert set(_chosen(strategy, (big, small))) == {"small"}


def test_requests_left_break_a_token_tie() -> None:
    a = deployment("a", rpm=10, tpm=1_000)
    b = deployment("b", rpm=100, tpm=2_000)
    strategy = _strategy({"a": (9, 500), "b": (50, 1_000)})
    assert set(_chosen(strategy, (a, b))) == {"a"}


def test_unlimited_ranks_above_any_limited() -> None:
    limited = deployment("limited", rpm=100, tpm=1_000)
    unlimited = deployment("unlimited", rpm=100)
    strategy = _strategy({"limited": (100, 1_000), "unlimited": (1, None)})
    assert set(_chosen(strategy, (limited, unlimited))) == {"unlimited"}


def test_headroom_without_a_configured_limit_counts_only_as_some_left() -> None:
    a = deployment("a", tpm=1_000)
    b = deployment("b")  # limited by a key other than its own
    assert set(_chosen(_strategy({"a": (None, 500), "b": (None, 10)}), (a, b))) == {"b"}
    assert set(_chosen(_strategy({"a": (None, 500), "b": (None, 0)}), (a, b))) == {"a"}


def test_ties_are_random() -> None:
    a, b, c = deployment("a", tpm=100), deployment("b", tpm=200), deployment("c", tpm=100)
    counts = _chosen(_strategy({"a": (None, 50), "b": (None, 100), "c": (None, 10)}), (a, b, c))
    assert counts["c"] == 0
    assert 200 < counts["a"] < 300
