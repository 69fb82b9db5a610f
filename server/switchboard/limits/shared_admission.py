"""Admission shared by every replica through Redis, with the native limiter in front.

Each reservation is decided by the shared limiter (`shared.py`): one
EVALSHA naming the deployment's key and the caller's together, so the
check-then-record of both is atomic across replicas and never admits more
than a limit in any window. The native limiter stays in front, and three
things make it worth keeping there:

- **Denials cost no round trip.** A key Redis refused is remembered until
  its `retry_after`, for requests at least as large; this replica's own
  count (the native limiter at the full limits) refuses what could not fit
  anywhere. Both are exact in the safe direction: they only refuse what
  Redis would refuse (or frees up a little later than Redis would).
- **Its history is this replica's traffic**, so when Redis is unreachable
  each limit falls back to its local share (`local_share`, e.g. 1/3 with
  three replicas) and the recent past counts against it, as it should.
- **Outages are put right, once.** What was admitted locally during an
  outage is charged to Redis when it returns, under one id whatever the
  retries, so the next window there counts it; a reservation still open
  then is settled against Redis like any other.

Settlements are sent in batches by a background task (one pipeline per
wake-up), off the call's path. A settlement that never left before Redis
was lost is sent after its return; one that was sent and not answered may
or may not have applied and is not sent again: a lost release or
commit-down leaves a reservation counted at its reserved size (erring
toward under-use), a lost commit-up under-counts by its excess (counted in
`lost_settles`).

While Redis is down, a probe (PING, bounded by the limiter's timeout) runs
every `probe_interval_s` with jitter, so replicas do not return as a herd;
no call waits on a Redis known to be down, and one that finds it down
waits at most that timeout before it is decided locally.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import math
import random
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field

from switchboard.config import Deployment
from switchboard.limits import RateLimiter, Ticket
from switchboard.limits.admission import (
    Admission,
    Refusal,
    Reservation,
    Settleable,
    deployment_key,
)
from switchboard.limits.shared import (
    SharedDenied,
    SharedLimiter,
    SharedLimiterUnavailable,
    SharedTicket,
    cancel_requested,
)
from switchboard.tasks import stop_task

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]

# Admissions kept for a charge on Redis's return, at most: beyond it the
# oldest are dropped (they were about to leave the window anyway).
MAX_HISTORY = 200_000


class Mode(enum.Enum):
    SHARED = "shared"
    LOCAL = "local"


@dataclass(slots=True)
class SharingStats:
    """How admissions were decided; read by the metrics and the benchmark."""

    # Decided by Redis: one round trip each.
    round_trips: int = 0
    # Refused without a round trip: remembered Redis denials, this replica's own count.
    cached_denials: int = 0
    local_denials: int = 0
    # Refused by Redis.
    shared_denials: int = 0
    # Decided locally, at the local shares, while Redis was unreachable.
    outage_admissions: int = 0
    # Times Redis was lost, and times it came back.
    fallbacks: int = 0
    recoveries: int = 0
    # Settlements sent and not answered: see the module docstring.
    lost_settles: int = 0

    def decisions(self) -> dict[str, int]:
        """Admission decisions by who made them, for the metrics."""
        return {
            "redis": self.round_trips,
            "remembered": self.cached_denials,
            "local": self.local_denials,
            "outage": self.outage_admissions,
        }

    @property
    def avoided(self) -> int:
        """Decisions the local fast path made without a round trip."""
        return self.cached_denials + self.local_denials


@dataclass(slots=True, eq=False)
class _Admitted:
    """One admission of this replica, kept while it is inside the window.

    `ticket` is what its settlement corrects in Redis: the acquire's ticket,
    or a charge's; None for an admission made while Redis was unreachable and
    not yet charged there.
    """

    keys: tuple[str, ...]
    at: float
    tokens: int
    ticket: SharedTicket | None
    requests: int = 1
    settled: bool = False
    # Taken into a charge (made while Redis was unreachable): never charged twice.
    charged: bool = False


@dataclass(slots=True, eq=False)
class _Held:
    """A shared reservation: the native ticket and this replica's record of it."""

    local: Ticket
    record: _Admitted | None

    @property
    def settled(self) -> bool:
        return self.local.settled


@dataclass(slots=True)
class _Charge:
    """Admissions being charged to Redis; retried with the same id until it answers."""

    id: str
    totals: dict[str, tuple[int, int]]
    # The records still open when the totals were taken, with the tokens they counted.
    records: list[tuple[_Admitted, int]] = field(default_factory=list)


class SharedAdmission(Admission):
    """`Admission` whose decisions hold across replicas; see the module docstring."""

    def __init__(
        self,
        limiter: RateLimiter,
        shared: SharedLimiter,
        deployments: Iterable[Deployment],
        clock: Callable[[], float],
        *,
        local_share: float,
        replica_id: str,
        rng: random.Random,
        sleep: Sleep = asyncio.sleep,
        probe_interval_s: float = 0.5,
        watch_interval_s: float = 1.0,
    ) -> None:
        if not 0 < local_share <= 1:
            raise ValueError(f"local_share must be in (0, 1], not {local_share}")
        self._shared = shared
        self._share = local_share
        self._replica_id = replica_id
        self._rng = rng
        self._sleep = sleep
        self._probe_interval_s = probe_interval_s
        self._watch_interval_s = watch_interval_s
        self._watched_at = -math.inf
        # Redis's headroom of each deployment key, as of the last watch (every watch_interval_s).
        self._remote_headroom: dict[str, tuple[int | None, int | None]] = {}
        self._window_s = limiter.window_seconds
        # Every configured key's full limits; the native limiter holds them or the shares.
        self._full: dict[str, tuple[int | None, int | None]] = {}
        self._mode = Mode.SHARED
        deployments = tuple(deployments)
        super().__init__(limiter, deployments, clock)
        self._names = {d.id: deployment_key(d.id) for d in deployments}
        # Keys Redis refused: until when (this clock) and for requests of at least how many tokens.
        self._blocked: dict[str, tuple[float, int]] = {}
        self._settles: list[tuple[SharedTicket, int | None]] = []
        # This replica's admissions on limited keys inside the window, oldest first.
        self._history: deque[_Admitted] = deque()
        self._charge: _Charge | None = None
        self._charges = 0
        # The Redis server last seen (INFO run_id): another one has forgotten every count.
        self._run_id: str | None = None
        self._wake = asyncio.Event()
        self._shared_again = asyncio.Event()
        self._shared_again.set()
        self._tasks: list[asyncio.Task[None]] = []
        self._probe: asyncio.Task[None] | None = None
        self.stats = SharingStats()

    @property
    def mode(self) -> Mode:
        return self._mode

    @property
    def shared(self) -> SharedLimiter:
        return self._shared

    @property
    def local_share(self) -> float:
        return self._share

    async def until_shared(self) -> None:
        """Returns once decisions go through Redis (at once, unless Redis was lost)."""
        await self._shared_again.wait()

    def configure(self, key: str, rpm: int | None, tpm: int | None) -> None:
        self._full[key] = (rpm, tpm)
        self._shared.configure(key, rpm, tpm)
        if self._mode is Mode.LOCAL:
            rpm, tpm = self._share_of(rpm), self._share_of(tpm)
        super().configure(key, rpm, tpm)

    async def start(self) -> None:
        """Starts the settlement flusher; Redis down at start means local shares from the start."""
        self._tasks.append(asyncio.create_task(self._flush_loop(), name="limits-settle"))
        try:
            self._run_id = await self._shared.run_id()
        except SharedLimiterUnavailable as exc:
            self._lost(exc)

    async def aclose(self) -> None:
        """Sends what is pending once (best effort) and stops the background work."""
        tasks = [*self._tasks, *([self._probe] if self._probe is not None else [])]
        for task in tasks:
            await stop_task(task)
        self._tasks.clear()
        self._probe = None
        await self._shared.aclose()
        with contextlib.suppress(SharedLimiterUnavailable):
            await self.flush()

    async def flush(self) -> None:
        """Sends the pending settlements now (when Redis is in use)."""
        if self._mode is Mode.SHARED and self._settles:
            await self._send_settles()

    async def reserve(
        self, deployment: Deployment, tokens: int, extra_keys: Sequence[str] = ()
    ) -> Reservation | Refusal:
        name = self._names.get(deployment.id) or deployment_key(deployment.id)
        names = (name, *extra_keys) if extra_keys else (name,)
        if self._blocked:
            remembered = self._remembered(names, tokens)
            if remembered is not None:
                self.stats.cached_denials += 1
                return remembered
        local = self._acquire(deployment, tokens, extra_keys)
        if isinstance(local, Refusal):
            self.stats.local_denials += 1
            return local
        if self._mode is Mode.LOCAL:
            return self._admitted(local, names, tokens, None)
        self.stats.round_trips += 1
        try:
            result = await self._shared.try_acquire(names, tokens)
        except SharedLimiterUnavailable as exc:
            self._limiter.release(local, self._now())
            self._lost(exc)
            # Decided again, now against this replica's shares.
            retried = self._acquire(deployment, tokens, extra_keys)
            if isinstance(retried, Refusal):
                return retried
            return self._admitted(retried, names, tokens, None)
        except BaseException:
            self._limiter.release(local, self._now())
            raise
        if cancel_requested():
            # The caller left while Redis decided (and the client swallowed the cancel).
            self._limiter.release(local, self._now())
            if not isinstance(result, SharedDenied):
                self._settles.append((result, None))
                self._wake.set()
            raise asyncio.CancelledError
        if isinstance(result, SharedDenied):
            self._limiter.release(local, self._now())
            self.stats.shared_denials += 1
            if not result.never:
                self._blocked[result.key] = (self._clock() + result.retry_after, tokens)
            return Refusal(result.key, result.retry_after, tokens)
        return self._admitted(local, names, tokens, result)

    def headroom(self, key: str) -> tuple[int | None, int | None]:
        """What every replica together has left on a deployment key, as of the last watch
        (at most `watch_interval_s` old); this replica's own view otherwise."""
        remote = self._remote_headroom.get(key) if self._mode is Mode.SHARED else None
        return remote if remote is not None else super().headroom(key)

    def _remembered(self, names: Sequence[str], tokens: int) -> Refusal | None:
        now = self._clock()
        for name in names:
            hold = self._blocked.get(name)
            if hold is None:
                continue
            until, least = hold
            if now >= until:
                del self._blocked[name]
            elif tokens >= least:
                return Refusal(name, until - now, tokens)
        return None

    def _admitted(
        self, local: Ticket, names: Sequence[str], tokens: int, ticket: SharedTicket | None
    ) -> Reservation:
        if ticket is None:
            self.stats.outage_admissions += 1
            limited = tuple(n for n in dict.fromkeys(names) if self._is_limited(n))
        else:
            limited = ticket.keys
        record = None
        if limited:
            now = self._clock()
            record = _Admitted(limited, now, tokens, ticket)
            history = self._history
            history.append(record)
            horizon = now - self._window_s
            while history and (history[0].at <= horizon or len(history) > MAX_HISTORY):
                history.popleft()
        self._open += 1
        return Reservation(self, _Held(local, record), tokens)

    def _is_limited(self, key: str) -> bool:
        rpm, tpm = self._full.get(key, (None, None))
        return rpm is not None or tpm is not None

    def _settle(self, settleable: Settleable, actual_tokens: int | None) -> None:
        held = settleable
        assert isinstance(held, _Held)
        super()._settle(held.local, actual_tokens)
        record = held.record
        if record is None:
            return
        record.settled = True
        record.requests, record.tokens = (0, 0) if actual_tokens is None else (1, actual_tokens)
        if record.ticket is not None:
            self._settles.append((record.ticket, actual_tokens))
            self._wake.set()

    async def _flush_loop(self) -> None:
        """Sends settlements as they come, and looks for a Redis that lost its counts.

        A restarted server is noticed within `watch_interval_s` even by a
        replica with no traffic, which still holds admissions the new server
        must count.
        """
        while True:
            if cancel_requested():
                # A cancel the Redis client swallowed (it may return normally instead).
                raise asyncio.CancelledError
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._watch_interval_s):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self.flush()
                now = self._clock()
                if self._mode is Mode.SHARED and now - self._watched_at >= self._watch_interval_s:
                    self._watched_at = now
                    if await self._shared.run_id() != self._run_id:
                        self._lost(None)
                    else:
                        self._remote_headroom = await self._shared.headroom_many(
                            list(self._names.values())
                        )
            except SharedLimiterUnavailable as exc:
                self._lost(exc)

    async def _send_settles(self) -> None:
        batch, self._settles = self._settles, []
        try:
            await self._shared.settle_all(batch)
        except SharedLimiterUnavailable:
            self.stats.lost_settles += len(batch)
            raise

    # ------------------------------------------------------------------ outages

    def _lost(self, exc: SharedLimiterUnavailable | None) -> None:
        """Decide locally until Redis is back; `exc` None: it is back already, but empty."""
        if self._mode is Mode.LOCAL:
            return
        self._mode = Mode.LOCAL
        self._shared_again.clear()
        self.stats.fallbacks += 1
        if exc is None:
            log.warning(
                "shared limits: Redis restarted and lost its counts; charging it with this "
                "replica's admissions in the window"
            )
        else:
            log.warning(
                "shared limits: Redis is unreachable (%s); each limit falls back to this "
                "replica's share of it (%.3g) until Redis answers again",
                exc,
                self._share,
            )
        for key, (rpm, tpm) in self._full.items():
            self._limiter.configure(key, self._share_of(rpm), self._share_of(tpm))
        if self._probe is None or self._probe.done():
            self._probe = asyncio.create_task(
                self._probe_loop(at_once=exc is None), name="limits-probe"
            )

    async def _probe_loop(self, *, at_once: bool) -> None:
        while True:
            if cancel_requested():
                raise asyncio.CancelledError
            if not at_once:
                # Jittered, so replicas that lost Redis together do not return together.
                await self._sleep(self._probe_interval_s * (0.5 + self._rng.random()))
            at_once = False
            try:
                await self._recover()
            except SharedLimiterUnavailable:
                continue
            return

    async def _recover(self) -> None:
        """Charges Redis for what it has not counted, then decides through Redis again.

        The same server missed the outage's admissions; a new one (restarted,
        failed over) lost every count, so it is charged for all of this
        replica's admissions still inside the window.
        """
        run_id = await self._shared.run_id()
        restarted = run_id != self._run_id
        if restarted:
            # A charge to a server that is gone: the new one is charged for everything.
            self._charge = None
        while True:
            if self._charge is None:
                self._charge = self._next_charge(everything=restarted)
                restarted = False
            if self._charge is None:
                break
            charge = self._charge
            buckets, at_us = await self._shared.charge(charge.totals, charge.id)
            self._charge = None
            for record, counted in charge.records:
                ticket = self._shared.ticket(
                    record.keys, [buckets[k] for k in record.keys], counted, at_us
                )
                if record.settled:
                    # Settled while the charge was out, after its totals were taken.
                    self._settles.append((ticket, record.tokens if record.requests else None))
                else:
                    record.ticket = ticket
        # Nothing awaited from the last check to here: no admission slips between.
        self._run_id = run_id
        for key, (rpm, tpm) in self._full.items():
            self._limiter.configure(key, rpm, tpm)
        self._mode = Mode.SHARED
        self._shared_again.set()
        self.stats.recoveries += 1
        self._wake.set()
        log.info("shared limits: Redis answers again; limits are shared across replicas")

    def _next_charge(self, *, everything: bool) -> _Charge | None:
        """What Redis has not counted, totalled per key; None: nothing.

        The records charged get the charge's ticket when the totals are
        taken, so the next call sees them as counted.
        """
        horizon = self._clock() - self._window_s
        taken = [
            r
            for r in self._history
            if r.at > horizon
            and (everything or (r.ticket is None and not r.charged))
            and (r.requests or r.tokens)
        ]
        if not taken:
            return None
        totals: Counter[str] = Counter()
        tokens: Counter[str] = Counter()
        for record in taken:
            for key in record.keys:
                totals[key] += record.requests
                tokens[key] += record.tokens
        self._charges += 1
        charge = _Charge(
            id=f"{self._replica_id}:{self._charges}",
            totals={key: (totals[key], tokens[key]) for key in totals},
            records=[(r, r.tokens) for r in taken if not r.settled],
        )
        for record in taken:
            record.charged = True
        return charge

    def _share_of(self, limit: int | None) -> int | None:
        return None if limit is None else max(1, math.floor(limit * self._share))
