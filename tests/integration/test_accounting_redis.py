"""The ledger against a real redis-server: processes sharing spend, restarts, outages.

Two `Ledger` instances on one Redis stand for two gateway processes. The
flush loop is parked (its sleep never returns unless a test lets it), so
tests flush by calling `flush()`, and time is a fake wall clock.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from switchboard.accounting import (
    BudgetWindow,
    CallStats,
    Dimension,
    Ledger,
    Period,
    Snapshot,
    redis_sync,
)
from tests.redis_server import RedisServer
from tests.unit.accounting.fakes import T0, Wall, attempt, call, paid

pytestmark = pytest.mark.integration

PREFIX = "test:acct:"
KEY, TEAM, GROUP = Dimension.KEY, Dimension.TEAM, Dimension.GROUP
DAY_S = 86_400
WINDOWS = {(KEY, "alice"): BudgetWindow("1d"), (TEAM, "red"): BudgetWindow("1d")}
LOGGER = "switchboard.accounting"


def client_for(url: str) -> redis.asyncio.Redis:
    # Fail fast, and never let the client resend a pipeline by itself.
    return redis.asyncio.Redis.from_url(
        url, socket_connect_timeout=1.0, socket_timeout=1.0, retry=Retry(NoBackoff(), 0)
    )


async def parked(_: float) -> None:
    """A flush-loop sleep that never ends: the tests flush by hand."""
    await asyncio.Event().wait()


@pytest.fixture
def wall() -> Wall:
    return Wall()


@pytest.fixture
async def clients(redis_url: str) -> AsyncIterator[Callable[[], redis.asyncio.Redis]]:
    made: list[redis.asyncio.Redis] = []

    def make() -> redis.asyncio.Redis:
        made.append(client_for(redis_url))
        return made[-1]

    yield make
    for client in made:
        await client.aclose()


@asynccontextmanager
async def running(
    client: redis.asyncio.Redis, wall: Wall, **kwargs: object
) -> AsyncIterator[Ledger]:
    kwargs.setdefault("windows", WINDOWS)
    ledger = Ledger(redis=client, prefix=PREFIX, wall=wall, sleep=parked, **kwargs)  # type: ignore[arg-type]
    await ledger.start()
    try:
        yield ledger
    finally:
        await ledger.aclose()


def group(snapshot: Snapshot, name: str = "chat") -> CallStats:
    found = snapshot.get(GROUP, name)
    assert found is not None
    return found


def accounting_logs(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER and r.levelno == level]


async def test_two_processes_see_each_other_within_a_flush(
    clients: Callable[[], redis.asyncio.Redis], wall: Wall
) -> None:
    async with running(clients(), wall) as a, running(clients(), wall) as b:
        a.record(paid(1.0, key="alice"))
        b.record(paid(2.0, key="alice", team="blue"))
        b.record(call(attempt("gpt-b", "timeout", latency_s=0.2), outcome="timeout", latency_s=0.3))
        # Each sees its own spend at once, the other's after a flush.
        assert a.window_spend(KEY, "alice")[0] == 1.0
        assert b.window_spend(KEY, "alice")[0] == 2.0
        assert await a.flush()
        assert await b.flush()
        assert b.window_spend(KEY, "alice")[0] == 3.0
        assert a.window_spend(KEY, "alice")[0] == 1.0
        assert await a.flush()
        assert a.window_spend(KEY, "alice") == (3.0, (T0 // DAY_S + 1) * DAY_S)
        assert a.window_spend(TEAM, "red")[0] == 1.0  # b's paid call was team blue's
        a.record(paid(0.5))
        assert a.window_spend(KEY, "alice")[0] == 3.5

        for snapshot in (await a.snapshot(Period.DAY), await b.snapshot(Period.DAY)):
            assert snapshot.shared is True
            chat = group(snapshot)
            assert (chat.requests, chat.errors, chat.spend_usd) == (4, {"timeout": 1}, 3.5)
            assert (chat.input_tokens, chat.output_tokens) == (30, 15)
            assert chat.latency_p50_s == pytest.approx(0.5, rel=0.041)
            assert chat.latency_p95_s == pytest.approx(0.5, rel=0.041)
            assert {n: s.spend_usd for n, s in snapshot.stats[TEAM].items()} == {
                "blue": 2.0,
                "red": 1.5,
            }
            assert snapshot.stats[Dimension.DEPLOYMENT]["gpt-b"].errors == {"timeout": 1}
            assert snapshot.budgets[KEY]["alice"].spend_usd == 3.5


async def test_a_restarted_process_starts_with_the_shared_totals(
    clients: Callable[[], redis.asyncio.Redis], wall: Wall
) -> None:
    async with running(clients(), wall) as first:
        first.record(paid(1.25))
        first.record(paid(0.75, key="bob"))
    # No flush by hand: closing flushed.
    async with running(clients(), wall) as restarted:
        assert restarted.window_spend(KEY, "alice")[0] == 1.25
        assert restarted.window_spend(TEAM, "red")[0] == 2.0
        for period in Period:
            snapshot = await restarted.snapshot(period)
            assert snapshot.shared
            assert (group(snapshot).requests, group(snapshot).spend_usd) == (2, 2.0)


async def test_key_layout_and_lifetimes(
    clients: Callable[[], redis.asyncio.Redis], wall: Wall
) -> None:
    raw = clients()
    windows = {**WINDOWS, (TEAM, "a:1:b"): BudgetWindow("24h")}
    async with running(clients(), wall, windows=windows) as ledger:
        ledger.record(paid(1.0, team="a:1:b"))
        assert await ledger.flush()
    day = int(T0 // DAY_S)
    assert sorted(k.decode() for k in await raw.keys(PREFIX + "*")) == [
        f"{PREFIX}budget:86400s:{day}",
        f"{PREFIX}stats:day:2026-12-03",
        f"{PREFIX}stats:hour:2026-12-03T10",
        f"{PREFIX}stats:month:2026-12",
        f"{PREFIX}stats:total:all",
    ]
    ttls = {
        "hour": 2 * DAY_S,
        "day": 40 * DAY_S,
        "month": 400 * DAY_S,
    }
    for period, ttl in ttls.items():
        key = next(k for k in await raw.keys(f"{PREFIX}stats:{period}:*"))
        assert ttl - 5 <= await raw.ttl(key) <= ttl
    assert await raw.ttl(f"{PREFIX}stats:total:all") == -1
    assert 2 * DAY_S - 5 <= await raw.ttl(f"{PREFIX}budget:86400s:{day}") <= 2 * DAY_S
    budget = await raw.hgetall(f"{PREFIX}budget:86400s:{day}")
    assert budget == {b"key:5:alice": b"1", b"team:5:a:1:b": b"1"}
    stats = await raw.hgetall(f"{PREFIX}stats:day:2026-12-03")
    assert stats[b"model_group:4:chat:requests"] == b"1"
    assert stats[b"team:5:a:1:b:spend_usd"] == b"1"


async def test_the_window_rolls_over_for_every_process(
    clients: Callable[[], redis.asyncio.Redis], wall: Wall
) -> None:
    windows = {(KEY, "alice"): BudgetWindow("30s")}
    async with (
        running(clients(), wall, windows=windows) as a,
        running(clients(), wall, windows=windows) as b,
    ):
        a.record(paid(1.0))
        assert await a.flush()
        wall.advance(30)
        assert a.window_spend(KEY, "alice")[0] == 0.0
        b.record(paid(2.0))
        assert await b.flush()
        assert await a.flush()
        spend, resets_at = a.window_spend(KEY, "alice")
        assert spend == 2.0
        assert resets_at == (T0 // 30 + 2) * 30


async def test_the_background_loop_flushes(
    clients: Callable[[], redis.asyncio.Redis], wall: Wall
) -> None:
    sleeps: asyncio.Queue[float] = asyncio.Queue()
    go: asyncio.Queue[None] = asyncio.Queue()

    async def sleep(seconds: float) -> None:
        sleeps.put_nowait(seconds)
        await go.get()

    raw = clients()
    ledger = Ledger(redis=clients(), prefix=PREFIX, wall=wall, sleep=sleep, flush_interval_s=0.5)
    await ledger.start()
    async with asyncio.timeout(5):
        assert await sleeps.get() == 0.5
        ledger.record(paid(1.0))
        go.put_nowait(None)
        await sleeps.get()  # the loop flushed, and sleeps again
    assert await raw.hget(f"{PREFIX}stats:total:all", "key:5:alice:spend_usd") == b"1"
    ledger.record(paid(2.0))
    await ledger.aclose()  # stops the loop and flushes once more
    assert await raw.hget(f"{PREFIX}stats:total:all", "key:5:alice:spend_usd") == b"3"


async def test_redis_down_then_back_loses_nothing_and_counts_nothing_twice(
    redis_server_factory: Callable[[], RedisServer],
    restart_on_same_port: Callable[[RedisServer], RedisServer],
    wall: Wall,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    server = redis_server_factory()
    client = client_for(server.url)
    try:
        async with running(client, wall) as ledger:
            ledger.record(paid(1.0))
            assert await ledger.flush()
            await client.save()  # what the restarted server will load
            server.stop()

            ledger.record(paid(2.0))
            ledger.record(paid(4.0, key="bob"))
            assert ledger.window_spend(KEY, "alice")[0] == 3.0
            assert ledger.window_spend(TEAM, "red")[0] == 7.0
            for _ in range(3):
                assert not await ledger.flush()
            assert len(accounting_logs(caplog, logging.WARNING)) == 1
            assert ledger.status.failing
            assert ledger.status.pending_fields > 0
            local = await ledger.snapshot(Period.DAY)
            assert local.shared is False
            assert (group(local).requests, group(local).spend_usd) == (3, 7.0)
            assert local.budgets[TEAM]["red"].spend_usd == 7.0
            assert len(accounting_logs(caplog, logging.WARNING)) == 1

            restart_on_same_port(server)
            assert await ledger.flush()
            assert len(accounting_logs(caplog, logging.INFO)) == 1
            assert ledger.status.pending_fields == 0
            assert not ledger.status.failing
            assert ledger.window_spend(TEAM, "red")[0] == 7.0
            for _ in range(2):
                assert await ledger.flush()
            for period in Period:
                shared = await ledger.snapshot(period)
                assert shared.shared
                assert (group(shared).requests, group(shared).spend_usd) == (3, 7.0)
                assert shared.stats[KEY]["bob"].spend_usd == 4.0
        # A restarted process agrees.
        async with running(client, wall) as restarted:
            assert restarted.window_spend(TEAM, "red")[0] == 7.0
        assert len(accounting_logs(caplog, logging.WARNING)) == 1
    finally:
        await client.aclose()


async def test_pending_increments_are_bounded(
    redis_server_factory: Callable[[], RedisServer],
    wall: Wall,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = redis_server_factory()
    client = client_for(server.url)
    server.stop()
    try:
        async with running(client, wall, max_pending_fields=50) as ledger:
            for i in range(20):
                ledger.record(paid(1.0, key=f"key-{i}"))
            assert not await ledger.flush()
            status = ledger.status
            assert status.pending_fields == 50
            assert status.dropped_fields > 0
            # Dropped for Redis, but this process's own figures and budgets keep them.
            assert group(await ledger.snapshot(Period.DAY)).requests == 20
            assert ledger.window_spend(KEY, "alice")[0] == 0.0
            warnings = accounting_logs(caplog, logging.WARNING)
            assert len(warnings) == 2  # unavailable, then dropping
    finally:
        await client.aclose()


async def test_refusals_that_may_pass_stay_pending(
    redis_server_factory: Callable[[], RedisServer], wall: Wall
) -> None:
    server = redis_server_factory()
    client = client_for(server.url)
    try:
        async with running(client, wall) as ledger:
            await client.config_set("maxmemory", "1")  # every write: OOM
            ledger.record(paid(1.0))
            assert not await ledger.flush()
            assert ledger.status.pending_fields > 0
            assert ledger.window_spend(KEY, "alice")[0] == 1.0
            await client.config_set("maxmemory", "0")
            assert await ledger.flush()
            assert ledger.status.pending_fields == 0
            snapshot = await ledger.snapshot(Period.TOTAL)
            assert (group(snapshot).requests, group(snapshot).spend_usd) == (1, 1.0)
            assert ledger.window_spend(KEY, "alice")[0] == 1.0
    finally:
        await client.aclose()


async def test_refusals_for_good_are_dropped_and_counted(
    clients: Callable[[], redis.asyncio.Redis], wall: Wall, caplog: pytest.LogCaptureFixture
) -> None:
    raw = clients()
    await raw.set(f"{PREFIX}stats:day:2026-12-03", "not a hash")
    async with running(clients(), wall) as ledger:
        ledger.record(paid(1.0))
        assert await ledger.flush()
        ledger.record(paid(1.0))
        assert await ledger.flush()
        status = ledger.status
        assert status.pending_fields == 0
        assert status.refused_fields > 0
        assert len(accounting_logs(caplog, logging.WARNING)) == 1
        # The other periods got everything.
        assert group(await ledger.snapshot(Period.MONTH)).requests == 2
        assert ledger.window_spend(KEY, "alice")[0] == 2.0
        # The period Redis cannot answer is this process's own.
        day = await ledger.snapshot(Period.DAY)
        assert not day.shared
        assert group(day).requests == 2


class LosesReplies:
    """A client whose armed pipeline reaches Redis but whose replies are lost on the way back."""

    def __init__(self, client: redis.asyncio.Redis) -> None:
        self._client = client
        self.armed = False

    def pipeline(self, transaction: bool = True) -> object:
        pipe = self._client.pipeline(transaction=transaction)
        execute = pipe.execute

        async def lossy(raise_on_error: bool = True) -> list[object]:
            replies = await execute(raise_on_error=raise_on_error)
            if self.armed:
                self.armed = False
                raise redis.ConnectionError("connection lost before the replies")
            return replies

        pipe.execute = lossy  # type: ignore[method-assign]
        return pipe

    def __getattr__(self, name: str) -> object:
        return getattr(self._client, name)


async def test_a_batch_whose_reply_was_lost_is_not_counted_twice(
    clients: Callable[[], redis.asyncio.Redis], wall: Wall, caplog: pytest.LogCaptureFixture
) -> None:
    raw = clients()
    lossy = LosesReplies(clients())
    async with running(lossy, wall) as ledger:  # type: ignore[arg-type]
        ledger.record(paid(1.0))
        lossy.armed = True
        assert not await ledger.flush()
        # Redis applied it; the ledger cannot know, and keeps it.
        assert await raw.hget(f"{PREFIX}stats:total:all", "key:5:alice:spend_usd") == b"1"
        assert ledger.status.pending_fields > 0
        assert ledger.window_spend(KEY, "alice")[0] == 1.0
        ledger.record(paid(2.0))
        assert await ledger.flush()  # sends the lost batch again, and the new one
        assert ledger.status.pending_fields == 0
        assert ledger.window_spend(KEY, "alice")[0] == 3.0
        total = await ledger.snapshot(Period.TOTAL)
        assert (group(total).requests, group(total).spend_usd) == (2, 3.0)
    assert len(accounting_logs(caplog, logging.WARNING)) == 1
    # Markers of applied batches are deleted once known applied.
    assert await raw.keys(f"{PREFIX}applied:*") == []


async def test_large_flushes_go_in_several_batches(
    clients: Callable[[], redis.asyncio.Redis], wall: Wall, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_sync, "BATCH_ENTRIES", 100)
    raw = clients()
    async with running(clients(), wall) as a, running(clients(), wall) as b:
        for i in range(200):  # some 1000 fields: ten batches each
            a.record(paid(0.5, key=f"key-{i}"))
            b.record(paid(0.25, key=f"key-{i}"))
        assert await a.flush()
        assert await b.flush()
        snapshot = await a.snapshot(Period.HOUR)
        assert len(snapshot.stats[KEY]) == 200
        assert {s.spend_usd for s in snapshot.stats[KEY].values()} == {0.75}
        assert (group(snapshot).requests, group(snapshot).spend_usd) == (400, 150.0)
        assert len(await raw.hkeys(next(iter(await raw.keys(f"{PREFIX}applied:*"))))) >= 10
    assert await raw.keys(f"{PREFIX}applied:*") == []
