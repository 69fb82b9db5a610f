"""SharedLimiter against a real redis-server: decisions, exactness across replicas, outages.

Every time checked is Redis's (TIME, or the times the script replies with),
never the test's: several `SharedLimiter`s on one Redis stand for replicas.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import signal
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest
import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from switchboard.limits.shared import (
    SharedDenied,
    SharedLimiter,
    SharedLimiterUnavailable,
    SharedTicket,
)
from tests.redis_server import RedisServer

pytestmark = pytest.mark.integration

PREFIX = "test:limits:"


def client_for(url: str) -> redis.asyncio.Redis:
    return redis.asyncio.Redis.from_url(
        url, socket_connect_timeout=1.0, socket_timeout=1.0, retry=Retry(NoBackoff(), 0)
    )


@pytest.fixture
async def clients(redis_url: str) -> AsyncIterator[Callable[[], redis.asyncio.Redis]]:
    made: list[redis.asyncio.Redis] = []

    def make() -> redis.asyncio.Redis:
        made.append(client_for(redis_url))
        return made[-1]

    yield make
    for client in made:
        await client.aclose()


def limiter(client: redis.asyncio.Redis, window: float = 2.0) -> SharedLimiter:
    # A generous bound: these tests are about decisions, not latency, on a busy machine.
    return SharedLimiter(client, window_seconds=window, prefix=PREFIX, timeout_s=1.0)


async def redis_now_us(client: redis.asyncio.Redis) -> int:
    seconds, micros = await client.time()
    return int(seconds) * 1_000_000 + int(micros)


def ticket(result: SharedTicket | SharedDenied) -> SharedTicket:
    assert isinstance(result, SharedTicket), result
    return result


def denied(result: SharedTicket | SharedDenied) -> SharedDenied:
    assert isinstance(result, SharedDenied), result
    return result


async def test_admits_up_to_rpm_then_denies_until_the_first_bucket_leaves(
    clients: Callable[[], redis.asyncio.Redis],
) -> None:
    client = clients()
    shared = limiter(client)
    shared.configure("d", rpm=2, tpm=None)
    first = ticket(await shared.try_acquire(["d"], 10))
    ticket(await shared.try_acquire(["d"], 10))
    before = await redis_now_us(client)
    no = denied(await shared.try_acquire(["d"], 10))
    after = await redis_now_us(client)
    assert no.key == "d"
    assert not no.never
    assert not no
    expected = (first.buckets[0] + 1) * shared.bucket_us + shared.window_us
    assert no.retry_at_us == expected
    assert before <= no.decided_at_us <= after
    assert no.retry_after == (expected - no.decided_at_us) / 1_000_000
    assert 0 < no.retry_after <= 2.0 + shared.bucket_us / 1e6
    assert await shared.headroom("d") == (0, None)


async def test_retry_at_is_exact_on_redis_clock(
    clients: Callable[[], redis.asyncio.Redis],
) -> None:
    """Every try before retry_at is refused with the same retry_at; the first after fits."""
    shared = limiter(clients(), window=0.3)
    shared.configure("d", rpm=None, tpm=1_000)
    first = ticket(await shared.try_acquire(["d"], 600))
    ticket(await shared.try_acquire(["d"], 300))
    retry_at = denied(await shared.try_acquire(["d"], 500)).retry_at_us
    assert retry_at == (first.buckets[0] + 1) * shared.bucket_us + shared.window_us
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        result = await shared.try_acquire(["d"], 500)
        if isinstance(result, SharedTicket):
            assert result.admitted_at_us is not None
            assert result.admitted_at_us >= retry_at
            break
        assert result.retry_at_us == retry_at
        assert result.decided_at_us < retry_at
        await asyncio.sleep(0.002)  # polling Redis's clock, bounded by the deadline
    else:
        pytest.fail("never admitted after retry_at")


async def test_never_fits_outranks_a_finite_wait(
    clients: Callable[[], redis.asyncio.Redis],
) -> None:
    shared = limiter(clients())
    shared.configure("d", rpm=1, tpm=None)
    shared.configure("k", rpm=None, tpm=1_000)
    ticket(await shared.try_acquire(["d"], 1))
    no = denied(await shared.try_acquire(["d", "k"], 1_001))
    assert (no.key, no.never, no.retry_after, no.retry_at_us) == ("k", True, math.inf, None)
    assert denied(await shared.try_acquire(["d", "k"], 1_000)).key == "d"
    assert await shared.headroom("k") == (None, 1_000)


async def test_the_longest_wait_is_reported_and_ties_go_to_the_first_named(
    clients: Callable[[], redis.asyncio.Redis],
) -> None:
    shared = limiter(clients())
    for key in ("a", "b"):
        shared.configure(key, rpm=1, tpm=None)
    ticket(await shared.try_acquire(["a", "b"], 1))
    assert denied(await shared.try_acquire(["b", "a"], 1)).key == "b"
    assert denied(await shared.try_acquire(["a", "b"], 1)).key == "a"


async def test_multi_key_admission_is_all_or_none(
    clients: Callable[[], redis.asyncio.Redis],
) -> None:
    shared = limiter(clients())
    shared.configure("deployment", rpm=5, tpm=None)
    shared.configure("alice", rpm=3, tpm=None)
    shared.configure("bob", rpm=3, tpm=None)
    for _ in range(3):
        ticket(await shared.try_acquire(["deployment", "alice"], 1))
    assert denied(await shared.try_acquire(["deployment", "alice"], 1)).key == "alice"
    assert await shared.headroom("deployment") == (2, None)  # the refusal took nothing
    for _ in range(2):
        ticket(await shared.try_acquire(["deployment", "bob"], 1))
    assert denied(await shared.try_acquire(["deployment", "bob"], 1)).key == "deployment"
    assert await shared.headroom("bob") == (1, None)


async def test_multi_key_under_concurrency_counts_on_both_or_neither(
    clients: Callable[[], redis.asyncio.Redis],
) -> None:
    replicas = [limiter(clients()) for _ in range(3)]
    callers = [f"caller:{i}" for i in range(4)]
    for shared in replicas:
        shared.configure("deployment", rpm=40, tpm=None)
        for caller in callers:
            shared.configure(caller, rpm=15, tpm=None)
    admitted = dict.fromkeys(callers, 0)

    async def one(shared: SharedLimiter, caller: str) -> None:
        if isinstance(await shared.try_acquire(["deployment", caller], 1), SharedTicket):
            admitted[caller] += 1

    await asyncio.gather(
        *(one(replicas[i % 3], callers[i % 4]) for i in range(200))
    )  # fmt: skip
    assert sum(admitted.values()) == 40
    assert all(count <= 15 for count in admitted.values())
    left = [await replicas[0].headroom(caller) for caller in callers]
    assert [15 - r for r, _ in left] == [admitted[c] for c in callers]  # type: ignore[operator]
    assert await replicas[0].headroom("deployment") == (0, None)


async def test_commit_and_release_move_headroom_and_settle_once(
    clients: Callable[[], redis.asyncio.Redis],
) -> None:
    shared = limiter(clients())
    shared.configure("d", rpm=10, tpm=1_000)
    up = ticket(await shared.try_acquire(["d"], 100))
    assert await shared.headroom("d") == (9, 900)
    await shared.commit(up, 150)
    assert up.settled
    assert await shared.headroom("d") == (9, 850)
    down = ticket(await shared.try_acquire(["d"], 100))
    await shared.commit(down, 30)
    assert await shared.headroom("d") == (8, 820)
    refunded = ticket(await shared.try_acquire(["d"], 200))
    assert await shared.headroom("d") == (7, 620)
    await shared.release(refunded)
    assert await shared.headroom("d") == (8, 820)
    for settle in (shared.commit(up, 1), shared.release(up), shared.commit(refunded, 1)):
        with pytest.raises(ValueError, match="already"):
            await settle
    assert await shared.headroom("d") == (8, 820)
    other = limiter(clients())
    other.configure("d", rpm=10, tpm=1_000)
    with pytest.raises(ValueError, match="another limiter"):
        await other.commit(ticket(await shared.try_acquire(["d"], 1)), 1)


async def test_commit_up_past_the_limit_blocks_until_it_leaves(
    clients: Callable[[], redis.asyncio.Redis],
) -> None:
    shared = limiter(clients())
    shared.configure("d", rpm=None, tpm=1_000)
    held = ticket(await shared.try_acquire(["d"], 500))
    await shared.commit(held, 1_200)
    assert await shared.headroom("d") == (None, 0)
    no = denied(await shared.try_acquire(["d"], 0))
    assert no.retry_at_us == (held.buckets[0] + 1) * shared.bucket_us + shared.window_us


async def test_a_correction_after_the_bucket_left_the_window_changes_nothing(
    clients: Callable[[], redis.asyncio.Redis],
) -> None:
    client = clients()
    shared = limiter(client, window=0.2)
    shared.configure("d", rpm=None, tpm=1_000)
    old = ticket(await shared.try_acquire(["d"], 400))
    leaves = (old.buckets[0] + 1) * shared.bucket_us + shared.window_us
    # Redis's clock must pass the window: a wait bounded by it (Redis runs on this host).
    await asyncio.sleep((leaves - await redis_now_us(client)) / 1e6 + 0.005)
    assert await redis_now_us(client) >= leaves
    fresh = ticket(await shared.try_acquire(["d"], 100))
    await shared.commit(old, 900)
    assert await shared.headroom("d") == (None, 900)
    await shared.release(fresh)
    assert await shared.headroom("d") == (None, 1_000)


async def test_unconfigured_and_unlimited_keys_create_no_state(
    clients: Callable[[], redis.asyncio.Redis],
) -> None:
    client = clients()
    shared = limiter(client)
    shared.configure("free", rpm=None, tpm=None)
    result = ticket(await shared.try_acquire(["nobody", "free"], 10**12))
    assert result.keys == ()
    assert result.admitted_at_us is None
    await shared.commit(result, 5)
    assert await shared.headroom("nobody") == (None, None)
    assert await client.dbsize() == 0


async def test_any_key_string_is_safe_and_keys_stay_apart(
    clients: Callable[[], redis.asyncio.Redis],
) -> None:
    client = clients()
    shared = limiter(client)
    names = ["a", "a:b", "", "*?[x]{tag}\n\x00 é", "a:r1"]
    for name in names:
        shared.configure(name, rpm=1, tpm=10)
    for name in names:
        ticket(await shared.try_acquire([name, name], 3))  # named twice, counted once
    for name in names:
        assert await shared.headroom(name) == (0, 7)
    assert sorted(await client.keys(f"{PREFIX}*")) == sorted(
        (PREFIX + name).encode() for name in names
    )


async def test_idle_keys_expire_after_the_window_and_a_margin(
    clients: Callable[[], redis.asyncio.Redis],
) -> None:
    client = clients()
    shared = limiter(client)
    shared.configure("d", rpm=5, tpm=None)
    ticket(await shared.try_acquire(["d"], 1))
    ttl_ms = await client.pttl(f"{PREFIX}d")
    assert 2_000 < ttl_ms <= 2_000 + math.ceil(shared.bucket_us / 1_000) + 1_000


async def test_a_flushed_script_is_loaded_again(
    clients: Callable[[], redis.asyncio.Redis],
) -> None:
    client = clients()
    shared = limiter(client)
    shared.configure("d", rpm=5, tpm=None)
    ticket(await shared.try_acquire(["d"], 1))
    await client.script_flush()
    ticket(await shared.try_acquire(["d"], 1))
    assert await shared.headroom("d") == (3, None)


async def test_bad_input_is_refused(clients: Callable[[], redis.asyncio.Redis]) -> None:
    shared = limiter(clients())
    for window in (0.0, -1.0, math.inf, math.nan, 2.0**31 + 1):
        with pytest.raises(ValueError, match="window"):
            SharedLimiter(clients(), window_seconds=window)
    with pytest.raises(ValueError, match="rpm"):
        shared.configure("d", rpm=0, tpm=None)
    with pytest.raises(ValueError, match="tokens"):
        await shared.try_acquire(["d"], -1)
    with pytest.raises(TypeError):
        await shared.try_acquire("d", 1)


# --- exactness across replicas -------------------------------------------------


@dataclass
class Admission:
    stamp: int  # (bucket + 1) * q: when it starts to leave, minus the window
    requests: int  # what it finally counts for: 0 once released
    tokens: int  # min(reserved, committed): no later decision saw less


async def test_no_window_ever_holds_more_than_the_limits_across_replicas(
    clients: Callable[[], redis.asyncio.Redis],
) -> None:
    rpm, tpm, window = 40, 4_000, 0.5
    replicas = [limiter(clients(), window=window) for _ in range(3)]
    for shared in replicas:
        shared.configure("d", rpm=rpm, tpm=tpm)
    q, window_us = replicas[0].bucket_us, replicas[0].window_us
    admissions: list[Admission] = []
    rng = random.Random(20240611)
    stop_at = time.monotonic() + 1.6

    async def worker(shared: SharedLimiter) -> None:
        while time.monotonic() < stop_at:
            tokens = rng.randint(1, 200)
            result = await shared.try_acquire(["d"], tokens)
            if isinstance(result, SharedDenied):
                assert not result.never
                await asyncio.sleep(min(result.retry_after, 0.05))  # the workload: wait it out
                continue
            entry = Admission((result.buckets[0] + 1) * q, 1, tokens)
            admissions.append(entry)
            await asyncio.sleep(rng.uniform(0, 0.004))  # the "call"
            roll = rng.random()
            if roll < 0.15:
                await shared.release(result)
                entry.requests = entry.tokens = 0
            elif roll < 0.9:
                actual = rng.randint(0, tokens * 3 // 2)
                await shared.commit(result, actual)
                entry.tokens = min(tokens, actual)
            # else: never settled, counted at its reservation until it leaves

    await asyncio.gather(*(worker(replicas[i % 3]) for i in range(24)))
    admissions.sort(key=lambda a: a.stamp)
    assert len(admissions) > 2 * rpm
    # Every window (t - window, t] is largest at some stamp t: check each.
    worst_requests = worst_tokens = 0
    low = 0
    requests = tokens = 0
    for high, entry in enumerate(admissions):
        requests += entry.requests
        tokens += entry.tokens
        while admissions[low].stamp <= entry.stamp - window_us:
            requests -= admissions[low].requests
            tokens -= admissions[low].tokens
            low += 1
        if high + 1 == len(admissions) or admissions[high + 1].stamp != entry.stamp:
            worst_requests = max(worst_requests, requests)
            worst_tokens = max(worst_tokens, tokens)
    assert worst_requests <= rpm
    assert worst_tokens <= tpm
    # Utilisation: windows inside the run are saturated on one of the limits.
    first, last = admissions[0].stamp, admissions[-1].stamp
    ratios = []
    for end in range(first + window_us, last - window_us // 2, window_us // 10):
        inside = [a for a in admissions if end - window_us < a.stamp <= end]
        counted = [a for a in inside if a.requests]
        reserved_like = sum(a.tokens for a in counted)
        ratios.append(max(len(counted) / rpm, reserved_like / tpm))
    assert ratios
    # (One window can dip where releases free capacity late in it; on average ~97 %.)
    assert sum(ratios) / len(ratios) >= 0.9, ratios


# --- outages -----------------------------------------------------------------------


async def test_redis_stopped_raises_unavailable_quickly(
    redis_server_factory: Callable[[], RedisServer],
) -> None:
    server = redis_server_factory()
    client = redis.asyncio.Redis(
        host="127.0.0.1", port=server.port, socket_connect_timeout=0.2, socket_timeout=0.2
    )
    try:
        shared = SharedLimiter(client, window_seconds=2.0, prefix=PREFIX, timeout_s=0.05)
        shared.configure("d", rpm=5, tpm=None)
        ticket(await shared.try_acquire(["d"], 1))
        server.stop()
        for _ in range(3):
            start = time.monotonic()
            with pytest.raises(SharedLimiterUnavailable):
                await shared.try_acquire(["d"], 1)
            assert time.monotonic() - start < 0.5
    finally:
        await client.aclose()


async def test_redis_hung_raises_unavailable_within_the_timeout(
    redis_server_factory: Callable[[], RedisServer],
) -> None:
    """A server that accepts but never answers (SIGSTOP): the timeout bounds the call."""
    server = redis_server_factory()
    client = redis.asyncio.Redis(host="127.0.0.1", port=server.port, socket_timeout=5.0)
    try:
        shared = SharedLimiter(client, window_seconds=2.0, prefix=PREFIX, timeout_s=0.05)
        shared.configure("d", rpm=5, tpm=None)
        held = ticket(await shared.try_acquire(["d"], 1))
        os.kill(server.popen.pid, signal.SIGSTOP)
        try:
            for call in (shared.try_acquire(["d"], 1), shared.commit(held, 2)):
                start = time.monotonic()
                with pytest.raises(SharedLimiterUnavailable):
                    await call
                assert time.monotonic() - start < 0.5
            assert held.settled  # a lost settlement is not retried: it could apply twice
        finally:
            os.kill(server.popen.pid, signal.SIGCONT)
    finally:
        await client.aclose()


# --- batching ----------------------------------------------------------------------


async def test_concurrent_acquires_share_round_trips_and_decide_alike(
    clients: Callable[[], redis.asyncio.Redis],
) -> None:
    shared = limiter(clients(), window=60.0)
    shared.configure("d", rpm=12, tpm=None)
    results = await asyncio.gather(*(shared.try_acquire(["d"], 1) for _ in range(20)))
    assert sum(isinstance(r, SharedTicket) for r in results) == 12
    assert all(denied(r).key == "d" for r in results if not isinstance(r, SharedTicket))
    # Asked in one turn of the loop: one pipeline.
    assert (shared.batches, shared.batched) == (1, 20)
    assert await shared.headroom("d") == (0, None)


async def test_an_admission_whose_caller_left_is_released(
    clients: Callable[[], redis.asyncio.Redis],
) -> None:
    shared = limiter(clients(), window=60.0)
    shared.configure("d", rpm=5, tpm=100)
    kept = asyncio.create_task(shared.try_acquire(["d"], 10))
    left = asyncio.create_task(shared.try_acquire(["d"], 10))
    await asyncio.sleep(0)  # both asked in this turn; the batch goes at its end
    left.cancel()
    ticket(await kept)
    with pytest.raises(asyncio.CancelledError):
        await left
    await shared.aclose()
    assert await shared.headroom("d") == (4, 90)
