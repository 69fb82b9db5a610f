"""The limiter's Python face: switchboard.limits over the native core.

Every test passes ``now`` explicitly (seconds on the monotonic clock) unless it
is about the implicit clock; none sleeps.
"""

from __future__ import annotations

import math
import threading
import time

import pytest

import switchboard.limits as limits
from switchboard.limits import Denied, Handle, RateLimiter, Ticket

WINDOW = 60.0
TICK = 2.0**-30


@pytest.fixture
def limiter() -> RateLimiter:
    return RateLimiter(WINDOW)


def stamp(limiter: RateLimiter, t: float) -> float:
    """The end of the bucket an admission at ``t`` goes in (exact for these floats)."""
    q = limiter.bucket_seconds
    return (math.floor(t / q) + 1) * q


def test_public_names_are_pinned() -> None:
    assert limits.__all__ == ["Denied", "Handle", "RateLimiter", "Ticket", "native_version"]
    assert limits.native_version() == "0.1.0"


def test_the_classes_are_the_native_ones() -> None:
    for cls in (RateLimiter, Ticket, Denied, Handle):
        assert cls.__module__ == "switchboard._ratelimit"


def test_window_and_bucket_width() -> None:
    limiter = RateLimiter()
    assert limiter.window_seconds == 60.0
    assert limiter.bucket_seconds == 60.0 / 1024
    assert RateLimiter(0.5).bucket_seconds == 0.5 / 1024


@pytest.mark.parametrize("window", [0.0, -1.0, math.inf, -math.inf, math.nan, 2.0**40])
def test_nonsense_windows_are_rejected(window: float) -> None:
    with pytest.raises(ValueError, match="window"):
        RateLimiter(window)


@pytest.mark.parametrize(
    ("rpm", "tpm"),
    [(0, None), (None, 0), (-1, 10), (10, -5), (2**64, None), (None, 2**100)],
)
def test_nonsense_limits_are_rejected(
    limiter: RateLimiter, rpm: int | None, tpm: int | None
) -> None:
    with pytest.raises(ValueError, match="pm must be"):
        limiter.configure("k", rpm, tpm)
    assert len(limiter) == 0


def test_nonsense_arguments_are_rejected(limiter: RateLimiter) -> None:
    limiter.configure("k", 10, 100)
    with pytest.raises(ValueError, match="tokens"):
        limiter.try_acquire(["k"], -1, now=0.0)
    with pytest.raises(ValueError, match="time"):
        limiter.try_acquire(["k"], 1, now=math.nan)
    with pytest.raises(ValueError, match="time"):
        limiter.headroom("k", now=math.inf)
    with pytest.raises(TypeError, match="not a str"):
        limiter.try_acquire("k", 1, now=0.0)
    with pytest.raises(TypeError, match="keys must be str"):
        limiter.try_acquire(["k", 3], 1, now=0.0)  # type: ignore[list-item]
    with pytest.raises(TypeError):
        limiter.try_acquire(["k"], 1.5, now=0.0)  # type: ignore[arg-type]
    # Nothing was reserved by the failed calls.
    assert limiter.headroom("k", now=0.0) == (10, 100)


def test_ticket_and_denied_are_frozen_native_values(limiter: RateLimiter) -> None:
    limiter.configure("k", 1, None)
    ticket = limiter.try_acquire(["k"], 5, now=0.0)
    assert isinstance(ticket, Ticket)
    assert ticket
    assert (ticket.tokens, ticket.settled) == (5, False)
    with pytest.raises(AttributeError):
        ticket.tokens = 7  # type: ignore[misc]
    with pytest.raises(TypeError):
        Ticket()
    denied = limiter.try_acquire(["k"], 5, now=1.0)
    assert isinstance(denied, Denied)
    assert not denied
    with pytest.raises(AttributeError):
        denied.key = "other"  # type: ignore[misc]
    assert "Denied(key='k'" in repr(denied)
    assert "settled=False" in repr(ticket)


def test_unconfigured_keys_are_unlimited(limiter: RateLimiter) -> None:
    ticket = limiter.try_acquire(["nobody"], 10**12, now=0.0)
    assert isinstance(ticket, Ticket)
    assert limiter.headroom("nobody", now=0.0) == (None, None)
    limiter.commit(ticket, 5)


def test_all_or_none_over_several_keys(limiter: RateLimiter) -> None:
    limiter.configure("deployment:a", 10, 1_000)
    limiter.configure("key:caller", 10, 100)
    assert limiter.try_acquire(["key:caller"], 80, now=0.0)
    denied = limiter.try_acquire(["deployment:a", "free", "key:caller"], 50, now=1.0)
    assert isinstance(denied, Denied)
    assert denied.key == "key:caller"
    assert limiter.headroom("deployment:a", now=1.0) == (10, 1_000)
    ticket = limiter.try_acquire(("deployment:a", "key:caller"), 20, now=1.0)
    assert isinstance(ticket, Ticket)
    assert limiter.headroom("deployment:a", now=1.0) == (9, 980)
    assert limiter.headroom("key:caller", now=1.0) == (8, 0)


def test_keys_may_be_any_iterable_and_repeats_count_once(limiter: RateLimiter) -> None:
    limiter.configure("a", 5, None)
    assert limiter.try_acquire(["a", "a", "a"], 1, now=0.0)
    assert limiter.try_acquire(iter(["a"]), 1, now=0.0)
    assert limiter.try_acquire({"a": 1}.keys(), 1, now=0.0)
    assert limiter.headroom("a", now=0.0) == (2, None)


def test_retry_after_is_exact(limiter: RateLimiter) -> None:
    q = limiter.bucket_seconds
    limiter.configure("a", None, 100)
    assert limiter.try_acquire(["a"], 60, now=0.0)  # bucket [0, q): stamped at q
    assert limiter.try_acquire(["a"], 40, now=10.0)
    denied = limiter.try_acquire(["a"], 30, now=20.0)
    assert isinstance(denied, Denied)
    assert (denied.key, denied.never) == ("a", False)
    assert denied.retry_at == WINDOW + q
    assert denied.retry_after == WINDOW + q - 20.0
    # One tick before: still refused, and told the same time.
    early = limiter.try_acquire(["a"], 30, now=denied.retry_at - TICK)
    assert isinstance(early, Denied)
    assert early.retry_at == denied.retry_at
    assert early.retry_after == TICK
    assert limiter.try_acquire(["a"], 30, now=20.0 + denied.retry_after)


def test_retry_after_lands_on_retry_at_from_any_float_now(limiter: RateLimiter) -> None:
    limiter.configure("a", 1, None)
    assert limiter.try_acquire(["a"], 0, now=1234.567891)
    now = 1250.000000123
    denied = limiter.try_acquire(["a"], 0, now=now)
    assert isinstance(denied, Denied)
    assert now + denied.retry_after >= denied.retry_at
    assert limiter.try_acquire(["a"], 0, now=now + denied.retry_after)


def test_retry_after_lands_on_retry_at_across_zero(limiter: RateLimiter) -> None:
    # Found by search: here the float ``retry_at - now`` alone falls short.
    limiter.configure("a", 1, None)
    assert limiter.try_acquire(["a"], 0, now=-45.07906931512436)
    now = -20.545722344691715
    denied = limiter.try_acquire(["a"], 0, now=now)
    assert isinstance(denied, Denied)
    assert denied.retry_at == 14.94140625
    assert now + (denied.retry_at - now) < denied.retry_at
    assert now + denied.retry_after >= denied.retry_at
    assert limiter.try_acquire(["a"], 0, now=now + denied.retry_after)


def test_the_refusing_key_is_the_one_with_the_longest_wait(limiter: RateLimiter) -> None:
    for key in ("a", "b", "c"):
        limiter.configure(key, 1, 100)
    assert limiter.try_acquire(["a"], 1, now=0.0)
    assert limiter.try_acquire(["b"], 1, now=5.0)
    assert limiter.try_acquire(["c"], 1, now=5.0)
    denied = limiter.try_acquire(["a", "b", "c"], 1, now=6.0)
    assert isinstance(denied, Denied)
    assert denied.key == "b"  # b and c wait equally long: the first named
    assert denied.retry_after == stamp(limiter, 5.0) + WINDOW - 6.0
    denied = limiter.try_acquire(["c", "b", "a"], 1, now=6.0)
    assert isinstance(denied, Denied)
    assert denied.key == "c"


def test_never_fits_is_a_distinct_refusal(limiter: RateLimiter) -> None:
    limiter.configure("small", None, 100)
    limiter.configure("busy", 1, None)
    assert limiter.try_acquire(["busy"], 0, now=0.0)
    denied = limiter.try_acquire(["busy", "small"], 101, now=1.0)
    assert isinstance(denied, Denied)
    assert denied.never
    assert denied.key == "small"  # "never" outlasts any finite wait
    assert denied.retry_after == math.inf
    assert denied.retry_at == math.inf
    assert limiter.try_acquire(["small"], 100, now=1.0)


def test_commit_corrects_down_and_up(limiter: RateLimiter) -> None:
    limiter.configure("a", 10, 1_000)
    ticket = limiter.try_acquire(["a"], 500, now=0.0)
    assert isinstance(ticket, Ticket)
    limiter.commit(ticket, 120, now=1.0)
    assert ticket.settled
    assert limiter.headroom("a", now=1.0) == (9, 880)
    bigger = limiter.try_acquire(["a"], 100, now=2.0)
    assert isinstance(bigger, Ticket)
    limiter.commit(bigger, 1_500)  # more than reserved, more than the limit
    assert limiter.headroom("a", now=2.0) == (8, 0)
    denied = limiter.try_acquire(["a"], 0, now=3.0)
    assert isinstance(denied, Denied)
    # Enough leaves the window only when the over-running call's bucket does.
    assert denied.retry_at == stamp(limiter, 2.0) + WINDOW


def test_release_refunds_and_headroom_returns_after_the_window(limiter: RateLimiter) -> None:
    limiter.configure("a", 3, 300)
    tickets = [limiter.try_acquire(["a"], 100, now=float(i)) for i in range(3)]
    assert limiter.headroom("a", now=3.0) == (0, 0)
    first, second, third = tickets
    assert isinstance(first, Ticket)
    assert isinstance(second, Ticket)
    assert isinstance(third, Ticket)
    limiter.release(first, now=4.0)
    assert limiter.headroom("a", now=4.0) == (1, 100)
    limiter.commit(second, 40, now=4.0)
    assert limiter.headroom("a", now=4.0) == (1, 160)
    assert limiter.headroom("a", now=stamp(limiter, 2.0) + WINDOW - TICK) == (2, 200)
    assert limiter.headroom("a", now=stamp(limiter, 2.0) + WINDOW) == (3, 300)


def test_settling_twice_raises_and_changes_nothing(limiter: RateLimiter) -> None:
    limiter.configure("a", 10, 1_000)
    ticket = limiter.try_acquire(["a"], 300, now=0.0)
    assert isinstance(ticket, Ticket)
    limiter.commit(ticket, 100, now=0.0)
    with pytest.raises(ValueError, match="already"):
        limiter.commit(ticket, 5, now=0.0)
    with pytest.raises(ValueError, match="already"):
        limiter.release(ticket, now=0.0)
    assert limiter.headroom("a", now=0.0) == (9, 900)
    other = limiter.try_acquire(["a"], 300, now=0.0)
    assert isinstance(other, Ticket)
    limiter.release(other)
    with pytest.raises(ValueError, match="already"):
        limiter.release(other)
    assert limiter.headroom("a", now=0.0) == (9, 900)


def test_a_ticket_settles_only_where_it_was_issued(limiter: RateLimiter) -> None:
    limiter.configure("a", 10, None)
    ticket = limiter.try_acquire(["a"], 1, now=0.0)
    assert isinstance(ticket, Ticket)
    with pytest.raises(ValueError, match="another limiter"):
        RateLimiter().commit(ticket, 1)
    assert not ticket.settled
    limiter.release(ticket)


def test_reconfiguring_keeps_history(limiter: RateLimiter) -> None:
    limiter.configure("a", 10, 100)
    assert limiter.try_acquire(["a"], 50, now=0.0)
    limiter.configure("a", 10, 60)
    assert limiter.headroom("a", now=1.0) == (9, 10)
    assert not limiter.try_acquire(["a"], 11, now=1.0)
    limiter.configure("a", None, None)
    assert limiter.headroom("a", now=1.0) == (None, None)
    assert limiter.try_acquire(["a"], 1_000, now=1.0)
    limiter.configure("a", 10, 60)
    assert limiter.headroom("a", now=2.0) == (8, 0)
    assert len(limiter) == 1


def test_a_key_never_goes_back_in_time(limiter: RateLimiter) -> None:
    limiter.configure("a", 1, None)
    assert limiter.try_acquire(["a"], 0, now=100.0)
    denied = limiter.try_acquire(["a"], 0, now=0.0)  # runs at 100.0
    assert isinstance(denied, Denied)
    assert denied.retry_at == stamp(limiter, 100.0) + WINDOW


def test_the_implicit_clock_agrees_with_time_monotonic(limiter: RateLimiter) -> None:
    before = time.monotonic()
    now = limiter.now()
    after = time.monotonic()
    assert before - 1e-6 <= now <= after + 1e-6
    # Mixing explicit and implicit times is therefore safe.
    limiter.configure("a", 1, None)
    assert limiter.try_acquire(["a"], 0, now=time.monotonic())
    denied = limiter.try_acquire(["a"], 0)
    assert isinstance(denied, Denied)
    assert WINDOW - 1.0 < denied.retry_after <= WINDOW + limiter.bucket_seconds
    assert limiter.headroom("a") == (0, None)


def test_threads_hammering_one_key_never_over_admit() -> None:
    limiter = RateLimiter(3600.0)
    limiter.configure("hot", 1_000, 90_000)
    admitted: list[int] = []
    start = threading.Barrier(4)

    def hammer() -> None:
        start.wait()
        mine = 0
        for i in range(1_500):
            result = limiter.try_acquire(["hot", "key:caller"], 100)
            if isinstance(result, Ticket):
                mine += 1
                if i % 2:
                    limiter.commit(result, 50)
        admitted.append(mine)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    requests_left, tokens_left = limiter.headroom("hot")
    assert requests_left is not None
    assert tokens_left is not None
    assert sum(admitted) == 1_000 - requests_left
    assert sum(admitted) <= 1_000
    assert requests_left == 0 or tokens_left < 100  # saturated on one of them


def test_threads_crossing_keys_do_not_deadlock() -> None:
    limiter = RateLimiter(1.0)
    for key in ("a", "b", "c"):
        limiter.configure(key, None, None)
    orders = (["a", "b", "c"], ["c", "b", "a"], ["b", "c", "a"])

    def churn(keys: list[str]) -> None:
        for _ in range(2_000):
            ticket = limiter.try_acquire(keys, 1)
            assert isinstance(ticket, Ticket)
            limiter.release(ticket)

    threads = [threading.Thread(target=churn, args=(keys,)) for keys in orders]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
        assert not t.is_alive()


# --- handles -------------------------------------------------------------------


def test_a_handle_admits_as_its_name_does(limiter: RateLimiter) -> None:
    limiter.configure("deployment:a", 2, 100)
    a = limiter.handle("deployment:a")
    assert isinstance(a, Handle)
    assert a.key == "deployment:a"
    assert repr(a) == "Handle('deployment:a')"
    ticket = limiter.try_acquire(a, 60, now=0.0)
    assert isinstance(ticket, Ticket)
    limiter.commit(ticket, 30, now=0.0)
    assert limiter.headroom("deployment:a", now=0.0) == (1, 70)
    denied = limiter.try_acquire((a,), 71, now=1.0)
    assert isinstance(denied, Denied)
    assert denied.key == "deployment:a"
    by_name = limiter.try_acquire(["deployment:a"], 71, now=1.0)
    assert isinstance(by_name, Denied)
    assert (denied.retry_at, denied.retry_after) == (by_name.retry_at, by_name.retry_after)
    ticket = limiter.try_acquire([a], 70, now=1.0)
    assert isinstance(ticket, Ticket)
    limiter.release(ticket)
    assert limiter.headroom("deployment:a", now=1.0) == (1, 70)


def test_a_handle_cannot_be_built_or_changed(limiter: RateLimiter) -> None:
    with pytest.raises(TypeError):
        Handle()  # type: ignore[call-arg]
    a = limiter.handle("a")
    with pytest.raises(AttributeError):
        a.key = "b"  # type: ignore[misc]
    with pytest.raises(TypeError):
        limiter.handle(3)  # type: ignore[arg-type]


def test_a_handle_of_another_limiter_is_a_value_error(limiter: RateLimiter) -> None:
    other = RateLimiter(WINDOW)
    for each in (limiter, other):
        each.configure("a", 1, None)
    foreign = other.handle("a")
    for keys in (foreign, (foreign,), [limiter.handle("a"), foreign], ["a", foreign]):
        with pytest.raises(ValueError, match="another limiter"):
            limiter.try_acquire(keys, 1, now=0.0)
    # Nothing was reserved by the refused calls.
    assert limiter.headroom("a", now=0.0) == (1, None)
    assert other.headroom("a", now=0.0) == (1, None)


def test_a_handle_of_an_unconfigured_key_is_unlimited_until_configured(
    limiter: RateLimiter,
) -> None:
    late = limiter.handle("key:late")
    assert limiter.try_acquire(late, 10**12, now=0.0)
    assert len(limiter) == 0
    limiter.configure("key:late", 1, None)
    assert limiter.try_acquire(late, 5, now=1.0)
    denied = limiter.try_acquire(late, 5, now=2.0)
    assert isinstance(denied, Denied)
    assert denied.key == "key:late"


def test_a_handle_stays_valid_when_its_key_is_reconfigured(limiter: RateLimiter) -> None:
    limiter.configure("a", 10, 100)
    a = limiter.handle("a")
    assert limiter.try_acquire(a, 50, now=0.0)
    for i in range(1_000):  # other keys, some in the same shard, move nothing
        limiter.configure(f"k{i}", None, None)
    limiter.configure("a", 10, 60)
    assert not limiter.try_acquire(a, 11, now=1.0)
    assert limiter.try_acquire(a, 10, now=1.0)
    assert limiter.headroom("a", now=1.0) == (8, 0)
    limiter.configure("a", None, None)
    assert limiter.try_acquire(a, 1_000, now=1.0)


def test_a_key_named_twice_by_handle_or_name_counts_once(limiter: RateLimiter) -> None:
    limiter.configure("a", 3, None)
    a, again = limiter.handle("a"), limiter.handle("a")
    for keys in ((a, a), (a, again), [a, "a"]):
        ticket = limiter.try_acquire(keys, 1, now=0.0)
        assert isinstance(ticket, Ticket)
        assert "keys_held=1" in repr(ticket)
    assert limiter.headroom("a", now=0.0) == (0, None)


def test_handles_and_names_mix_and_the_refusal_names_the_key(limiter: RateLimiter) -> None:
    limiter.configure("deployment:a", 10, 1_000)
    limiter.configure("key:caller", 10, 100)
    deployment, caller = limiter.handle("deployment:a"), limiter.handle("key:caller")
    assert limiter.try_acquire(caller, 80, now=0.0)
    denied = limiter.try_acquire([deployment, "free", caller], 50, now=1.0)
    assert isinstance(denied, Denied)
    assert denied.key == "key:caller"
    assert limiter.headroom("deployment:a", now=1.0) == (10, 1_000)
    ticket = limiter.try_acquire(["deployment:a", caller], 20, now=1.0)
    assert isinstance(ticket, Ticket)
    assert limiter.headroom("deployment:a", now=1.0) == (9, 980)
    with pytest.raises(TypeError, match="keys must be str or Handle"):
        limiter.try_acquire([deployment, 3], 1, now=1.0)  # type: ignore[list-item]


def test_the_implicit_clock_path_takes_handles(limiter: RateLimiter) -> None:
    limiter.configure("a", 1, None)
    a = limiter.handle("a")
    ticket = limiter.try_acquire(a, 0)
    assert isinstance(ticket, Ticket)
    denied = limiter.try_acquire(a, 0)
    assert isinstance(denied, Denied)
    assert WINDOW - 1.0 < denied.retry_after <= WINDOW + limiter.bucket_seconds
    limiter.commit(ticket, 0)
    with pytest.raises(TypeError, match="must be a Ticket"):
        limiter.commit(denied, 0)  # type: ignore[arg-type]
