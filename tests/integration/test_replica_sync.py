"""Replicas sharing cooldowns and latency through a real redis-server.

Each replica is a `Router` with its own health, tracker and frozen fake
clock, reporting to its own `ReplicaSync`; all share one Redis. Tests wait
for what another replica applied through spies that signal each call, so
nothing rests on a sleep: every wait is bounded by a generous deadline.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import pytest
import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

import tests.redis_server
from switchboard.replicas import ReplicaSync
from switchboard.routing import (
    CallKind,
    DeploymentHealth,
    HealthState,
    InFlight,
    LatencyTracker,
    Router,
    SimpleShuffle,
)
from tests.redis_server import RedisServer
from tests.unit.routing.fakes import FakeClock, deployment

pytestmark = pytest.mark.integration

PREFIX = "test:replicas:"
CHANNEL = f"{PREFIX}replicas"
A, B, C = deployment("a"), deployment("b"), deployment("c")
IDS = ("a", "b", "c")
COMPLETE, STREAM = CallKind.COMPLETE, CallKind.STREAM
MAX_COOLDOWN_S = 120.0
DEADLINE_S = 15.0
LOGGER = "switchboard.replicas"


class Calls:
    """Calls seen so far, and a wait for the ones a test expects."""

    def __init__(self) -> None:
        self.items: list[tuple[Any, ...]] = []
        self._changed = asyncio.Event()

    def add(self, *item: Any) -> None:
        self.items.append(item)
        self._changed.set()

    def of(self, deployment_id: str) -> list[tuple[Any, ...]]:
        return [item for item in self.items if item[0] == deployment_id]

    async def until(self, predicate: Callable[[list[tuple[Any, ...]]], bool]) -> None:
        async with asyncio.timeout(DEADLINE_S):
            while not predicate(self.items):
                self._changed.clear()
                await self._changed.wait()


class SpyHealth(DeploymentHealth):
    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock, random.Random(1), allowed_fails=1, cooldown_s=30.0)
        self.cools = Calls()

    def cool(self, deployment_id: str, seconds: float, *, quota: bool) -> float:
        until = super().cool(deployment_id, seconds, quota=quota)
        self.cools.add(deployment_id, seconds, quota)
        return until


class SpyTracker(LatencyTracker):
    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock, window=5, stale_after_s=60.0)
        self.records = Calls()

    def record(
        self,
        deployment_id: str,
        kind: CallKind,
        seconds: float,
        output_tokens: int | None = None,
        *,
        age_s: float = 0.0,
    ) -> bool:
        kept = super().record(deployment_id, kind, seconds, output_tokens, age_s=age_s)
        self.records.add(deployment_id, kind, seconds, output_tokens, age_s)
        return kept


@dataclass
class Replica:
    sync: ReplicaSync
    router: Router
    health: SpyHealth
    latency: SpyTracker
    clock: FakeClock

    def left(self, deployment_id: str) -> float:
        """Seconds of cooldown left here (0 when not cooling down)."""
        view = self.health.view(deployment_id)
        if view.state is not HealthState.COOLING_DOWN:
            return 0.0
        assert view.until is not None
        return view.until - self.clock()


async def quick(seconds: float) -> None:
    """Backoffs and flush intervals, shortened: the tests wait on outcomes, not on time."""
    await asyncio.sleep(min(seconds, 0.05))


async def parked(_: float) -> None:
    """A sleep that never ends: no background flush or retry gets in a test's way."""
    await asyncio.Event().wait()


def client_for(url: str) -> redis.asyncio.Redis:
    # As the gateway builds them: short timeouts, one quick retry.
    return redis.asyncio.Redis.from_url(
        url, socket_connect_timeout=1.0, socket_timeout=1.0, retry=Retry(NoBackoff(), 1)
    )


@pytest.fixture
async def replicas(redis_url: str) -> AsyncIterator[Callable[..., Any]]:
    """Starts replicas on the session's Redis (or the URL given); all closed after the test."""
    async with AsyncExitStack() as stack:

        async def make(
            name: str, url: str = redis_url, start: bool = True, **kwargs: Any
        ) -> Replica:
            client = client_for(url)
            stack.push_async_callback(client.aclose)
            clock = FakeClock()
            health, latency = SpyHealth(clock), SpyTracker(clock)
            kwargs.setdefault("flush_interval_s", 0.02)
            kwargs.setdefault("timeout_s", 1.0)
            kwargs.setdefault("sleep", quick)
            sync = ReplicaSync(
                client,
                prefix=PREFIX,
                replica_id=name,
                health=health,
                latency=latency,
                deployments=IDS,
                clock=clock,
                rng=random.Random(name),
                max_cooldown_s=MAX_COOLDOWN_S,
                **kwargs,
            )
            router = Router(
                groups={"g": (A, B, C)},
                strategy=SimpleShuffle(random.Random(0)),
                health=health,
                load=InFlight(),
                latency=latency,
                observer=sync,
            )
            replica = Replica(sync, router, health, latency, clock)
            if start:
                await sync.start()
                stack.push_async_callback(sync.aclose)
            return replica

        yield make


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    client = client_for(redis_url)
    yield client
    await client.aclose()


async def test_a_cooldown_reaches_every_other_replica_with_its_time_left(
    replicas: Callable[..., Any],
) -> None:
    a, b, c = await replicas("a"), await replicas("b"), await replicas("c")
    a.router.pause(A, 30.0)  # the provider's headers: spent
    a.router.failed(B, retry_after=12.5)  # a 429 with Retry-After
    a.router.failed(C, retry_after=None)
    a.router.failed(C, retry_after=None)  # over allowed_fails: cooled for cooldown_s
    for other in (b, c):
        await other.health.cools.until(lambda cools: {cool[0] for cool in cools} == set(IDS))
        assert other.health.cools.of("a") == [("a", 30.0, True)]
        assert other.health.cools.of("b") == [("b", 12.5, True)]
        assert other.health.cools.of("c") == [("c", 30.0, False)]
        # The clocks are frozen: the time left is exactly the sender's.
        assert other.left("a") == pytest.approx(30.0)
        assert other.left("b") == pytest.approx(12.5)
        assert other.left("c") == pytest.approx(30.0)
        assert other.health.view("a").quota
        assert not other.health.view("c").quota
        # Applied as cooldowns, not failures: no one counts a's failures twice.
        assert other.router.eligible("g", exclude=(), prompt_tokens=0).candidates == ()


async def test_nothing_echoes(replicas: Callable[..., Any]) -> None:
    a, b = await replicas("a"), await replicas("b")
    a.router.pause(A, 30.0)
    a.router.succeeded(A, COMPLETE, 0.5, 10)
    await b.health.cools.until(lambda cools: len(cools) == 1)
    await b.latency.records.until(lambda records: len(records) == 1)
    # Then b speaks; a hears it only after its own messages (one channel, in order).
    b.router.pause(B, 20.0)
    await a.health.cools.until(lambda cools: len(cools) == 1)
    assert a.health.cools.items == [("b", 20.0, True)]
    assert a.latency.records.of("a") == [("a", COMPLETE, 0.5, 10, 0.0)]  # its own, once
    assert b.health.cools.items == [("a", 30.0, True)]
    # b applied a's events without publishing them again.
    await _wait(lambda: (a.sync.status.published, b.sync.status.published) == (2, 1))


async def test_samples_reach_the_others_estimates(replicas: Callable[..., Any]) -> None:
    a, b, c = await replicas("a"), await replicas("b"), await replicas("c")
    a.router.succeeded(A, COMPLETE, 0.5, 10)
    a.router.succeeded(A, STREAM, 0.125, None)
    a.router.failed(B, retry_after=None, seconds=3.0)  # a timeout teaches latency too
    a.clock.advance(5.0)  # before a flushes: no await in between
    c.router.succeeded(A, COMPLETE, 1.5, 10)
    await b.latency.records.until(lambda records: len(records) == 4)
    # a's samples travelled with their age: measured 5 s before a sent them.
    assert [r[4] for r in b.latency.records.items if r[2] != 1.5] == [5.0, 5.0, 5.0]
    assert b.latency.last_seen("a", STREAM) == b.clock() - 5.0
    # b routes on everyone's measurements; a on its own and c's.
    assert b.latency.estimate("a", COMPLETE) == pytest.approx(1.0, rel=0.1)
    assert b.latency.estimate("a", STREAM) == 0.125
    assert b.latency.estimate("b", COMPLETE) == 3.0
    await a.latency.records.until(lambda records: len(records) == 4)
    assert a.latency.estimate("a", COMPLETE) == pytest.approx(1.0, rel=0.1)
    # Only samples travel: b's in-flight counts and health are its own.
    assert b.router.in_flight(A) == 0
    assert b.health.view("b").state is HealthState.HEALTHY
    # Samples arrive with their age, which places them in the past.
    for record in b.latency.records.items:
        assert 0.0 <= record[4] < DEADLINE_S


async def test_a_replica_started_later_catches_up(
    replicas: Callable[..., Any], raw: redis.asyncio.Redis
) -> None:
    a, b = await replicas("a"), await replicas("b")
    a.router.pause(A, 30.0)
    b.router.pause(A, 10.0)  # a shorter one does not shorten the stored one
    a.router.failed(B, retry_after=None)
    a.router.failed(B, retry_after=None)
    for i in range(7):  # more than the window of 5
        a.router.succeeded(C, COMPLETE, 1.0 + i, 10)
    b.router.succeeded(C, STREAM, 0.25, None)
    # Each spy also counts its own replica's samples; a flush sends only the newest
    # window (5) of a deployment's samples: a tracker would keep no more.
    await b.latency.records.until(lambda records: len(records) == 6)
    await a.latency.records.until(lambda records: len(records) == 8)
    await b.health.cools.until(lambda cools: len(cools) == 2)
    await a.health.cools.until(lambda cools: len(cools) == 1)

    late = await replicas("late")
    # Started means caught up: no wait.
    assert late.left("a") == pytest.approx(30.0, abs=5.0)
    assert late.health.view("a").quota
    assert late.left("b") == pytest.approx(30.0, abs=5.0)
    assert not late.health.view("b").quota
    assert late.left("c") == 0.0
    assert late.latency.estimate("c", STREAM) == 0.25
    # The newest five of a's seven, weighted by their ages on Redis's clock.
    assert late.latency.estimate("c", COMPLETE) == pytest.approx(5.0, abs=0.5)
    assert len(late.latency.records.of("c")) == 6
    assert late.router.eligible("g", exclude=(), prompt_tokens=0).candidates == (C,)
    # What it read back is not applied again when later messages arrive.
    a.router.succeeded(A, COMPLETE, 2.0, 10)
    await late.latency.records.until(lambda records: len(records) == 7)
    assert len(late.latency.records.of("c")) == 6
    # Keys: a cooldown per deployment, streams capped at the window, all expiring.
    assert 25_000 < await raw.pttl(f"{PREFIX}cooldown:a") <= 30_000
    assert await raw.xlen(f"{PREFIX}latency:complete:c") == 5
    assert 0 < await raw.pttl(f"{PREFIX}latency:complete:c") <= 61_000


async def test_a_stored_cooldown_keeps_the_longer_of_two(
    replicas: Callable[..., Any], raw: redis.asyncio.Redis
) -> None:
    a = await replicas("a")
    unheard = await replicas("unheard", start=False)  # has not heard of a's cooldown
    a.router.pause(A, 30.0)
    await _wait(lambda: a.sync.status.published == 1)
    unheard.router.pause(A, 10.0)
    unheard.router.pause(B, 10.0)
    assert await unheard.sync.flush()
    assert 25_000 < await raw.pttl(f"{PREFIX}cooldown:a") <= 30_000
    assert 5_000 < await raw.pttl(f"{PREFIX}cooldown:b") <= 10_000
    assert await raw.get(f"{PREFIX}cooldown:a") == b"1"


async def test_a_lost_subscription_catches_up_without_applying_twice(
    replicas: Callable[..., Any], raw: redis.asyncio.Redis
) -> None:
    a, b = await replicas("a"), await replicas("b")
    a.router.pause(A, 30.0)
    a.router.succeeded(B, COMPLETE, 0.5, 10)
    await b.health.cools.until(lambda cools: len(cools) == 1)
    await b.latency.records.until(lambda records: len(records) == 1)
    assert await raw.client_kill_filter(_type="pubsub") == 2
    # Catching up again applies the running cooldown again (its signal here)...
    await b.health.cools.until(lambda cools: len(cools) == 2)
    assert b.left("a") == pytest.approx(30.0, abs=5.0)
    # ...but not the sample it had already, though the stream still holds it.
    assert len(b.latency.records.items) == 1
    # And it hears what comes next.
    a.router.succeeded(B, COMPLETE, 1.5, 10)
    await b.latency.records.until(lambda records: len(records) == 2)


async def test_a_message_read_back_at_catch_up_is_not_applied_again_live(
    replicas: Callable[..., Any], raw: redis.asyncio.Redis
) -> None:
    def batch(seq: int, seconds: float) -> bytes:
        body = {"v": 1, "e": "lat", "r": "m", "b": seq, "x": [["a", "c", seconds, 1, 0.0]]}
        return json.dumps(body).encode()

    # Published between a joiner's subscription and its catch-up: stored and live both.
    await raw.xadd(f"{PREFIX}latency:complete:a", {"v": json.dumps(["m", 5, 1.0, 1, 0.0])})
    late = await replicas("late")
    assert late.latency.estimate("a", COMPLETE) == 1.0
    await raw.publish(CHANNEL, batch(5, 1.0))
    await raw.publish(CHANNEL, batch(6, 3.0))
    await late.latency.records.until(lambda records: len(records) == 2)
    assert [r[2] for r in late.latency.records.items] == [1.0, 3.0]


async def test_catch_up_leaves_stale_samples(
    replicas: Callable[..., Any], raw: redis.asyncio.Redis
) -> None:
    stale = json.dumps(["old", 1, 9.0, 10, 61.0])  # measured 61 s before it was stored
    fresh = json.dumps(["old", 2, 4.0, 10, 1.0])
    await raw.xadd(f"{PREFIX}latency:complete:a", {"v": stale})
    await raw.xadd(f"{PREFIX}latency:complete:b", {"v": fresh})
    late = await replicas("late")
    assert late.latency.estimate("a", COMPLETE) is None
    assert late.latency.records.of("a") == []
    assert late.latency.estimate("b", COMPLETE) == 4.0
    assert late.latency.records.of("b")[0][4] == pytest.approx(1.0, abs=1.0)


async def test_invalid_messages_are_dropped_and_counted(
    replicas: Callable[..., Any], raw: redis.asyncio.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    b = await replicas("b")

    def cool(**fields: Any) -> bytes:
        body = {"v": 1, "e": "cool", "r": "mallory", "d": "a", "s": 10.0, "q": False}
        return json.dumps({**body, **fields}).encode()

    bad: Sequence[bytes] = [
        b"\xff\xfe not utf-8",
        b"not json",
        b"[" * 100_000,  # over the size bound
        b"[" * 60_000,  # too deep
        b"[]",
        b"{}",
        json.dumps({"v": 2, "e": "cool"}).encode(),
        cool(s=float("nan")),
        cool(s="10"),
        cool(s=-1.0),
        cool(q=1),
        cool(r=""),
        cool(extra=True),
        json.dumps(
            {"v": 1, "e": "lat", "r": "m", "b": 1, "x": [["a", "x", 1.0, None, 0.0]]}
        ).encode(),
        b'{"v":1,"e":"lat","r":"m","b":1,"x":[["a","c",1e400,null,0]]}',  # overflows to inf
    ]
    for message in bad:
        await raw.publish(CHANNEL, message)
    await raw.publish(CHANNEL, cool(d="unknown"))
    await raw.publish(CHANNEL, cool(d="b", s=1e9))  # capped
    await raw.publish(CHANNEL, cool())  # and the subscriber still works
    await b.health.cools.until(lambda cools: len(cools) == 2)
    assert b.health.cools.items == [("b", MAX_COOLDOWN_S, False), ("a", 10.0, False)]
    status = b.sync.status
    assert (status.rejected, status.unknown) == (len(bad), 1)
    assert status.subscribed
    warnings = [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]
    assert len(warnings) == 1  # the first one only
    assert b.latency.records.items == []


async def test_invalid_stored_state_is_dropped_and_counted(
    replicas: Callable[..., Any], raw: redis.asyncio.Redis
) -> None:
    await raw.set(f"{PREFIX}cooldown:a", "1")  # never expires: not a replica's
    await raw.set(f"{PREFIX}cooldown:b", "yes", px=60_000)
    await raw.set(f"{PREFIX}latency:complete:a", "not a stream")
    await raw.xadd(f"{PREFIX}latency:stream:a", {"v": "[1, 2]"})
    await raw.xadd(f"{PREFIX}latency:stream:b", {"other": "field"})
    await raw.xadd(f"{PREFIX}latency:stream:c", {"v": json.dumps(["m", 1, 0.5, None, 0.0])})
    late = await replicas("late")
    status = late.sync.status
    assert (status.rejected, status.refused) == (4, 1)
    assert late.left("a") == late.left("b") == 0.0
    assert late.latency.estimate("c", STREAM) == 0.5
    # A replica writing over the bad cooldown key takes it over.
    late.router.pause(A, 5.0)
    await _wait(lambda: late.sync.status.published == 1)
    assert 0 < await raw.pttl(f"{PREFIX}cooldown:a") <= 5_000


async def test_closing_publishes_what_is_pending_and_unsubscribes(
    replicas: Callable[..., Any], raw: redis.asyncio.Redis
) -> None:
    b = await replicas("b")
    a = await replicas("a", sleep=parked)
    a.router.succeeded(A, COMPLETE, 0.75, 10)
    assert await raw.pubsub_numsub(CHANNEL) == [(CHANNEL.encode(), 2)]
    await a.sync.aclose()
    await b.latency.records.until(lambda records: len(records) == 1)
    assert b.latency.estimate("a", COMPLETE) == 0.75
    await _wait_async(raw, lambda subs: subs == [(CHANNEL.encode(), 1)])


@pytest.fixture
def restart_on_same_port(
    redis_server_factory: Callable[[], RedisServer], monkeypatch: pytest.MonkeyPatch
) -> Callable[[RedisServer], RedisServer]:
    """Starts a server where a stopped one was: same port, so clients find it again."""

    def restart(stopped: RedisServer) -> RedisServer:
        monkeypatch.setattr(tests.redis_server, "_free_port", lambda: stopped.port)
        return redis_server_factory()

    return restart


async def test_sync_resumes_after_redis_comes_back(
    replicas: Callable[..., Any],
    redis_server_factory: Callable[[], RedisServer],
    restart_on_same_port: Callable[[RedisServer], RedisServer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    server = redis_server_factory()
    a, b = await replicas("a", server.url), await replicas("b", server.url)
    server.stop()
    await _wait(lambda: not a.sync.status.available and not b.sync.status.available)
    # Meanwhile each routes on its own; what a learns waits for Redis.
    a.router.pause(A, 30.0)
    a.router.succeeded(B, COMPLETE, 0.5, 10)
    assert b.left("a") == 0.0

    restart_on_same_port(server)  # empty: nothing was saved
    # b hears of both once both are back (live, or by catching up from the keys).
    await b.health.cools.until(lambda cools: len(cools) >= 1)
    await b.latency.records.until(lambda records: len(records) >= 1)
    assert b.left("a") == pytest.approx(30.0, abs=5.0)
    assert b.latency.estimate("b", COMPLETE) == 0.5
    # A cooldown begun after the return reaches the other, on the subscription resumed.
    await _wait(lambda: a.sync.status.subscribed and b.sync.status.subscribed)
    b.router.pause(C, 15.0)
    await a.health.cools.until(lambda cools: bool([cool for cool in cools if cool[0] == "c"]))
    # (a may have read its own "a" back from the keys on catching up: harmless.)
    assert a.health.cools.of("c") == [("c", 15.0, True)]
    assert a.left("c") == pytest.approx(15.0)
    records = [r for r in caplog.records if r.name == LOGGER]
    assert [r.levelno for r in records].count(logging.WARNING) == 2  # once per replica
    assert [r.levelno for r in records].count(logging.INFO) == 2


async def test_a_replica_started_while_redis_is_down_catches_up_later(
    replicas: Callable[..., Any],
    redis_server_factory: Callable[[], RedisServer],
    restart_on_same_port: Callable[[RedisServer], RedisServer],
) -> None:
    server = redis_server_factory()
    a = await replicas("a", server.url)
    a.router.pause(A, 30.0)
    await _wait(lambda: a.sync.status.published == 1)
    await _redis_save(server)
    server.stop()
    late = await replicas("late", server.url)  # returns: Redis down is not an error
    assert not late.sync.status.available
    assert late.left("a") == 0.0
    restart_on_same_port(server)  # loads the saved cooldown key
    await late.health.cools.until(lambda cools: len(cools) == 1)
    assert late.left("a") == pytest.approx(30.0, abs=5.0)


async def test_samples_wait_for_redis_up_to_a_bound(
    replicas: Callable[..., Any], redis_server_factory: Callable[[], RedisServer]
) -> None:
    server = redis_server_factory()
    server.stop()
    a = await replicas("a", server.url, max_pending_samples=5, sleep=parked)
    for i in range(8):
        a.router.succeeded(A, COMPLETE, float(i), 10)
    assert not await a.sync.flush()
    assert a.sync.status.dropped_samples == 3
    a.router.succeeded(A, COMPLETE, 9.0, 10)
    assert a.sync.status.dropped_samples == 4


async def _redis_save(server: RedisServer) -> None:
    with server.client() as client:
        client.save()


async def _wait(condition: Callable[[], bool]) -> None:
    """Polls a condition against the deadline (for state no spy can signal)."""
    async with asyncio.timeout(DEADLINE_S):
        while not condition():  # noqa: ASYNC110 (no event to wait on: polled to the deadline)
            await asyncio.sleep(0.01)


async def _wait_async(
    raw: redis.asyncio.Redis, condition: Callable[[list[tuple[bytes, int]]], bool]
) -> None:
    async with asyncio.timeout(DEADLINE_S):
        while not condition(await raw.pubsub_numsub(CHANNEL)):  # noqa: ASYNC110 (as above)
            await asyncio.sleep(0.01)
