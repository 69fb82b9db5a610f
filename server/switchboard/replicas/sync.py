"""Cooldowns and latency samples shared by every gateway replica on one Redis.

    sync = ReplicaSync(redis, prefix=..., replica_id=f"{host}:{pid}", health=health,
                       latency=latency, deployments=ids, clock=clock, rng=rng,
                       max_cooldown_s=300.0)
    router = Router(..., observer=sync)   # the router reports its own events to `sync`
    await sync.start()                    # catches up, subscribes; never raises for Redis
    ...
    await sync.aclose()                   # a last flush, then unsubscribes

Design:

- **Live events on pub/sub.** The router tells `cooled` and `measured` of
  this replica's own cooldowns and kept samples; both only buffer (no I/O,
  never raising). A background task publishes them on `{prefix}replicas`:
  cooldowns at once, samples in batches every `flush_interval_s`, in one
  pipeline per flush. Another task reads the channel and applies what other
  replicas sent straight to the `DeploymentHealth` (`cool`) and the
  `LatencyTracker` (`record`), never through the router, so nothing is
  published twice; a replica skips its own messages by replica id.
- **Keys for catch-up.** Pub/sub keeps nothing, so each flush also stores
  what it publishes (before publishing it): a cooldown as a key that expires
  when the cooldown ends (the longer of two wins), samples in a stream per
  deployment and call kind capped at the tracker's window (`store.py`). A
  replica that starts, or reconnects, subscribes first and then reads them:
  cooldowns still running for the time they have left, samples younger than
  the tracker's `stale_after_s`, so it does not start cold and explore every
  deployment as if nothing were known. A sample both read back and received
  live is applied once: messages carry a per-sender sequence number.
- **Durations, not clocks.** A cooldown travels as the time it has left, a
  sample with its age; stored ones are aged by Redis's clock (PTTL, TIME and
  stream ids). Monotonic clocks differ per process and wall clocks drift.
- **Nothing read is trusted** (`events.py`): bounded sizes, strict shapes,
  finite non-negative numbers, cooldowns capped at `max_cooldown_s`, only
  this replica's deployments. What fails is dropped and counted, once logged.
- **Outages.** Every Redis call is bounded by a timeout; RedisError and
  OSError (timeouts included) mean Redis is unavailable: one WARNING when
  that starts, one INFO when it answers again. Meanwhile each replica routes
  on its own cooldowns and samples; pending cooldowns are kept and samples
  are kept up to `max_pending_samples` (the oldest dropped and counted, the
  stale ones left out). The subscription is retried with a backoff (doubling
  up to `RETRY_MAX_S`, jittered from the injected rng), then catches up
  again. A subscription that goes quiet is pinged, so a half-open connection
  is noticed too, and so is redis-py re-subscribing by itself after a dropped
  connection (what was published in between would never arrive).

Each replica keeps its own in-flight counts and its own exploration; only
cooldowns and samples are shared. Failure counts are not: a replica cools a
deployment on its own failures, and the others follow that cooldown.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import secrets
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Any

import redis.asyncio
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from switchboard.replicas import events
from switchboard.replicas.events import Cooldown, Decoder, Rejected, Sample
from switchboard.replicas.store import KEEP_LONGER, Layout, parse_catch_up, queue_catch_up
from switchboard.routing.health import DeploymentHealth
from switchboard.routing.latency import LatencyTracker
from switchboard.routing.strategy import CallKind
from switchboard.tasks import stop_task

log = logging.getLogger("switchboard.replicas")

# Socket failures may surface as OSError (TimeoutError included) rather than RedisError.
UNAVAILABLE = (RedisError, OSError)
RETRY_MIN_S = 0.1
RETRY_MAX_S = 5.0
# A subscription silent this long is pinged; silent as long again, it is given up.
IDLE_PING_S = 5.0
# Leaves room in the sender for the per-process suffix.
MAX_REPLICA_ID_CHARS = events.MAX_SENDER_CHARS - 9
# Senders whose sequence numbers are remembered (replicas come and go).
MAX_SENDERS = 1024
# Streams outlive their newest sample's staleness by this much.
_EXPIRY_MARGIN_MS = 1_000

Sleep = Callable[[float], Awaitable[None]]
# deployment id, kind, seconds, output tokens, when (on `clock`)
_Pending = tuple[str, CallKind, float, int | None, float]


@dataclass(frozen=True, slots=True)
class ReplicaSyncStatus:
    available: bool  # Redis answered the last call (or nothing failed yet)
    subscribed: bool
    published: int  # messages published
    applied: int  # other replicas' cooldowns and samples applied here
    rejected: int  # messages or stored entries that failed validation, dropped
    unknown: int  # cooldowns and samples of deployments this replica does not serve
    dropped_samples: int  # buffered samples dropped: over max_pending_samples
    refused: int  # commands Redis answered with an error (e.g. a key of another type)


class ReplicaSync:
    """Shares this replica's cooldowns and latency samples, and applies everyone else's."""

    def __init__(
        self,
        redis: redis.asyncio.Redis,
        *,
        prefix: str,
        replica_id: str,
        health: DeploymentHealth,
        latency: LatencyTracker,
        deployments: Collection[str],
        clock: Callable[[], float],
        rng: random.Random,
        max_cooldown_s: float,
        flush_interval_s: float = 0.25,
        timeout_s: float = 0.1,
        catch_up_timeout_s: float = 1.0,
        max_pending_samples: int = 10_000,
        sleep: Sleep = asyncio.sleep,
        owns_redis: bool = False,
    ) -> None:
        """`clock` is the one `health` and `latency` use.

        `replica_id` names this replica in what it publishes (e.g. host:pid);
        a random suffix makes every process a sender of its own, so a restart
        under the same name is never taken for the old process's messages.
        `prefix` must be the same in every replica that shares state, and
        differ otherwise; `max_cooldown_s` caps what others may impose.
        The client is closed by `aclose` only when `owns_redis` says so.
        """
        if not 0 < len(replica_id) <= MAX_REPLICA_ID_CHARS:
            raise ValueError(f"replica_id must have 1 to {MAX_REPLICA_ID_CHARS} characters")
        for name, value in (
            ("flush_interval_s", flush_interval_s),
            ("timeout_s", timeout_s),
            ("catch_up_timeout_s", catch_up_timeout_s),
        ):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be positive and finite, not {value!r}")
        if max_pending_samples < 1:
            raise ValueError("max_pending_samples must be at least 1")
        self._redis = redis
        self._owned = redis if owns_redis else None
        self._layout = Layout(prefix)
        # Identity, not behaviour: never from the injected rng, which replicas may share a seed of.
        self._replica_id = f"{replica_id}/{secrets.token_hex(4)}"
        self._health = health
        self._latency = latency
        self._deployments = sorted(set(deployments))
        self._decoder = Decoder(self._deployments, max_cooldown_s=max_cooldown_s)
        self._clock = clock
        self._rng = rng
        self._interval = flush_interval_s
        self._timeout_s = timeout_s
        self._catch_up_timeout_s = catch_up_timeout_s
        self._sleep = sleep
        # What this replica began and has not published: deployment -> (until, quota).
        self._cooldowns: dict[str, tuple[float, bool]] = {}
        self._samples: deque[_Pending] = deque(maxlen=max_pending_samples)
        self._wake = asyncio.Event()
        self._seq = 0
        # The newest sequence number applied per sender, oldest sender first.
        self._seen: dict[str, int] = {}
        self._pubsub: PubSub | None = None
        # Set when redis-py re-made the subscription's connection by itself.
        self._remade = False
        self._tasks: tuple[asyncio.Task[None], ...] = ()
        self._available = True
        self._bug_logged = False
        self._published = self._applied = self._rejected = self._unknown = 0
        self._dropped = self._refused = 0

    @property
    def status(self) -> ReplicaSyncStatus:
        return ReplicaSyncStatus(
            available=self._available,
            subscribed=self._pubsub is not None,
            published=self._published,
            applied=self._applied,
            rejected=self._rejected,
            unknown=self._unknown,
            dropped_samples=self._dropped,
            refused=self._refused,
        )

    async def start(self) -> None:
        """Catches up and subscribes, then works in the background.

        With Redis down it returns at once (after a bounded wait) and the
        background task keeps trying; routing meanwhile is this replica's own.
        """
        if self._tasks:
            return
        try:
            await self._connect()
        except UNAVAILABLE as exc:
            self._lost(exc)
        self._tasks = (
            asyncio.create_task(self._read_loop(), name="switchboard-replicas-read"),
            asyncio.create_task(self._flush_loop(), name="switchboard-replicas-flush"),
        )

    async def aclose(self) -> None:
        """Stops the background work, publishes what is pending (best effort), unsubscribes."""
        tasks, self._tasks = self._tasks, ()
        for task in tasks:
            await stop_task(task)
        await self.flush()
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            await self._close(pubsub)
        if self._owned is not None:
            await self._owned.aclose()

    def cooled(self, deployment_id: str, until: float, quota: bool) -> None:
        """This replica began a cooldown ending at `until` (on `clock`); published soon."""
        pending = self._cooldowns.get(deployment_id)
        if pending is None or until > pending[0]:
            self._cooldowns[deployment_id] = (until, quota)
        self._wake.set()

    def measured(
        self, deployment_id: str, kind: CallKind, seconds: float, output_tokens: int | None
    ) -> None:
        """This replica kept a latency sample; it goes out with the next batch."""
        if math.isfinite(seconds) and seconds >= 0:
            self._keep((deployment_id, kind, seconds, output_tokens, self._clock()))

    async def flush(self) -> bool:
        """Stores and publishes what is pending, in one pipeline; False when Redis did not answer.

        What was not sent stays pending (bounded), except what is stale by then.
        """
        cooldowns, self._cooldowns = self._cooldowns, {}
        pending = list(self._samples)
        self._samples.clear()
        now = self._clock()
        stale_after_s = self._latency.stale_after_s
        cooldowns = {d: c for d, c in cooldowns.items() if c[0] > now}
        pending = [p for p in pending if now - p[4] <= stale_after_s]
        if not cooldowns and not pending:
            return True
        pipe = self._redis.pipeline(transaction=False)
        published = 0
        for deployment_id, (until, quota) in cooldowns.items():
            left = until - now
            # Stored first: whoever hears of it can already find it.
            pipe.eval(
                KEEP_LONGER,
                1,
                self._layout.cooldown_key(deployment_id),
                str(max(1, math.ceil(left * 1000))),
                events.cooldown_value(quota),
            )
            pipe.publish(
                self._layout.channel,
                events.encode_cooldown(self._replica_id, deployment_id, left, quota),
            )
            published += 1
        window = self._latency.window
        # A tracker keeps only its newest `window` samples per deployment and kind, so
        # no more are sent per flush: the cost stays flat however busy the replica is.
        newest: dict[tuple[str, CallKind], deque[_Pending]] = {}
        for item in pending:
            newest.setdefault((item[0], item[1]), deque(maxlen=window)).append(item)
        pending = [item for kept in newest.values() for item in kept]
        samples = [Sample(d, kind, s, tokens, now - at) for d, kind, s, tokens, at in pending]
        expire_ms = math.ceil(stale_after_s * 1000) + _EXPIRY_MARGIN_MS
        for batch in events.batches(samples):
            self._seq += 1
            keys: set[str] = set()
            for sample in batch:
                key = self._layout.samples_key(sample.deployment_id, sample.kind)
                keys.add(key)
                value = events.encode_stored(self._replica_id, self._seq, sample)
                pipe.xadd(key, {"v": value}, maxlen=window, approximate=False)
            for key in sorted(keys):
                pipe.pexpire(key, expire_ms)
            pipe.publish(
                self._layout.channel, events.encode_samples(self._replica_id, self._seq, batch)
            )
            published += 1
        try:
            async with asyncio.timeout(self._timeout_s):
                replies: list[Any] = await pipe.execute(raise_on_error=False)
        except UNAVAILABLE as exc:
            self._restore(cooldowns, pending)
            self._lost(exc)
            return False
        except BaseException:
            self._restore(cooldowns, pending)
            raise
        self._count_refused(r for r in replies if isinstance(r, Exception))
        self._published += published
        self._recovered()
        return True

    def _restore(self, cooldowns: dict[str, tuple[float, bool]], pending: list[_Pending]) -> None:
        for deployment_id, (until, quota) in cooldowns.items():
            self.cooled(deployment_id, until, quota)
        # Back in front of what was measured meanwhile; over the bound, the oldest go.
        newer = list(self._samples)
        self._samples.clear()
        for item in (*pending, *newer):
            self._keep(item)

    def _keep(self, item: _Pending) -> None:
        samples = self._samples
        if len(samples) == samples.maxlen:
            self._dropped += 1  # the append pushes the oldest out
        samples.append(item)

    # --- the subscription ---

    async def _connect(self) -> None:
        """Subscribes, waits until Redis confirms it, then catches up (in that order:
        whatever is published meanwhile arrives live, and nothing falls between)."""
        pubsub = self._redis.pubsub()
        try:
            async with asyncio.timeout(self._timeout_s):
                await pubsub.subscribe(self._layout.channel)
                while True:
                    message = await pubsub.get_message(timeout=self._timeout_s)
                    if message is not None and message["type"] == "subscribe":
                        break
            self._remade = False
            _connection(pubsub).register_connect_callback(self._connection_remade)
            await self._catch_up()
        except BaseException:
            await self._close(pubsub)
            raise
        self._pubsub = pubsub
        self._recovered()

    def _connection_remade(self, _: object) -> None:
        """redis-py lost the subscription's connection and re-subscribed on its own.

        What was published in between never arrives: the subscription is
        replaced and caught up like any lost one (a method: redis-py keeps
        callbacks by weak reference).
        """
        self._remade = True

    async def _catch_up(self) -> None:
        pipe = self._redis.pipeline(transaction=False)
        queue_catch_up(pipe, self._layout, self._deployments, self._latency.window)
        async with asyncio.timeout(self._catch_up_timeout_s):
            replies: list[Any] = await pipe.execute(raise_on_error=False)
        found = parse_catch_up(
            replies,
            self._deployments,
            self._decoder,
            stale_after_s=self._latency.stale_after_s,
        )
        self._count_refused(found.refused)
        for rejected in found.rejected:
            self._reject(rejected)
        for deployment_id, seconds, quota in found.cooldowns:
            self._health.cool(deployment_id, seconds, quota=quota)
            self._applied += 1
        # Skip what was applied live already, judged before this catch-up's own.
        seen = dict(self._seen)
        newest: dict[str, int] = {}
        for loaded in sorted(found.samples, key=lambda loaded: -loaded.age_s):
            sample = loaded.sample
            if sample.sender == self._replica_id or sample.seq <= seen.get(sample.sender, -1):
                continue
            self._latency.record(
                loaded.deployment_id,
                loaded.kind,
                sample.seconds,
                sample.output_tokens,
                age_s=loaded.age_s,
            )
            self._applied += 1
            newest[sample.sender] = max(sample.seq, newest.get(sample.sender, -1))
        for sender, seq in newest.items():
            self._see(sender, seq)

    async def _read_loop(self) -> None:
        failures = 0
        while True:
            pubsub = self._pubsub
            try:
                if pubsub is None:
                    await self._connect()
                    failures = 0
                    continue
                await self._listen(pubsub)
            except Exception as exc:
                self._failed(exc)
            if pubsub is not None:
                self._pubsub = None
                await self._close(pubsub)
            failures += 1
            await self._sleep(self._backoff(failures))

    async def _listen(self, pubsub: PubSub) -> None:
        """Applies messages until the subscription fails (it then raises)."""
        pinged = False
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=IDLE_PING_S)
            if self._remade:
                raise RedisError("the subscription's connection was lost and re-made")
            if message is None:
                if pinged:
                    raise TimeoutError(f"the subscription was silent for {2 * IDLE_PING_S:g}s")
                async with asyncio.timeout(self._timeout_s):
                    await pubsub.ping()
                pinged = True
                continue
            pinged = False
            if message["type"] == "message":
                self._receive(message["data"])

    def _receive(self, data: object) -> None:
        event = self._decoder.message(data)
        if isinstance(event, Rejected):
            self._reject(event)
            return
        if event.sender == self._replica_id:
            return
        if isinstance(event, Cooldown):
            self._health.cool(event.deployment_id, event.seconds, quota=event.quota)
            self._applied += 1
            return
        self._unknown += event.unknown
        if event.seq <= self._seen.get(event.sender, -1):
            return  # read back by a catch-up already
        self._see(event.sender, event.seq)
        stale_after_s = self._latency.stale_after_s
        for sample in event.samples:
            if sample.age_s <= stale_after_s:
                self._latency.record(
                    sample.deployment_id,
                    sample.kind,
                    sample.seconds,
                    sample.output_tokens,
                    age_s=sample.age_s,
                )
                self._applied += 1

    def _see(self, sender: str, seq: int) -> None:
        seen = self._seen
        seen.pop(sender, None)
        seen[sender] = seq
        if len(seen) > MAX_SENDERS:
            del seen[next(iter(seen))]

    async def _close(self, pubsub: PubSub) -> None:
        connection = _connection(pubsub)
        if connection is not None:
            # The connection goes back to the pool, for other uses.
            connection.deregister_connect_callback(self._connection_remade)
        try:
            async with asyncio.timeout(self._timeout_s):
                await pubsub.aclose()  # type: ignore[no-untyped-call]
        except UNAVAILABLE:
            pass  # the connection is dropped either way

    # --- publishing ---

    async def _flush_loop(self) -> None:
        failures = 0
        while True:
            if failures:
                await self._sleep(self._backoff(failures))
            else:
                await self._pause(self._interval)
            try:
                sent = await self.flush()
            except Exception as exc:
                self._failed(exc)
                sent = False
            failures = 0 if sent else failures + 1

    async def _pause(self, seconds: float) -> None:
        """Sleeps `seconds`, or less when a cooldown waits to be published."""
        if not self._wake.is_set():
            sleeper = asyncio.ensure_future(self._sleep(seconds))
            waker = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait((sleeper, waker), return_when=asyncio.FIRST_COMPLETED)
            finally:
                sleeper.cancel()
                waker.cancel()
        self._wake.clear()

    # --- outages and bad input ---

    def _backoff(self, failures: int) -> float:
        delay = min(RETRY_MAX_S, RETRY_MIN_S * 2.0 ** min(failures - 1, 32))
        return delay * (0.5 + 0.5 * self._rng.random())

    def _failed(self, exc: Exception) -> None:
        if isinstance(exc, UNAVAILABLE):
            self._lost(exc)
        elif not self._bug_logged:
            self._bug_logged = True
            log.error("replicas: sync failed; retrying (logged once)", exc_info=exc)

    def _lost(self, exc: BaseException) -> None:
        if self._available:
            self._available = False
            log.warning(
                "replicas: Redis unavailable (%s: %s); cooldowns and latency are this "
                "replica's own until it answers",
                type(exc).__name__,
                exc,
            )

    def _recovered(self) -> None:
        if not self._available:
            self._available = True
            log.info("replicas: Redis answers again; sharing cooldowns and latency again")

    def _reject(self, rejected: Rejected) -> None:
        if rejected.unknown:
            self._unknown += 1
            return
        self._rejected += 1
        if self._rejected == 1:
            log.warning(
                "replicas: dropped an invalid event (%s); further ones are counted, not logged",
                rejected.reason,
            )

    def _count_refused(self, errors: Iterable[Exception]) -> None:
        for error in errors:
            self._refused += 1
            if self._refused == 1:
                log.warning(
                    "replicas: Redis refused a command (%s); further refusals are counted, "
                    "not logged",
                    error,
                )


def _connection(pubsub: PubSub) -> Any:
    # redis-py declares it None: it is set once subscribed.
    return pubsub.connection
