"""ReplicaSync against a scripted client: the commands a flush sends, what it keeps, outages."""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

import pytest
from redis.exceptions import ConnectionError, ResponseError

import switchboard.replicas
from switchboard.replicas import ReplicaSync
from switchboard.replicas.events import Cooldown, Decoder, Samples
from switchboard.replicas.store import KEEP_LONGER
from switchboard.routing import CallKind, DeploymentHealth, LatencyTracker
from tests.unit.routing.fakes import FakeClock

COMPLETE, STREAM = CallKind.COMPLETE, CallKind.STREAM
LOGGER = "switchboard.replicas"
decoder = Decoder({"a", "b"}, max_cooldown_s=300.0)


class Pipe:
    def __init__(self, client: FakeRedis) -> None:
        self._client = client
        self.commands: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: self.commands.append((name, args, kwargs))

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        self._client.sent.append(self.commands)
        if self._client.down is not None:
            raise self._client.down
        return [self._client.reply for _ in self.commands]


class PubSub:
    def __init__(self, client: FakeRedis) -> None:
        self._client = client
        self.connection = None

    async def subscribe(self, channel: str) -> None:
        raise self._client.down or AssertionError("only the outage is scripted")

    async def aclose(self) -> None:
        pass


class FakeRedis:
    def __init__(self) -> None:
        self.sent: list[list[tuple[str, tuple[Any, ...], dict[str, Any]]]] = []
        self.down: Exception | None = None
        self.reply: Any = 1

    def pipeline(self, transaction: bool = True) -> Pipe:
        return Pipe(self)

    def pubsub(self) -> PubSub:
        return PubSub(self)


async def parked(_: float) -> None:
    await asyncio.Event().wait()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def client() -> FakeRedis:
    return FakeRedis()


def make(client: FakeRedis, clock: FakeClock, **kwargs: Any) -> ReplicaSync:
    kwargs.setdefault("sleep", parked)
    return ReplicaSync(
        client,  # type: ignore[arg-type]
        prefix="p:",
        replica_id="r1",
        health=DeploymentHealth(clock, random.Random(0), allowed_fails=1, cooldown_s=30.0),
        latency=LatencyTracker(clock, window=4, stale_after_s=60.0),
        deployments=["a", "b"],
        clock=clock,
        rng=random.Random(0),
        max_cooldown_s=300.0,
        **kwargs,
    )


async def test_a_flush_stores_then_publishes_in_one_pipeline(
    client: FakeRedis, clock: FakeClock
) -> None:
    sync = make(client, clock)
    sync.cooled("a", clock() + 12.5, True)
    sync.measured("b", COMPLETE, 0.5, 10)
    sync.measured("b", STREAM, 0.125, None)
    clock.advance(0.25)
    assert await sync.flush()
    (commands,) = client.sent
    assert [(name, args[0]) for name, args, _ in commands] == [
        ("eval", KEEP_LONGER),
        ("publish", "p:replicas"),
        ("xadd", "p:latency:complete:b"),
        ("xadd", "p:latency:stream:b"),
        ("pexpire", "p:latency:complete:b"),
        ("pexpire", "p:latency:stream:b"),
        ("publish", "p:replicas"),
    ]
    assert commands[0][1][1:] == (1, "p:cooldown:a", "12250", b"1")
    cooldown = decoder.message(commands[1][1][1])
    assert isinstance(cooldown, Cooldown)
    assert cooldown.sender.startswith("r1/")
    assert (cooldown.deployment_id, cooldown.seconds, cooldown.quota) == ("a", 12.25, True)
    assert commands[2][2] == {"maxlen": 4, "approximate": False}
    assert decoder.stored_sample(commands[2][1][1]["v"]) is not None
    assert commands[4][1][1] == 61_000  # expires a second after its newest sample is stale
    batch = decoder.message(commands[6][1][1])
    assert isinstance(batch, Samples)
    assert (batch.sender, batch.seq) == (cooldown.sender, 1)
    assert [(s.deployment_id, s.kind, s.seconds, s.age_s) for s in batch.samples] == [
        ("b", COMPLETE, 0.5, 0.25),
        ("b", STREAM, 0.125, 0.25),
    ]
    assert sync.status.published == 2
    # Nothing pending: nothing sent.
    assert await sync.flush()
    assert len(client.sent) == 1


async def test_each_process_is_a_sender_of_its_own(client: FakeRedis, clock: FakeClock) -> None:
    first, second = make(client, clock), make(client, clock)
    for sync in (first, second):
        sync.cooled("a", clock() + 1.0, False)
        assert await sync.flush()
    senders = {decoder.message(sent[1][1][1]).sender for sent in client.sent}  # type: ignore[union-attr]
    assert len(senders) == 2


async def test_the_longest_pending_cooldown_is_the_one_sent(
    client: FakeRedis, clock: FakeClock
) -> None:
    sync = make(client, clock)
    sync.cooled("a", clock() + 10.0, False)
    sync.cooled("a", clock() + 5.0, True)
    sync.cooled("b", clock() + 1.0, True)
    clock.advance(2.0)  # b's has ended by the flush: not sent
    assert await sync.flush()
    (commands,) = client.sent
    assert [args[2:4] for name, args, _ in commands if name == "eval"] == [("p:cooldown:a", "8000")]


async def test_stale_samples_are_not_sent(client: FakeRedis, clock: FakeClock) -> None:
    sync = make(client, clock)
    sync.measured("a", COMPLETE, 1.0, 1)
    clock.advance(60.5)
    sync.measured("a", COMPLETE, 2.0, 1)
    assert await sync.flush()
    (commands,) = client.sent
    (batch,) = [decoder.message(args[1]) for name, args, _ in commands if name == "publish"]
    assert isinstance(batch, Samples)
    assert [s.seconds for s in batch.samples] == [2.0]


async def test_nonsense_measurements_are_not_buffered(client: FakeRedis, clock: FakeClock) -> None:
    sync = make(client, clock)
    for seconds in (float("nan"), float("inf"), -1.0):
        sync.measured("a", COMPLETE, seconds, 1)
    assert await sync.flush()
    assert client.sent == []


async def test_the_buffer_is_bounded_and_drops_the_oldest(
    client: FakeRedis, clock: FakeClock
) -> None:
    sync = make(client, clock, max_pending_samples=3)
    for i in range(5):
        sync.measured("a", COMPLETE, float(i), 1)
    assert sync.status.dropped_samples == 2
    assert await sync.flush()
    (commands,) = client.sent
    batch = decoder.message(commands[-1][1][1])
    assert isinstance(batch, Samples)
    assert [s.seconds for s in batch.samples] == [2.0, 3.0, 4.0]


async def test_what_redis_did_not_take_is_kept_and_sent_when_it_answers(
    client: FakeRedis, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    sync = make(client, clock, max_pending_samples=3)
    sync.cooled("a", clock() + 30.0, True)
    sync.measured("a", COMPLETE, 1.0, 1)
    sync.measured("a", COMPLETE, 2.0, 1)
    client.down = ConnectionError("refused")
    for _ in range(3):
        assert not await sync.flush()
    assert not sync.status.available
    sync.measured("a", COMPLETE, 3.0, 1)
    sync.measured("a", COMPLETE, 4.0, 1)  # over the bound: 1.0 goes
    assert sync.status.dropped_samples == 1
    client.down = None
    clock.advance(10.0)
    assert await sync.flush()
    assert sync.status.available
    commands = client.sent[-1]
    evals = [args[2:4] for name, args, _ in commands if name == "eval"]
    assert evals == [("p:cooldown:a", "20000")]
    batch = decoder.message(commands[-1][1][1])
    assert isinstance(batch, Samples)
    assert [(s.seconds, s.age_s) for s in batch.samples] == [(2.0, 10.0), (3.0, 10.0), (4.0, 10.0)]
    levels = [r.levelno for r in caplog.records if r.name == LOGGER]
    assert levels == [logging.WARNING, logging.INFO]


async def test_refusals_are_counted_not_retried(client: FakeRedis, clock: FakeClock) -> None:
    sync = make(client, clock)
    client.reply = ResponseError("WRONGTYPE")
    sync.measured("a", COMPLETE, 1.0, 1)
    assert await sync.flush()
    assert sync.status.refused == 3  # xadd, pexpire, publish
    assert await sync.flush()
    assert len(client.sent) == 1


async def test_start_with_redis_down_returns_and_retries_with_a_bounded_backoff(
    client: FakeRedis, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    slept: list[float] = []
    enough = asyncio.Event()

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) >= 60:
            enough.set()
            await asyncio.Event().wait()
        await asyncio.sleep(0)

    client.down = ConnectionError("refused")
    sync = make(client, clock, sleep=sleep, flush_interval_s=0.25)
    sync.measured("a", COMPLETE, 1.0, 1)  # so every flush fails too
    await sync.start()
    assert not sync.status.available
    async with asyncio.timeout(10):
        await enough.wait()
    await sync.aclose()
    backoffs = [s for s in slept if s != 0.25]
    assert all(0.05 <= s <= 5.0 for s in backoffs)
    assert max(backoffs) > 2.5  # grew to the cap (jittered down by at most half)
    assert len(set(backoffs)) > 10  # jittered
    warnings = [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]
    assert len(warnings) == 1


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("replica_id", ""),
        ("replica_id", "x" * 60),
        ("flush_interval_s", 0.0),
        ("timeout_s", float("nan")),
        ("catch_up_timeout_s", -1.0),
        ("max_pending_samples", 0),
    ],
)
def test_rejects_settings_that_cannot_work(
    client: FakeRedis, clock: FakeClock, field: str, value: Any
) -> None:
    kwargs = {field: value}
    replica_id = kwargs.pop("replica_id", "r1")
    with pytest.raises(ValueError, match=field):
        ReplicaSync(
            client,  # type: ignore[arg-type]
            prefix="p:",
            replica_id=replica_id,
            health=DeploymentHealth(clock, random.Random(0), allowed_fails=1, cooldown_s=30.0),
            latency=LatencyTracker(clock),
            deployments=["a"],
            clock=clock,
            rng=random.Random(0),
            max_cooldown_s=300.0,
            **kwargs,
        )


def test_the_public_names() -> None:
    assert switchboard.replicas.__all__ == ["ReplicaSync", "ReplicaSyncStatus"]
