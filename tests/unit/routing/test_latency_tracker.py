"""The latency tracker: decaying, bounded, per kind, forgetting what is stale."""

from __future__ import annotations

import math
import tracemalloc

import pytest

from switchboard.routing.latency import LatencyTracker
from switchboard.routing.strategy import CallKind
from tests.unit.routing.fakes import FakeClock

COMPLETE, STREAM = CallKind.COMPLETE, CallKind.STREAM


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_nothing_recorded_is_unknown(clock: FakeClock) -> None:
    tracker = LatencyTracker(clock)
    assert tracker.estimate("a", COMPLETE) is None
    assert tracker.last_seen("a", COMPLETE) is None


def test_recent_samples_weigh_more_by_half_life(clock: FakeClock) -> None:
    tracker = LatencyTracker(clock, half_life_s=10.0)
    tracker.record("a", COMPLETE, 1.0)
    clock.advance(10.0)
    tracker.record("a", COMPLETE, 3.0)
    # The older sample is one half-life older: weight 0.5 against 1.
    estimate = tracker.estimate("a", COMPLETE)
    assert estimate == pytest.approx((0.5 * 1.0 + 1.0 * 3.0) / 1.5)
    assert estimate is not None
    assert estimate > 2.0  # above the plain mean


def test_the_weights_do_not_vanish_after_a_long_quiet_spell(clock: FakeClock) -> None:
    tracker = LatencyTracker(clock, half_life_s=0.001, stale_after_s=1e9)
    tracker.record("a", COMPLETE, 2.0)
    clock.advance(1e6)
    assert tracker.estimate("a", COMPLETE) == 2.0


def test_an_estimate_read_follows_the_next_sample(clock: FakeClock) -> None:
    tracker = LatencyTracker(clock, half_life_s=10.0)
    tracker.record("a", COMPLETE, 1.0)
    assert tracker.estimate("a", COMPLETE) == 1.0
    clock.advance(10.0)
    assert tracker.estimate("a", COMPLETE) == 1.0  # ageing alone changes nothing
    tracker.record("a", COMPLETE, 3.0)
    assert tracker.estimate("a", COMPLETE) == pytest.approx((0.5 * 1.0 + 1.0 * 3.0) / 1.5)


def test_stream_and_complete_are_kept_apart(clock: FakeClock) -> None:
    tracker = LatencyTracker(clock)
    tracker.record("a", COMPLETE, 4.0)
    tracker.record("a", STREAM, 0.25)
    assert tracker.estimate("a", COMPLETE) == 4.0
    assert tracker.estimate("a", STREAM) == 0.25
    assert tracker.estimate("b", COMPLETE) is None


def test_only_the_newest_window_counts(clock: FakeClock) -> None:
    tracker = LatencyTracker(clock, window=3)
    for _ in range(50):
        tracker.record("a", COMPLETE, 100.0)
    for _ in range(3):
        tracker.record("a", COMPLETE, 1.0)
    assert tracker.estimate("a", COMPLETE) == 1.0


def test_memory_stays_bounded_however_many_samples(clock: FakeClock) -> None:
    tracker = LatencyTracker(clock, window=10)

    def record(n: int) -> None:
        for i in range(n):
            clock.advance(0.001)
            tracker.record("a", COMPLETE, float(i))
            tracker.record("a", STREAM, float(i))

    record(100)
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        record(50_000)
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # 100,000 kept samples would take megabytes; a bounded window takes nothing new.
    assert after - before < 4_096


def test_stale_after_the_bound_and_known_up_to_it(clock: FakeClock) -> None:
    tracker = LatencyTracker(clock, stale_after_s=60.0)
    tracker.record("a", COMPLETE, 1.0)
    clock.advance(60.0)
    assert tracker.estimate("a", COMPLETE) == 1.0
    clock.advance(0.001)
    assert tracker.estimate("a", COMPLETE) is None
    assert tracker.last_seen("a", COMPLETE) == pytest.approx(1000.0)


def test_a_new_sample_revives_a_stale_deployment_with_recent_weight(clock: FakeClock) -> None:
    tracker = LatencyTracker(clock, half_life_s=10.0, stale_after_s=60.0)
    tracker.record("a", COMPLETE, 10.0)
    clock.advance(100.0)
    tracker.record("a", COMPLETE, 1.0)
    # The old sample is ten half-lives older than the new one.
    assert tracker.estimate("a", COMPLETE) == pytest.approx((1.0 + 10.0 * 2**-10) / (1 + 2**-10))
    assert tracker.last_seen("a", COMPLETE) == pytest.approx(1100.0)


def test_per_output_token_normalises_complete_only(clock: FakeClock) -> None:
    tracker = LatencyTracker(clock, per_output_token=True)
    tracker.record("a", COMPLETE, 2.0, output_tokens=100)
    tracker.record("a", STREAM, 0.5, output_tokens=100)
    assert tracker.estimate("a", COMPLETE) == pytest.approx(0.02)
    assert tracker.estimate("a", STREAM) == 0.5


def test_per_output_token_drops_samples_without_a_count(clock: FakeClock) -> None:
    tracker = LatencyTracker(clock, per_output_token=True)
    tracker.record("a", COMPLETE, 30.0)
    assert tracker.estimate("a", COMPLETE) is None
    tracker.record("a", COMPLETE, 1.0, output_tokens=0)
    assert tracker.estimate("a", COMPLETE) == 1.0


@pytest.mark.parametrize(
    ("field", "value"),
    [("window", 0), ("half_life_s", 0.0), ("stale_after_s", -1.0), ("half_life_s", math.nan)],
)
def test_rejects_settings_that_cannot_work(clock: FakeClock, field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        LatencyTracker(clock, **{field: value})  # type: ignore[arg-type]


def test_record_says_whether_it_kept_the_sample(clock: FakeClock) -> None:
    tracker = LatencyTracker(clock, per_output_token=True)
    assert tracker.record("a", COMPLETE, 1.0, output_tokens=10)
    assert not tracker.record("a", COMPLETE, 1.0)
    assert tracker.record("a", STREAM, 1.0)


def test_an_aged_sample_takes_its_place_in_time(clock: FakeClock) -> None:
    tracker = LatencyTracker(clock, half_life_s=10.0)
    tracker.record("a", COMPLETE, 3.0)
    tracker.record("a", COMPLETE, 1.0, age_s=10.0)  # older than the one above
    # As if recorded in order: the older sample weighs half.
    assert tracker.estimate("a", COMPLETE) == pytest.approx((0.5 * 1.0 + 3.0) / 1.5)
    assert tracker.last_seen("a", COMPLETE) == 1000.0


def test_an_aged_sample_older_than_a_full_window_is_dropped(clock: FakeClock) -> None:
    tracker = LatencyTracker(clock, window=2)
    tracker.record("a", COMPLETE, 1.0)
    tracker.record("a", COMPLETE, 1.0)
    tracker.record("a", COMPLETE, 100.0, age_s=5.0)
    assert tracker.estimate("a", COMPLETE) == 1.0


def test_an_aged_sample_ages_into_staleness(clock: FakeClock) -> None:
    tracker = LatencyTracker(clock, stale_after_s=60.0)
    tracker.record("a", COMPLETE, 1.0, age_s=59.0)
    assert tracker.estimate("a", COMPLETE) == 1.0
    clock.advance(1.5)
    assert tracker.estimate("a", COMPLETE) is None


def test_the_window_and_staleness_are_visible(clock: FakeClock) -> None:
    tracker = LatencyTracker(clock, window=7, stale_after_s=30.0)
    assert (tracker.window, tracker.stale_after_s) == (7, 30.0)
