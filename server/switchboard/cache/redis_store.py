"""The exact cache in Redis, shared by every replica of the gateway.

Key layout (`P` is the prefix, `hex(s)` the hex of the UTF-8 bytes of `s`):

    P e:<key>           hash, PX = the entry's TTL
                          v          the value
                          n<hex(ns)> "1"   the entry's namespace (exactly one)
                          t<hex(tag)> "1"  one field per tag
    P t:<hex(tag)>      set of the keys of entries carrying the tag
    P n:<hex(ns)>       set of the keys of entries of the namespace

Tags and namespaces are hex-encoded so that no character in them (":",
glob characters, bytes of any script) can make two of them share a Redis
key; keys need no encoding, being the whole rest of their Redis key.

Index sets are never trimmed by expiry: a member may outlive its entry, or
even name a later entry under the same key with other tags. So the
invalidation script checks each member against the entry's own fields
before deleting, counts only what DEL removed, and drops stale members as
it meets them. A set's TTL is raised to its longest entry's on every put,
so sets of unused tags disappear by themselves.

Scripts compute entry and set keys from set members, which a Redis Cluster
forbids: this store is for a single Redis (or a primary with replicas).

Redis being down must not fail requests: a read is a miss, a write is
skipped, with a warning at most every 30 s. An invalidation, though, must
not pretend to succeed, so its errors propagate.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import cast

import redis.asyncio
from redis.exceptions import RedisError

from switchboard.cache.store import CacheStore, StoreSize
from switchboard.errors import CacheUnavailable

log = logging.getLogger("switchboard.cache")

_WARN_EVERY_S = 30.0
# Far beyond any useful TTL, and PEXPIRE accepts it; infinity would not.
_MAX_TTL_MS = 10**15
# Connection failures surface as RedisError subclasses, but a socket may
# raise OSError (TimeoutError included) straight through.
_UNAVAILABLE = (RedisError, OSError)

# Removes entry `member` and its memberships, read from its own fields.
_DROP = """
local function drop(prefix, member)
  local entry = prefix .. 'e:' .. member
  for _, field in ipairs(redis.call('HKEYS', entry)) do
    local kind = string.sub(field, 1, 1)
    if kind == 't' then
      redis.call('SREM', prefix .. 't:' .. string.sub(field, 2), member)
    elseif kind == 'n' then
      redis.call('SREM', prefix .. 'n:' .. string.sub(field, 2), member)
    end
  end
  return redis.call('DEL', entry)
end
"""

# KEYS: entry, namespace set, tag sets.
# ARGV: prefix, key, ttl_ms, value, hex(namespace), hex(tag)... (in KEYS' order)
_PUT = (
    _DROP
    + """
local prefix, member, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
drop(prefix, member)
if ttl <= 0 then
  return 0
end
local entry = KEYS[1]
redis.call('HSET', entry, 'v', ARGV[4], 'n' .. ARGV[5], '1')
for i = 6, #ARGV do
  redis.call('HSET', entry, 't' .. ARGV[i], '1')
end
redis.call('PEXPIRE', entry, ttl)
for i = 2, #KEYS do
  redis.call('SADD', KEYS[i], member)
  -- PTTL is -1 for a set without TTL: give it one too.
  if redis.call('PTTL', KEYS[i]) < ttl then
    redis.call('PEXPIRE', KEYS[i], ttl)
  end
end
return 1
"""
)

# KEYS: the tag sets, or the namespace set when there are no tags.
# ARGV: prefix, "1" when limited to a namespace else "0", hex(namespace), hex(tag)...
_INVALIDATE = (
    _DROP
    + """
local prefix = ARGV[1]
local nsfield = false
if ARGV[2] == '1' then
  nsfield = 'n' .. ARGV[3]
end
local removed = 0
local function sweep(set, field)
  for _, member in ipairs(redis.call('SMEMBERS', set)) do
    local entry = prefix .. 'e:' .. member
    if redis.call('HEXISTS', entry, field) == 1 then
      if not nsfield or redis.call('HEXISTS', entry, nsfield) == 1 then
        removed = removed + drop(prefix, member)
      end
    else
      -- The entry expired, or a later one under its key left this set.
      redis.call('SREM', set, member)
    end
  end
end
if #ARGV > 3 then
  for i = 4, #ARGV do
    sweep(KEYS[i - 3], 't' .. ARGV[i])
  end
else
  sweep(KEYS[1], nsfield)
end
return removed
"""
)


class RedisStore(CacheStore):
    def __init__(
        self,
        client: redis.asyncio.Redis,
        *,
        prefix: str = "switchboard:cache:",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`client` must return bytes (no `decode_responses`): values are opaque bytes.

        Build it with short socket timeouts and few retries: a cache lookup
        that waits on a dead Redis delays every request behind it. `clock`
        paces the warnings about Redis being unavailable.
        """
        if client.connection_pool.connection_kwargs.get("decode_responses"):
            raise ValueError("the Redis client must not decode responses")
        self._client = client
        self._prefix = prefix
        self._clock = clock
        self._put_script = client.register_script(_PUT)
        self._invalidate_script = client.register_script(_INVALIDATE)
        self._warned_at: float | None = None
        self._unwarned = 0

    @property
    def backend(self) -> str:
        return "redis"

    async def get(self, key: str) -> bytes | None:
        try:
            value = await self._client.hget(self._prefix + "e:" + key, "v")
        except _UNAVAILABLE as exc:
            self._unavailable("get", exc)
            return None
        return cast(bytes | None, value)

    async def put(
        self, key: str, value: bytes, *, ttl_s: float, namespace: str, tags: Sequence[str]
    ) -> None:
        """A time to live that is not positive only drops the entry under `key`."""
        ttl_ms = math.ceil(min(ttl_s * 1000, _MAX_TTL_MS)) if ttl_s > 0 else 0
        namespace_hex = _hex(namespace)
        tags_hex = [_hex(tag) for tag in dict.fromkeys(tags)]
        keys = [
            self._prefix + "e:" + key,
            self._prefix + "n:" + namespace_hex,
            *(self._prefix + "t:" + tag for tag in tags_hex),
        ]
        args: list[bytes | str | int] = [self._prefix, key, ttl_ms, value, namespace_hex, *tags_hex]
        try:
            await self._put_script(keys=keys, args=args)
        except _UNAVAILABLE as exc:
            self._unavailable("put", exc)

    async def invalidate(self, *, namespace: str | None, tags: Sequence[str]) -> int:
        """CacheUnavailable when Redis fails: the caller must learn nothing was invalidated."""
        if not tags and namespace is None:
            raise ValueError("invalidate needs tags, a namespace or both")
        namespace_hex = _hex(namespace or "")
        tags_hex = [_hex(tag) for tag in dict.fromkeys(tags)]
        if tags_hex:
            keys = [self._prefix + "t:" + tag for tag in tags_hex]
        else:
            keys = [self._prefix + "n:" + namespace_hex]
        limited = "1" if namespace is not None else "0"
        args = [self._prefix, limited, namespace_hex, *tags_hex]
        try:
            removed = await self._invalidate_script(keys=keys, args=args)
        except _UNAVAILABLE as exc:
            raise CacheUnavailable(
                f"the cache backend failed: {type(exc).__name__}; nothing may have been removed"
            ) from exc
        return int(removed)

    async def size(self) -> StoreSize:
        """Entries by SCAN over the prefix; bytes unknown.

        Linear in the database's keys, which is acceptable for ListModels and
        metrics only. SCAN skips expired keys but may repeat a key while
        Redis rehashes, so the count can be slightly high. Redis errors
        propagate: a count of zero would be a lie.
        """
        entries = 0
        async for _ in self._client.scan_iter(match=_glob_escape(self._prefix) + "e:*", count=1000):
            entries += 1
        return StoreSize(entries=entries, bytes=None)

    async def aclose(self) -> None:
        await self._client.aclose()

    def _unavailable(self, operation: str, exc: BaseException) -> None:
        # One warning per outage window: a dead Redis would otherwise log on every request.
        now = self._clock()
        if self._warned_at is not None and now - self._warned_at < _WARN_EVERY_S:
            self._unwarned += 1
            return
        log.warning(
            "redis cache unavailable, serving without it (%s: %r; %d failures not logged)",
            operation,
            exc,
            self._unwarned,
        )
        self._warned_at = now
        self._unwarned = 0


def _hex(name: str) -> str:
    return name.encode().hex()


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
