"""Rate limits shared by every gateway replica through Redis, exactly.

`SharedLimiter` is the Redis-backed twin of the native `RateLimiter`
(docs/limiter.md): the same bucketed sliding window, the same all-or-none
admission over several keys, the same denials (the key with the longest wait
and the exact time it fits, or "never"), and the same settlement (commit up
or down, release, once). What differs, and why:

- **One clock: Redis's.** Replicas' clocks may be skewed, so the script reads
  `TIME` itself and every replica's decisions land on one timeline. Time is
  counted in microseconds (TIME's resolution); the window is rounded *up* to
  one and the bucket width is `q = ceil(window / 1024)`.
- **One round trip per call, shared when it can be.** Each call is one
  EVALSHA of `shared.lua`, naming every limited key at once, so the
  check-then-record of all of them is atomic across replicas; the script is
  loaded on the first NOSCRIPT only. Acquires asked for in the same turn of
  the event loop go out together in one pipeline.
- **Limits travel with each call** (ARGV): `configure` is local and stores
  nothing in Redis, so replicas configured alike agree, and a key nobody
  configured is unlimited, costs no round trip and creates no state.
- **Data:** one hash per limited key, `{prefix}{key}` (any characters are
  safe: the key is only ever a Redis key suffix, and there is no second key
  per limiter key that another name could collide with). Its buckets are a
  linked list inside the hash, oldest first, so expired ones are dropped in
  O(1) amortised per call and at most 1025 are ever stored. Each admission
  sets the key to expire a margin after its newest bucket leaves the window,
  so idle keys vanish. On Redis Cluster every key named in one call must hash
  to one slot: put a hash tag in `prefix` (e.g. ``"{switchboard}:limits:"``).

Errors::

    SharedLimiterUnavailable      Redis did not answer in time, refused the
                                  connection, or failed the script
    ValueError                    bad configuration or input; a ticket settled
                                  twice or from another limiter

When Redis is unavailable the caller falls back to local limits. The script
is atomic, so there is never half a reservation; but a call that timed out
may or may not have run:

- `try_acquire` raising: the request may have been recorded in Redis, and if
  so it stays counted at its reserved size until it leaves the window (as an
  unsettled ticket would). Nothing can refund it (no ticket came back). That
  errs toward under-use, never over-admission, so the caller needs no repair;
  it must simply not assume the reservation failed *and* retry against Redis
  as if nothing happened more than the limits can absorb. Falling back to
  local limits, a caller keeps the never-over guarantee only if each
  replica's local limits are its share of the shared ones (e.g. rpm divided
  by the number of replicas), since Redis's counts are invisible locally.
- `commit`/`release` raising: the ticket is settled regardless (a second try
  could apply the correction twice). A lost release or commit-down leaves
  the reservation counted at its reserved size (conservative); a lost
  commit-up under-counts by `actual - reserved`, the one way an outage can
  let a window hold more tokens than the limit (by at most that excess).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib.resources
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import redis.asyncio
from redis.exceptions import NoScriptError, RedisError

__all__ = ["SharedDenied", "SharedLimiter", "SharedLimiterUnavailable", "SharedTicket"]

US_PER_SECOND = 1_000_000
BUCKETS = 1024  # per window, as in the native limiter
MAX_WINDOW_S = 2**31  # as in the native limiter; keeps every time below 2**53 us
# How long a key outlives its newest bucket: slack for expiry's millisecond rounding.
EXPIRY_MARGIN_MS = 1_000
# Socket failures may surface as OSError (TimeoutError included) rather than RedisError.
_UNAVAILABLE = (RedisError, OSError)


class SharedLimiterUnavailable(Exception):
    """Redis did not decide in time: fall back to local limits (see the module docstring)."""


@dataclass(eq=False)
class SharedTicket:
    """One admission: what to correct on settlement, and when Redis admitted it.

    `keys` are the limited keys named (deduplicated, in order) and `buckets`
    the bucket each was recorded in (its entries are stamped at
    `(bucket + 1) * bucket_us`); `admitted_at_us` is Redis's TIME at the
    decision, or None when no key was limited (then Redis was not asked).
    """

    tokens: int
    keys: tuple[str, ...]
    buckets: tuple[int, ...]
    admitted_at_us: int | None
    settled: bool = False
    _owner: object = field(default=None, repr=False)

    def __bool__(self) -> bool:
        return True


@dataclass(frozen=True)
class SharedDenied:
    """A refusal: `key` has the longest wait; `never` when tokens exceed its tpm.

    `retry_at_us` is the Redis time (us) from which the same request fits on
    every key if nothing else is admitted first, and not a microsecond earlier;
    `retry_after` is that minus Redis's time at the decision, in seconds
    (`math.inf` and `retry_at_us` None when it never fits).
    """

    key: str
    retry_after: float
    never: bool
    retry_at_us: int | None
    decided_at_us: int

    def __bool__(self) -> bool:
        return False


@dataclass(frozen=True)
class _Limits:
    rpm: int | None
    tpm: int | None


class SharedLimiter:
    """Exact rpm/tpm limits over a sliding window, shared through one Redis."""

    def __init__(
        self,
        redis: redis.asyncio.Redis,
        *,
        window_seconds: float,
        prefix: str = "switchboard:limits:",
        timeout_s: float = 0.05,
    ) -> None:
        if not (math.isfinite(window_seconds) and 0 < window_seconds <= MAX_WINDOW_S):
            raise ValueError(f"window_seconds must be in (0, {MAX_WINDOW_S}], not {window_seconds}")
        if not (math.isfinite(timeout_s) and timeout_s > 0):
            raise ValueError(f"timeout_s must be positive and finite, not {timeout_s}")
        self._redis = redis
        self._prefix = prefix
        self._timeout_s = timeout_s
        # Exact: a float's Fraction is its true value, so the window is never shorter.
        self._window_us = math.ceil(Fraction(window_seconds) * US_PER_SECOND)
        self._bucket_us = -(-self._window_us // BUCKETS)
        self._limits: dict[str, _Limits] = {}
        self._script = (
            importlib.resources.files("switchboard.limits").joinpath("shared.lua").read_text()
        )
        # EVALSHA needs no SCRIPT LOAD until Redis says NOSCRIPT (a restart, SCRIPT FLUSH).
        self._sha = hashlib.sha1(self._script.encode()).hexdigest()
        self._common = (str(self._window_us), str(self._bucket_us), str(EXPIRY_MARGIN_MS))
        # Acquires asked for in this turn of the event loop, sent together at its end.
        self._batch: list[_Asked] = []
        self._senders: set[asyncio.Task[None]] = set()
        self.batches = 0
        self.batched = 0

    @property
    def window_us(self) -> int:
        return self._window_us

    @property
    def bucket_us(self) -> int:
        """The bucket width q, in microseconds of Redis's clock."""
        return self._bucket_us

    def configure(self, key: str, rpm: int | None, tpm: int | None) -> None:
        """Sets a key's limits here only; replicas must be configured alike."""
        for name, limit in (("rpm", rpm), ("tpm", tpm)):
            if limit is not None and (not isinstance(limit, int) or limit < 1):
                raise ValueError(f"{name} must be an int of at least 1 or None, not {limit!r}")
        self._limits[key] = _Limits(rpm, tpm)

    async def try_acquire(self, keys: Sequence[str], tokens: int) -> SharedTicket | SharedDenied:
        """Reserves one request and `tokens` on every limited key, or on none."""
        if isinstance(keys, str):
            raise TypeError("keys must be a sequence of key names, not one str")
        _check_tokens(tokens)
        limited = [k for k in dict.fromkeys(keys) if self._limited(k)]
        if not limited:
            return SharedTicket(tokens, (), (), None, _owner=self)
        args: list[str] = ["acquire", *self._common, str(tokens)]
        for key in limited:
            limits = self._limits[key]
            args.append(str(-1 if limits.rpm is None else limits.rpm))
            args.append(str(-1 if limits.tpm is None else limits.tpm))
        reply = await self._ask(limited, args)
        if reply[0] == 1:
            buckets = tuple(int(b) for b in reply[2:])
            return SharedTicket(tokens, tuple(limited), buckets, int(reply[1]), _owner=self)
        _, position, retry_at, decided_at = (int(x) for x in reply)
        key = limited[position - 1]
        if retry_at < 0:
            return SharedDenied(key, math.inf, True, None, decided_at)
        return SharedDenied(
            key, (retry_at - decided_at) / US_PER_SECOND, False, retry_at, decided_at
        )

    async def commit(self, ticket: SharedTicket, actual_tokens: int) -> None:
        """Corrects the reservation to real usage, up or down, where it still counts."""
        await self.settle_all([(ticket, actual_tokens)])

    async def release(self, ticket: SharedTicket) -> None:
        """Refunds the reservation entirely: the request never ran."""
        await self.settle_all([(ticket, None)])

    async def aclose(self) -> None:
        """Waits for the acquires already sent (each bounded by the timeout)."""
        if self._senders:
            await asyncio.wait(set(self._senders))

    async def settle_all(self, settlements: Sequence[tuple[SharedTicket, int | None]]) -> None:
        """Settles many tickets in one round trip: (ticket, actual tokens), None to release.

        Every ticket is settled before anything is sent, as in `commit`; a
        failure raises `SharedLimiterUnavailable` and loses the corrections
        that may not have been applied (see the module docstring).
        """
        calls: list[tuple[list[str], list[str]]] = []
        for ticket, actual in settlements:
            if actual is not None:
                _check_tokens(actual)
            self._check_open(ticket)
        for ticket, actual in settlements:
            ticket.settled = True
            requests, tokens = (-1, -ticket.tokens) if actual is None else (0, actual)
            if actual is not None:
                tokens -= ticket.tokens
            if ticket.keys and (requests or tokens):
                args = ["settle", *self._common, str(requests), str(tokens)]
                args.extend(str(b) for b in ticket.buckets)
                calls.append(([self._prefix + k for k in ticket.keys], args))
        if calls:
            _replied(await self._eval_all(calls))

    async def charge(
        self, totals: Mapping[str, tuple[int, int]], charge_id: str
    ) -> tuple[dict[str, int], int]:
        """Adds (requests, tokens) to each key unchecked, once per `charge_id`.

        For what was admitted while Redis was unreachable: once it returns,
        its window must count that traffic too. A retry after a lost reply
        finds the charge's marker and changes nothing. Returns the bucket each
        key was charged in (to settle later corrections against) and Redis's
        time; keys with nothing to add or no limits are left out.
        """
        keys = [k for k, (r, t) in totals.items() if (r or t) and self._limited(k)]
        if not keys:
            return {}, 0
        lifetime_ms = -(-self._window_us // 1000) + EXPIRY_MARGIN_MS
        args: list[str] = ["charge", *self._common, str(lifetime_ms)]
        for key in keys:
            requests, tokens = totals[key]
            _check_tokens(requests)
            _check_tokens(tokens)
            args += [str(requests), str(tokens)]
        names = [*keys, f"charge:{charge_id}"]
        reply = await self._run(names, args)
        return dict(zip(keys, (int(b) for b in reply[2:]), strict=True)), int(reply[1])

    def ticket(
        self, keys: Sequence[str], buckets: Sequence[int], tokens: int, at_us: int
    ) -> SharedTicket:
        """A ticket for a reservation `charge` recorded, so its settlement corrects Redis."""
        return SharedTicket(tokens, tuple(keys), tuple(buckets), at_us, _owner=self)

    async def run_id(self) -> str:
        """The Redis server's run id: another id means a server that has forgotten every count
        (restarted without persistence, or failed over)."""
        try:
            async with asyncio.timeout(self._timeout_s):
                info = await self._redis.info("server")
        except _UNAVAILABLE as exc:
            raise _unavailable(exc) from exc
        return str(info.get("run_id", ""))

    async def headroom(self, key: str) -> tuple[int | None, int | None]:
        """(requests left, tokens left) in the window now, None where unlimited."""
        limits = self._limits.get(key)
        if limits is None or not self._limited(key):
            return (None, None)
        requests, tokens = (int(x) for x in await self._run([key], ["headroom", *self._common]))
        return (
            None if limits.rpm is None else max(0, limits.rpm - requests),
            None if limits.tpm is None else max(0, limits.tpm - tokens),
        )

    async def headroom_many(self, keys: Sequence[str]) -> dict[str, tuple[int | None, int | None]]:
        """`headroom` of several keys in one round trip (unlimited keys are not asked)."""
        limited = [k for k in dict.fromkeys(keys) if self._limited(k)]
        if not limited:
            return {}
        calls = [([self._prefix + k], ["headroom", *self._common]) for k in limited]
        replies = _replied(await self._eval_all(calls))
        found: dict[str, tuple[int | None, int | None]] = {}
        for key, reply in zip(limited, replies, strict=True):
            requests, tokens = (int(x) for x in reply)
            limits = self._limits[key]
            found[key] = (
                None if limits.rpm is None else max(0, limits.rpm - requests),
                None if limits.tpm is None else max(0, limits.tpm - tokens),
            )
        return found

    def _limited(self, key: str) -> bool:
        limits = self._limits.get(key)
        return limits is not None and (limits.rpm is not None or limits.tpm is not None)

    def _check_open(self, ticket: SharedTicket) -> None:
        if ticket._owner is not self:
            raise ValueError("the ticket belongs to another limiter")
        if ticket.settled:
            raise ValueError("the ticket is already committed or released")

    async def _run(self, keys: list[str], args: list[str]) -> list[Any]:
        """One EVALSHA, as `_eval_all` sends it."""
        (reply,) = _replied(await self._eval_all([([self._prefix + k for k in keys], args)]))
        found: list[Any] = reply
        return found

    async def _eval_all(self, calls: list[tuple[list[str], list[str]]]) -> list[Any]:
        """The script's replies to `calls` (prefixed key names, args), in one round trip
        bounded by the timeout; a script error stays in its reply.

        A script flushed meanwhile (a restart, SCRIPT FLUSH) answers NOSCRIPT,
        which means the call never ran: the script is loaded and those calls
        alone are sent again.
        """
        try:
            async with asyncio.timeout(self._timeout_s):
                replies = await self._calls(calls)
                again = [i for i, r in enumerate(replies) if _noscript(r)]
                if again:
                    await self._redis.script_load(self._script)
                    resent = await self._calls([calls[i] for i in again])
                    for i, reply in zip(again, resent, strict=True):
                        replies[i] = reply
        except _UNAVAILABLE as exc:
            raise _unavailable(exc) from exc
        return replies

    async def _ask(self, keys: list[str], args: list[str]) -> list[Any]:
        """One acquire, sent with every other acquire asked for in the same turn of the loop.

        Concurrent calls then share one pipeline (one write, one read, one
        connection) instead of each taking a connection; a call alone waits
        for nothing but the end of its turn. A caller that leaves before the
        reply does not cancel the send: an admission it no longer wants is
        released by the sender.
        """
        asked = _Asked([self._prefix + key for key in keys], args)
        if not self._batch:
            asyncio.get_running_loop().call_soon(self._send_batch)
        self._batch.append(asked)
        return await asked.reply

    def _send_batch(self) -> None:
        batch, self._batch = self._batch, []
        task = asyncio.create_task(self._send(batch), name="shared-limiter-acquire")
        self._senders.add(task)
        task.add_done_callback(self._senders.discard)

    async def _send(self, batch: list[_Asked]) -> None:
        self.batches += 1
        self.batched += len(batch)
        try:
            replies = await self._eval_all([(asked.names, asked.args) for asked in batch])
        except (SharedLimiterUnavailable, asyncio.CancelledError) as exc:
            error = (
                exc
                if isinstance(exc, SharedLimiterUnavailable)
                else SharedLimiterUnavailable("shared limiter: the send was cancelled")
            )
            for asked in batch:
                if not asked.reply.done():
                    asked.reply.set_exception(error)
            return
        orphans: list[tuple[list[str], list[str]]] = []
        for asked, reply in zip(batch, replies, strict=True):
            if asked.reply.cancelled():
                if not isinstance(reply, Exception) and reply[0] == 1:
                    orphans.append(_release_of(asked, reply))
            elif isinstance(reply, Exception):
                asked.reply.set_exception(SharedLimiterUnavailable(f"shared limiter: {reply}"))
            else:
                asked.reply.set_result(reply)
        if orphans:
            # Best effort: if this fails the admissions stay counted until they leave.
            with contextlib.suppress(*_UNAVAILABLE, TimeoutError):
                async with asyncio.timeout(self._timeout_s):
                    await self._pipeline(orphans)

    async def _calls(self, calls: list[tuple[list[str], list[str]]]) -> list[Any]:
        """`_pipeline`, but a lone call goes as a plain command: a pipeline costs more CPU."""
        if len(calls) > 1:
            return await self._pipeline(calls)
        try:
            return [await self._evalsha(*calls[0])]
        except NoScriptError as exc:
            return [exc]

    async def _pipeline(self, calls: list[tuple[list[str], list[str]]]) -> list[Any]:
        pipe = self._redis.pipeline(transaction=False)
        for names, args in calls:
            pipe.evalsha(self._sha, len(names), *names, *args)
        replies: list[Any] = await pipe.execute(raise_on_error=False)
        return replies

    async def _evalsha(self, names: list[str], args: list[str]) -> list[Any]:
        reply: list[Any] = await self._redis.evalsha(self._sha, len(names), *names, *args)
        return reply


@dataclass(eq=False)
class _Asked:
    """An acquire waiting for its batch's reply."""

    names: list[str]
    args: list[str]
    reply: asyncio.Future[list[Any]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


def _release_of(asked: _Asked, reply: list[Any]) -> tuple[list[str], list[str]]:
    """The settle call that refunds an admission nobody is left to hold."""
    window, q, margin, tokens = asked.args[1:5]
    buckets = [str(int(b)) for b in reply[2:]]
    return asked.names, ["settle", window, q, margin, "-1", str(-int(tokens)), *buckets]


def cancel_requested() -> bool:
    """Whether this task was asked to cancel and the request was swallowed on the way.

    redis-py may turn a cancellation that reaches it mid-command into its
    own TimeoutError, or return normally; the task's count of pending
    cancellations still says so.
    """
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _unavailable(exc: BaseException) -> BaseException:
    if cancel_requested():
        return asyncio.CancelledError()
    return SharedLimiterUnavailable(f"shared limiter: {type(exc).__name__}: {exc}")


def _replied(replies: list[Any]) -> list[Any]:
    """The replies, unless one is an error: then Redis did not decide as asked."""
    failed = next((r for r in replies if isinstance(r, Exception)), None)
    if failed is not None:
        raise SharedLimiterUnavailable(f"shared limiter: {failed}")
    return replies


def _noscript(reply: Any) -> bool:
    return isinstance(reply, NoScriptError) or (
        isinstance(reply, RedisError) and str(reply).startswith("NOSCRIPT")
    )


def _check_tokens(tokens: int) -> None:
    if not isinstance(tokens, int) or tokens < 0:
        raise ValueError(f"tokens must be an int of at least 0, not {tokens!r}")
