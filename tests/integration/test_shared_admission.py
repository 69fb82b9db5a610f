"""SharedAdmission against a real redis-server: replicas, the fast path, outages and returns.

Two `SharedAdmission`s on one Redis stand for two replicas. Redis's own
counts are read through a third `SharedLimiter` configured alike. The
probe's sleep is a gate the test opens, so a return is awaited, not slept
through.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from switchboard.config import Deployment, parse_settings
from switchboard.limits import RateLimiter
from switchboard.limits.admission import Admission, Refusal, Reservation
from switchboard.limits.shared import SharedLimiter
from switchboard.limits.shared_admission import Mode, SharedAdmission
from tests.redis_server import RedisServer

pytestmark = pytest.mark.integration

PREFIX = "test:shared:"
WINDOW_S = 60.0
LOGGER = "switchboard.limits.shared_admission"


def deployment(rpm: int | None = 10, tpm: int | None = 1_000) -> Deployment:
    limits = ", ".join(f"{name}: {v}" for name, v in (("rpm", rpm), ("tpm", tpm)) if v)
    text = f"""
model_list:
  - {{model_name: chat, litellm_params: {{model: openai/m, {limits}}}, model_info: {{id: d}}}}
"""
    (found,) = parse_settings(text, source="test", env={}).deployments
    return found


def client_for(url: str) -> redis.asyncio.Redis:
    return redis.asyncio.Redis.from_url(
        url, socket_connect_timeout=0.5, socket_timeout=0.5, retry=Retry(NoBackoff(), 0)
    )


class Gate:
    """A sleep that returns only when the test opens it, once per opening."""

    def __init__(self) -> None:
        self.opened: asyncio.Queue[None] = asyncio.Queue()
        self.sleeping = 0

    async def sleep(self, _: float) -> None:
        self.sleeping += 1
        await self.opened.get()


@asynccontextmanager
async def replica(
    url: str,
    gate: Gate,
    *,
    share: float = 0.5,
    timeout_s: float = 0.2,
    dep: Deployment,
    watch_s: float = 1.0,
) -> AsyncIterator[SharedAdmission]:
    client = client_for(url)
    shared = SharedLimiter(client, window_seconds=WINDOW_S, prefix=PREFIX, timeout_s=timeout_s)
    admission = SharedAdmission(
        RateLimiter(window_seconds=WINDOW_S),
        shared,
        [dep],
        time.monotonic,
        local_share=share,
        replica_id=f"r{id(gate)}",
        rng=random.Random(7),
        sleep=gate.sleep,
        watch_interval_s=watch_s,
    )
    await admission.start()
    try:
        yield admission
    finally:
        await admission.aclose()
        await client.aclose()


async def redis_counts(url: str, dep: Deployment) -> tuple[int, int]:
    """(requests, tokens) Redis counts on the deployment's key now (0 where unlimited)."""
    client = client_for(url)
    try:
        reader = SharedLimiter(client, window_seconds=WINDOW_S, prefix=PREFIX)
        rpm, tpm = dep.rpm or 10**9, dep.tpm or 10**12
        reader.configure("deployment:d", rpm, tpm)
        requests, tokens = await reader.headroom("deployment:d")
        assert requests is not None
        assert tokens is not None
        return rpm - requests, tpm - tokens
    finally:
        await client.aclose()


def admitted(result: Reservation | Refusal) -> Reservation:
    assert isinstance(result, Reservation), result
    return result


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno >= 30]


async def test_two_replicas_share_one_limit_and_remember_a_denial(redis_url: str) -> None:
    dep = deployment(rpm=3, tpm=None)
    async with (
        replica(redis_url, Gate(), dep=dep) as a,
        replica(redis_url, Gate(), dep=dep) as b,
    ):
        for admission in (a, a, b):
            admitted(await admission.reserve(dep, 10)).commit(10)
        refused = await b.reserve(dep, 10)
        assert isinstance(refused, Refusal)
        assert refused.key == "deployment:d"
        assert 0 < refused.retry_after <= WINDOW_S + 0.1
        assert (b.stats.round_trips, b.stats.shared_denials) == (2, 1)
        # Remembered: the same request is refused again without asking Redis.
        again = await b.reserve(dep, 10)
        assert isinstance(again, Refusal)
        assert again.retry_after <= refused.retry_after
        assert (b.stats.round_trips, b.stats.cached_denials) == (2, 1)
        # A replica that was never refused still asks, and is refused by Redis.
        assert isinstance(await a.reserve(dep, 10), Refusal)
        assert (a.stats.round_trips, a.stats.shared_denials) == (3, 1)
        assert a.open_count == b.open_count == 0


async def test_settlements_reach_redis_in_one_batch(redis_url: str) -> None:
    dep = deployment(rpm=10, tpm=1_000)
    async with replica(redis_url, Gate(), dep=dep) as a:
        first, second, third = [admitted(await a.reserve(dep, 300)) for _ in range(3)]
        assert await redis_counts(redis_url, dep) == (3, 900)
        first.commit(100)
        second.release()
        third.commit(350)
        await a.flush()
        assert await redis_counts(redis_url, dep) == (2, 450)
        assert a.open_count == 0
        # Settling twice changes nothing, here or in Redis.
        first.release()
        await a.flush()
        assert await redis_counts(redis_url, dep) == (2, 450)


async def test_a_restarted_redis_is_charged_for_everything_in_the_window(
    redis_server_factory: Callable[[], RedisServer],
    restart_on_same_port: Callable[[RedisServer], RedisServer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Killed and started empty: the outage's admissions and the ones before it are charged."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    server = redis_server_factory()
    dep = deployment(rpm=10, tpm=1_000)
    gate = Gate()
    async with replica(server.url, gate, dep=dep, share=0.5) as a:
        for _ in range(2):
            admitted(await a.reserve(dep, 50)).commit(40)
        server.stop()
        # Local share: 5 requests, 2 of them already used by this replica.
        outage = [admitted(await a.reserve(dep, 50)) for _ in range(3)]
        assert a.mode is Mode.LOCAL
        refused = await a.reserve(dep, 50)
        assert isinstance(refused, Refusal)
        assert refused.key == "deployment:d"
        assert (a.stats.fallbacks, a.stats.outage_admissions) == (1, 3)
        assert len(warnings(caplog)) == 1
        outage[0].commit(30)
        outage[1].release()

        restart_on_same_port(server)
        await gate.opened.put(None)
        async with asyncio.timeout(10):
            await a.until_shared()
        assert a.mode is Mode.SHARED
        # Before: 2 x 40; outage: 30, (released), 50 still open.
        assert await redis_counts(server.url, dep) == (4, 160)
        outage[2].commit(20)
        await a.flush()
        assert await redis_counts(server.url, dep) == (4, 130)
        # Full limits again: 10 in all.
        for _ in range(6):
            admitted(await a.reserve(dep, 10)).commit(10)
        assert isinstance(await a.reserve(dep, 10), Refusal)
        assert len(warnings(caplog)) == 1
        assert a.stats.recoveries == 1


async def test_the_same_redis_back_is_charged_for_the_outage_only_and_once(
    redis_server_factory: Callable[[], RedisServer], caplog: pytest.LogCaptureFixture
) -> None:
    """A stall (SIGSTOP) then the same server: it still holds the counts from before."""
    server = redis_server_factory()
    dep = deployment(rpm=20, tpm=None)
    gate = Gate()
    async with (
        replica(server.url, gate, dep=dep, share=0.5, timeout_s=0.05) as a,
        replica(server.url, Gate(), dep=dep, share=0.5, timeout_s=0.05) as b,
    ):
        for admission in (a, a, b):
            admitted(await admission.reserve(dep, 5)).commit(5)
        os.kill(server.popen.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            stalled = await a.reserve(dep, 5)
            # Decided locally once the bounded wait on Redis ran out.
            assert time.monotonic() - started < 1.0
            admitted(stalled).commit(5)
            admitted(await a.reserve(dep, 5)).commit(5)
            assert a.mode is Mode.LOCAL
        finally:
            os.kill(server.popen.pid, signal.SIGCONT)
        # The acquire that timed out may or may not have been recorded by Redis.
        before = (await redis_counts(server.url, dep))[0]
        assert before in (3, 4)
        await gate.opened.put(None)
        async with asyncio.timeout(10):
            await a.until_shared()
        assert (await redis_counts(server.url, dep))[0] == before + 2
        assert a.stats.recoveries == 1


async def test_a_charge_applies_once_whatever_the_retries(redis_url: str) -> None:
    client = client_for(redis_url)
    try:
        shared = SharedLimiter(client, window_seconds=WINDOW_S, prefix=PREFIX)
        shared.configure("deployment:d", rpm=10, tpm=1_000)
        shared.configure("key:k", rpm=None, tpm=None)
        totals = {"deployment:d": (3, 120), "key:k": (3, 120)}
        first = await shared.charge(totals, "replica-1:1")
        second = await shared.charge(totals, "replica-1:1")
        assert first[0] == second[0]
        assert list(first[0]) == ["deployment:d"]  # an unlimited key is not charged
        assert await shared.headroom("deployment:d") == (7, 880)
        await shared.charge(totals, "replica-1:2")
        assert await shared.headroom("deployment:d") == (4, 760)
    finally:
        await client.aclose()


async def test_a_cancelled_reservation_leaves_nothing_open(
    redis_server_factory: Callable[[], RedisServer],
) -> None:
    server = redis_server_factory()
    dep = deployment(rpm=2, tpm=None)
    async with replica(server.url, Gate(), dep=dep, timeout_s=5.0) as a:
        os.kill(server.popen.pid, signal.SIGSTOP)
        try:
            task = asyncio.create_task(a.reserve(dep, 5))
            await asyncio.sleep(0)  # let it reach Redis
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        finally:
            os.kill(server.popen.pid, signal.SIGCONT)
        assert a.open_count == 0
        assert a.headroom("deployment:d") == (2, None)


async def test_headroom_is_what_every_replica_together_has_left(redis_url: str) -> None:
    dep = deployment(rpm=10, tpm=1_000)
    async with (
        replica(redis_url, Gate(), dep=dep) as a,
        replica(redis_url, Gate(), dep=dep, watch_s=0.05) as b,
    ):
        for _ in range(3):
            admitted(await a.reserve(dep, 100)).commit(100)
        async with asyncio.timeout(10):
            while b.headroom("deployment:d") != (7, 700):  # noqa: ASYNC110 (another replica)
                await asyncio.sleep(0.01)
        # Its own native limiter never saw those calls.
        assert Admission.headroom(b, "deployment:d") == (10, 1_000)
