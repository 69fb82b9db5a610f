"""Speed over time: the latency schedule and the time-to-first-token draw."""

from __future__ import annotations

import math
import random

import pytest

from switchboard.sim import InvalidProfileError, LatencyShift, SimProfile, builtin_profiles
from switchboard.sim.timing import Speed, Timing, draw_timing, speed_at

SHIFTING = SimProfile(
    ttft_ms=100.0,
    ttft_jitter_ms=10.0,
    tokens_per_second=50.0,
    latency_schedule=(
        LatencyShift(at_s=10.0, ttft_factor=3.0, tps_factor=0.5),
        LatencyShift(at_s=20.0, ttft_ms=40.0),
        LatencyShift(at_s=30.0, tokens_per_second=400.0, ttft_factor=0.5),
    ),
)


def test_before_the_first_shift_the_base_speed_applies() -> None:
    assert speed_at(SHIFTING, 0.0) == Speed(100.0, 10.0, 50.0)
    assert speed_at(SHIFTING, 9.999) == Speed(100.0, 10.0, 50.0)


def test_factors_scale_the_base() -> None:
    assert speed_at(SHIFTING, 10.0) == Speed(300.0, 30.0, 25.0)


def test_shifts_replace_each_other_instead_of_compounding() -> None:
    assert speed_at(SHIFTING, 25.0) == Speed(40.0, 10.0, 50.0)
    # The last shift halves the *base* ttft (100 ms), not the previous shift's 40 ms.
    assert speed_at(SHIFTING, 1e6) == Speed(50.0, 5.0, 400.0)


def test_ttft_draws_stay_within_the_jitter_and_repeat_with_the_seed() -> None:
    speed = Speed(100.0, 10.0, 50.0)
    rng = random.Random(3)
    draws = [draw_timing(speed, rng).ttft_s for _ in range(1000)]
    assert min(draws) >= 0.090
    assert max(draws) <= 0.110
    assert abs(sum(draws) / len(draws) - 0.100) < 0.002
    again = random.Random(3)
    assert draws[:5] == [draw_timing(speed, again).ttft_s for _ in range(5)]


def test_jitter_never_makes_a_negative_delay() -> None:
    rng = random.Random(0)
    assert all(draw_timing(Speed(1.0, 50.0, 10.0), rng).ttft_s >= 0 for _ in range(200))


def test_inter_token_delay_and_totals() -> None:
    assert Speed(0.0, 0.0, 40.0).inter_token_s == pytest.approx(0.025)
    assert Speed(0.0, 0.0, math.inf).inter_token_s == 0.0
    assert Timing(ttft_s=0.1, inter_token_s=0.01).total_s(11) == pytest.approx(0.2)
    assert Timing(ttft_s=0.1, inter_token_s=0.01).total_s(0) == pytest.approx(0.1)


def test_builtin_profiles_are_clearly_different_speeds() -> None:
    profiles = builtin_profiles()
    assert set(profiles) >= {"instant", "fast", "medium", "slow"}
    instant = profiles["instant"]
    assert instant.ttft_ms == 0
    assert math.isinf(instant.tokens_per_second)
    fast, medium, slow = profiles["fast"], profiles["medium"], profiles["slow"]
    # Neighbouring speeds differ by more than both jitters together.
    assert fast.ttft_ms + fast.ttft_jitter_ms < medium.ttft_ms - medium.ttft_jitter_ms
    assert medium.ttft_ms + medium.ttft_jitter_ms < slow.ttft_ms - slow.ttft_jitter_ms
    assert fast.tokens_per_second > medium.tokens_per_second > slow.tokens_per_second
    assert all(p.max_output_tokens <= 100 for p in profiles.values())


def test_an_unsorted_schedule_is_rejected() -> None:
    with pytest.raises(InvalidProfileError) as caught:
        SimProfile(latency_schedule=(LatencyShift(at_s=5), LatencyShift(at_s=1)))
    assert caught.value.field == "latency_schedule"
