"""Property: the native limiter against an exact sliding log, from Python.

Random sequences of acquire / commit / release / reconfigure at non-decreasing
explicit times (bursts aimed at window and bucket edges), checked step by
step against a pure-Python sliding log computed in exact rationals:

- never over: an admission fits the log over ``(t - window, t]``;
- nearly exact: a request that fits the log over a window one bucket (and one
  tick) longer is admitted, and one that fits over the window itself waits at
  most one bucket width;
- refusals: ``Denied.key`` refuses, ``never`` exactly when tokens exceed a
  key's limit, ``retry_after`` lands on ``retry_at``, the request is refused
  one tick before it and admitted at it;
- headroom lies between what the log leaves over the two windows;
- a ticket settles once.

Requests name their keys by str, by ``Handle`` (taken before any key is
configured; a lone one passed bare), or a mix of both, in turn.

``LIMITER_EXAMPLES`` sets the number of examples (default 200).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from switchboard.limits import Denied, Handle, RateLimiter, Ticket

TICKS = 2**30
TICK = Fraction(1, TICKS)
LIMITED = ("a", "b", "c")
NAMES = (*LIMITED, "free")
EXAMPLES = int(os.environ.get("LIMITER_EXAMPLES", "200"))

Limits = tuple[int | None, int | None]


@dataclass
class Entry:
    at: Fraction
    keys: frozenset[str]
    tokens: int
    released: bool = False


@dataclass
class SlidingLog:
    """The exact reference: every admitted request with its exact time."""

    limits: dict[str, Limits]
    entries: list[Entry] = field(default_factory=list)

    def usage(self, key: str, now: Fraction, window: Fraction) -> tuple[int, int]:
        requests = tokens = 0
        for e in self.entries:
            if not e.released and key in e.keys and now - window < e.at <= now:
                requests += 1
                tokens += e.tokens
        return requests, tokens

    def fits(self, key: str, tokens: int, now: Fraction, window: Fraction) -> bool:
        requests, used = self.usage(key, now, window)
        rpm, tpm = self.limits[key]
        return (rpm is None or requests < rpm) and (tpm is None or used + tokens <= tpm)


@dataclass(frozen=True)
class By:
    """Move time forward by ``seconds``."""

    seconds: float


@dataclass(frozen=True)
class Snap:
    """Jump to the end of the current bucket, plus ``half_ticks`` half ticks."""

    half_ticks: int


@dataclass(frozen=True)
class Edge:
    """Jump to where the oldest counted entry (or its bucket, if
    ``bucket``) leaves the window, plus ``half_ticks`` half ticks."""

    bucket: bool
    half_ticks: int


Step = By | Snap | Edge


@dataclass(frozen=True)
class Acquire:
    step: Step
    keys: list[str]
    tokens: int
    probe: bool  # if refused, ask again one tick before retry_at, then at it


@dataclass(frozen=True)
class Commit:
    step: Step
    pick: int
    actual: int
    timed: bool


@dataclass(frozen=True)
class Release:
    step: Step
    pick: int
    timed: bool


@dataclass(frozen=True)
class Again:
    """Settle an already settled ticket: must raise."""

    pick: int


@dataclass(frozen=True)
class Configure:
    step: Step
    key: str
    limits: Limits


Op = Acquire | Commit | Release | Again | Configure


@dataclass(frozen=True)
class Scenario:
    window: float
    start: float
    limits: list[Limits]
    ops: list[Op]


def steps(window: float) -> st.SearchStrategy[Step]:
    """Half ticks put times inside a tick, where rounding would show."""
    q = window / 1024
    return st.one_of(
        st.just(By(0.0)),
        st.builds(Snap, st.integers(-4, 2)),
        st.just(By(float(TICK))),
        st.floats(0.0, 2 * q).map(By),
        st.floats(0.0, window / 6).map(By),
        st.floats(window - 2 * q, window + 2 * q).map(By),
        st.builds(Edge, st.booleans(), st.integers(-4, 4)),
    )


limits_st: st.SearchStrategy[Limits] = st.tuples(
    st.none() | st.integers(1, 5),
    st.none() | st.integers(1, 300),
)


def ops(window: float) -> st.SearchStrategy[Op]:
    step = steps(window)
    picks = st.integers(0, 99)
    return st.one_of(
        st.builds(
            Acquire,
            step,
            st.lists(st.sampled_from(NAMES), min_size=1, max_size=4),
            st.integers(0, 120) | st.integers(121, 400),
            st.booleans(),
        ),
        st.builds(Commit, step, picks, st.integers(0, 400), st.booleans()),
        st.builds(Release, step, picks, st.booleans()),
        st.builds(Again, picks),
        st.builds(Configure, step, st.sampled_from(LIMITED), limits_st),
    )


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    window = draw(st.sampled_from([60.0, 1.0, 0.37, 3.5]))
    return Scenario(
        window=window,
        start=draw(st.floats(0.0, 1e6) | st.floats(-100.0, 100.0)),
        limits=draw(st.lists(limits_st, min_size=3, max_size=3)),
        ops=draw(st.lists(ops(window), min_size=1, max_size=60)),
    )


class Run:
    def __init__(self, window: float, start: float, limits: list[Limits]) -> None:
        self.limiter = RateLimiter(window)
        self.handles = {name: self.limiter.handle(name) for name in NAMES}
        self.acquisitions = 0
        self.log = SlidingLog(dict(zip(LIMITED, limits, strict=True)))
        for key, (rpm, tpm) in self.log.limits.items():
            self.limiter.configure(key, rpm, tpm)
        self.asked = Fraction(window)
        self.window = Fraction(self.limiter.window_seconds)  # the asked one, rounded up a tick
        self.width = Fraction(self.limiter.bucket_seconds)
        assert self.window >= self.asked
        assert self.window - self.asked < TICK
        self.now = start
        self.open: list[tuple[Ticket, Entry]] = []
        self.settled: list[Ticket] = []

    def step(self, step: Step) -> None:
        match step:
            case By(seconds):
                target = self.now + seconds
            case Snap(half_ticks):
                w = int(self.width * TICKS)
                end = (math.floor(Fraction(self.now) * TICKS) // w + 1) * w
                target = float(Fraction(2 * end + half_ticks, 2 * TICKS))
            case Edge(bucket, half_ticks):
                now = Fraction(self.now)
                live = [
                    e.at
                    for e in self.log.entries
                    if not e.released and e.at > now - self.window - self.width
                ]
                if not live:
                    return
                at = min(live)
                if bucket:
                    w = int(self.width * TICKS)
                    at = Fraction((math.floor(at * TICKS) // w + 1) * w, TICKS)
                target = float(at + self.window + half_ticks * TICK / 2)
        self.now = max(self.now, target)

    def acquire(self, keys: list[str], tokens: int) -> Ticket | Denied:
        now = Fraction(self.now)
        limited = [k for k in dict.fromkeys(keys) if k in LIMITED]
        extended = self.window + self.width + TICK
        fits_exact = all(self.log.fits(k, tokens, now, self.asked) for k in limited)
        fits_extended = all(self.log.fits(k, tokens, now, extended) for k in limited)
        result = self.limiter.try_acquire(self.named(keys), tokens, now=self.now)
        if isinstance(result, Ticket):
            assert fits_exact, f"over-admitted at {self.now}: {keys} {tokens}"
            assert result.tokens == tokens
            entry = Entry(now, frozenset(limited), tokens)
            self.log.entries.append(entry)
            self.open.append((result, entry))
            return result
        assert not result
        assert not fits_extended, f"under-admitted at {self.now}: {keys} {tokens}"
        assert result.key in limited
        assert not self.log.fits(result.key, tokens, now, extended)
        too_big = [k for k in keys if k in LIMITED and (self.log.limits[k][1] or math.inf) < tokens]
        assert result.never == bool(too_big)
        if result.never:
            assert result.key == too_big[0]
            assert result.retry_after == math.inf
        else:
            assert self.now + result.retry_after >= result.retry_at
            assert Fraction(result.retry_at) > now
            if fits_exact:
                assert Fraction(result.retry_at) - now <= self.width
        return result

    def named(self, keys: list[str]) -> list[str] | list[str | Handle] | Handle:
        """The keys by str, by handle, or mixed, in turn."""
        mode, self.acquisitions = self.acquisitions % 3, self.acquisitions + 1
        if mode == 0:
            return keys
        if mode == 1 and len(keys) == 1:
            return self.handles[keys[0]]
        return [self.handles[k] if mode == 1 or i % 2 else k for i, k in enumerate(keys)]

    def take(self, pick: int) -> tuple[Ticket, Entry] | None:
        if not self.open:
            return None
        return self.open.pop(pick % len(self.open))

    def check_headroom(self) -> None:
        now = Fraction(self.now)
        for key in LIMITED:
            requests, tokens = self.limiter.headroom(key, now=self.now)
            low = self.log.usage(key, now, self.asked)
            high = self.log.usage(key, now, self.window + self.width + TICK)
            for left, limit, lo, hi in zip(
                (requests, tokens), self.log.limits[key], low, high, strict=True
            ):
                if limit is None:
                    assert left is None
                else:
                    assert left is not None
                    assert max(0, limit - hi) <= left <= max(0, limit - lo), key

    def settle_again(self, ticket: Ticket) -> None:
        with pytest.raises(ValueError, match="already"):
            self.limiter.commit(ticket, 1)
        with pytest.raises(ValueError, match="already"):
            self.limiter.release(ticket)

    def apply(self, op: Op) -> None:
        match op:
            case Acquire(step, keys, tokens, probe):
                self.step(step)
                result = self.acquire(keys, tokens)
                if probe and isinstance(result, Denied) and not result.never:
                    started = self.now
                    self.now = max(self.now, float(Fraction(result.retry_at) - TICK))
                    early = self.acquire(keys, tokens)
                    assert isinstance(early, Denied)
                    assert early.retry_at == result.retry_at
                    self.now = started + result.retry_after
                    assert isinstance(self.acquire(keys, tokens), Ticket)
            case Commit(step, pick, actual, timed):
                self.step(step)
                if taken := self.take(pick):
                    ticket, entry = taken
                    self.limiter.commit(ticket, actual, now=self.now if timed else None)
                    entry.tokens = actual
                    assert ticket.settled
                    self.settled.append(ticket)
            case Release(step, pick, timed):
                self.step(step)
                if taken := self.take(pick):
                    ticket, entry = taken
                    self.limiter.release(ticket, now=self.now if timed else None)
                    entry.released = True
                    assert ticket.settled
                    self.settled.append(ticket)
            case Again(pick):
                if self.settled:
                    self.settle_again(self.settled[pick % len(self.settled)])
            case Configure(step, key, (rpm, tpm)):
                self.step(step)
                self.limiter.configure(key, rpm, tpm)
                self.log.limits[key] = (rpm, tpm)
        self.check_headroom()


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(scenarios())
# A burst exactly at the window edge: refused one tick early, admitted at it.
@example(
    Scenario(
        60.0,
        100.0,
        [(2, None), (None, 100), (None, None)],
        [
            Acquire(By(0.0), ["a", "b"], 60, False),
            Acquire(By(10.0), ["a", "b"], 40, False),
            Acquire(Edge(False, -2), ["a", "b"], 30, True),
            Acquire(Edge(True, 0), ["a", "b"], 30, True),
        ],
    )
)
# Admitted half a tick before its bucket ends; asked again one tick before
# the entry's true expiry, which the bucket's end must still cover.
@example(
    Scenario(
        60.0,
        100.0,
        [(1, None), (None, None), (None, None)],
        [Acquire(Snap(-1), ["a"], 0, False), Acquire(Edge(False, -1), ["a"], 0, True)],
    )
)
# A commit far above the reservation, then refunds.
@example(
    Scenario(
        1.0,
        5.0,
        [(None, 50), (3, None), (None, None)],
        [
            Acquire(By(0.0), ["a", "c", "free"], 10, False),
            Commit(By(0.25), 0, 400, True),
            Acquire(By(0.0), ["a"], 0, True),
            Again(0),
            Release(By(0.0), 0, False),
        ],
    )
)
def test_the_limiter_matches_the_exact_sliding_log(scenario: Scenario) -> None:
    run = Run(scenario.window, scenario.start, scenario.limits)
    for op in scenario.ops:
        run.apply(op)
