"""RedisStore against a real redis-server: layout, TTLs, invalidation, outages."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence

import pytest
import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from switchboard.cache.redis_store import RedisStore
from switchboard.cache.store import CacheStore, StoreSize
from switchboard.errors import CacheUnavailable
from tests.redis_server import RedisServer
from tests.unit.fakes import FakeClock

pytestmark = pytest.mark.integration

PREFIX = "switchboard:cache:"


def client_for(url: str) -> redis.asyncio.Redis:
    # Fail fast: the outage test must not wait out retries.
    return redis.asyncio.Redis.from_url(
        url, socket_connect_timeout=1.0, socket_timeout=1.0, retry=Retry(NoBackoff(), 0)
    )


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[RedisStore]:
    store = RedisStore(client_for(redis_url))
    yield store
    await store.aclose()


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    """A plain client, to look at (and tamper with) the keys the store writes."""
    client = client_for(redis_url)
    yield client
    await client.aclose()


async def put(
    store: CacheStore,
    key: str,
    value: bytes | None = None,
    *,
    ttl_s: float = 60.0,
    namespace: str = "",
    tags: Sequence[str] = (),
) -> None:
    value = key.encode() if value is None else value
    await store.put(key, value, ttl_s=ttl_s, namespace=namespace, tags=tags)


async def values(store: CacheStore, keys: Sequence[str]) -> list[bytes | None]:
    return [await store.get(key) for key in keys]


def tag_set(tag: str) -> str:
    return PREFIX + "t:" + tag.encode().hex()


def namespace_set(namespace: str) -> str:
    return PREFIX + "n:" + namespace.encode().hex()


async def test_put_get_replace_and_size(store: RedisStore) -> None:
    assert store.backend == "redis"
    assert await store.get("k") is None
    await put(store, "k", b"\x00binary\xff")
    assert await store.get("k") == b"\x00binary\xff"
    await put(store, "k", b"new")
    assert await store.get("k") == b"new"
    await put(store, "k2")
    assert await store.size() == StoreSize(entries=2, bytes=None)


async def test_key_layout(store: RedisStore, raw: redis.asyncio.Redis) -> None:
    await put(store, "k", b"v", namespace="ns", tags=["doc"])
    assert set(await raw.keys("*")) == {
        f"{PREFIX}e:k".encode(),
        tag_set("doc").encode(),
        namespace_set("ns").encode(),
    }
    assert await raw.hgetall(f"{PREFIX}e:k") == {
        b"v": b"v",
        b"n" + b"ns".hex().encode(): b"1",
        b"t" + b"doc".hex().encode(): b"1",
    }
    assert await raw.smembers(tag_set("doc")) == {b"k"}
    assert await raw.smembers(namespace_set("ns")) == {b"k"}


async def test_entry_and_sets_carry_the_ttl(store: RedisStore, raw: redis.asyncio.Redis) -> None:
    await put(store, "k", ttl_s=5, namespace="ns", tags=["doc"])
    assert 0 < await raw.pttl(f"{PREFIX}e:k") <= 5000
    assert 4000 < await raw.pttl(tag_set("doc")) <= 5000
    assert 4000 < await raw.pttl(namespace_set("ns")) <= 5000
    # A longer entry raises the sets' TTL; a shorter one never lowers it.
    await put(store, "long", ttl_s=50, namespace="ns", tags=["doc"])
    await put(store, "short", ttl_s=1, namespace="ns", tags=["doc"])
    assert 40_000 < await raw.pttl(tag_set("doc")) <= 50_000
    assert 40_000 < await raw.pttl(namespace_set("ns")) <= 50_000
    assert 0 < await raw.pttl(f"{PREFIX}e:short") <= 1000


async def test_a_set_without_ttl_gets_one(store: RedisStore, raw: redis.asyncio.Redis) -> None:
    await raw.sadd(tag_set("doc"), "stray")
    assert await raw.pttl(tag_set("doc")) == -1
    await put(store, "k", ttl_s=5, tags=["doc"])
    assert 0 < await raw.pttl(tag_set("doc")) <= 5000


async def test_entry_expires(store: RedisStore) -> None:
    await put(store, "k", ttl_s=0.2)
    await put(store, "stays", ttl_s=60)
    assert await store.get("k") == b"k"
    deadline = time.monotonic() + 5.0
    while await store.get("k") is not None:
        assert time.monotonic() < deadline, "entry outlived its TTL"
        await asyncio.sleep(0.02)  # poll interval, bounded by the deadline
    assert await store.get("stays") == b"stays"
    assert await store.size() == StoreSize(entries=1, bytes=None)


@pytest.mark.parametrize("ttl_s", [0.0, -1.0])
async def test_put_without_positive_ttl_drops_the_entry(
    store: RedisStore, raw: redis.asyncio.Redis, ttl_s: float
) -> None:
    await put(store, "k", tags=["doc"])
    await put(store, "k", b"new", ttl_s=ttl_s, tags=["doc"])
    assert await store.get("k") is None
    assert await raw.keys("*") == []


async def test_replacement_moves_the_entry_between_sets(
    store: RedisStore, raw: redis.asyncio.Redis
) -> None:
    await put(store, "k", b"v1", namespace="X", tags=["a"])
    await put(store, "k", b"v2", namespace="Y", tags=["b"])
    assert not await raw.exists(tag_set("a"), namespace_set("X"))
    assert await store.invalidate(namespace=None, tags=["a"]) == 0
    assert await store.invalidate(namespace="X", tags=[]) == 0
    assert await store.get("k") == b"v2"
    assert await store.invalidate(namespace="Y", tags=["b"]) == 1
    assert await store.get("k") is None
    assert await raw.keys("*") == []


async def test_invalidate_by_tags(store: RedisStore, raw: redis.asyncio.Redis) -> None:
    await put(store, "a", tags=["doc1"])
    await put(store, "b", tags=["doc1", "doc2"])
    await put(store, "c", tags=["doc2", "doc3"])
    await put(store, "d", tags=["doc4"])
    assert await store.invalidate(namespace=None, tags=["doc1"]) == 2
    assert await values(store, "abcd") == [None, None, b"c", b"d"]
    await put(store, "a", tags=["doc1"])
    assert await store.invalidate(namespace=None, tags=["doc1", "doc2", "missing"]) == 2
    assert await values(store, "abcd") == [None, None, None, b"d"]
    # A removed entry leaves no member behind in its other sets.
    assert await raw.exists(tag_set("doc1"), tag_set("doc2"), tag_set("doc3")) == 0


async def test_invalidate_a_namespace(store: RedisStore) -> None:
    await put(store, "a", namespace="tenant1", tags=["doc"])
    await put(store, "b", namespace="tenant1")
    await put(store, "c", namespace="tenant2", tags=["doc"])
    await put(store, "d", namespace="")
    assert await store.invalidate(namespace="tenant1", tags=[]) == 2
    assert await values(store, "abcd") == [None, None, b"c", b"d"]
    assert await store.invalidate(namespace="", tags=[]) == 1
    assert await values(store, "cd") == [b"c", None]


async def test_invalidate_tags_within_a_namespace(store: RedisStore) -> None:
    await put(store, "a", namespace="tenant1", tags=["doc"])
    await put(store, "b", namespace="tenant2", tags=["doc"])
    await put(store, "c", namespace="tenant1", tags=["other"])
    assert await store.invalidate(namespace="tenant1", tags=["doc"]) == 1
    assert await values(store, "abc") == [None, b"b", b"c"]
    assert await store.invalidate(namespace="absent", tags=["doc", "other"]) == 0
    assert await values(store, "bc") == [b"b", b"c"]


async def test_invalidate_needs_tags_or_a_namespace(store: RedisStore) -> None:
    with pytest.raises(ValueError, match="tags, a namespace"):
        await store.invalidate(namespace=None, tags=[])


async def test_stale_members_are_not_counted(store: RedisStore, raw: redis.asyncio.Redis) -> None:
    await put(store, "gone", namespace="ns", tags=["doc"])
    await put(store, "live", namespace="ns", tags=["doc"])
    # As expiry or maxmemory eviction would: the entry goes, its memberships stay.
    await raw.delete(f"{PREFIX}e:gone")
    assert await store.invalidate(namespace=None, tags=["doc"]) == 1
    assert await raw.smembers(tag_set("doc")) == set()
    await put(store, "gone2", namespace="ns")
    await raw.delete(f"{PREFIX}e:gone2")
    assert await store.invalidate(namespace="ns", tags=[]) == 0
    assert await raw.keys("*") == []


async def test_stale_member_of_a_reused_key_does_not_reach_the_new_entry(
    store: RedisStore, raw: redis.asyncio.Redis
) -> None:
    await put(store, "k", b"old", namespace="A", tags=["a"])
    await raw.delete(f"{PREFIX}e:k")  # expired: its sets still name "k"
    await put(store, "k", b"new", namespace="B", tags=["b"])
    assert await store.invalidate(namespace="A", tags=[]) == 0
    assert await store.invalidate(namespace=None, tags=["a"]) == 0
    assert await store.invalidate(namespace="B", tags=["a"]) == 0
    assert await store.get("k") == b"new"
    assert await store.invalidate(namespace="B", tags=["b"]) == 1


async def test_odd_characters_do_not_collide(store: RedisStore, raw: redis.asyncio.Redis) -> None:
    odd = ["a:b", "a", "b", "a:", ":b", "*", "?", "[x]", " ", "", "ü", "t:a", "n:a", "e:a", "😀"]
    for i, name in enumerate(odd):
        await put(store, f"key {name} *{i}", namespace=name, tags=[name])
        await put(store, name, b"bare", namespace=f"ns-of-{i}", tags=[f"tag-of-{i}"])
    keys = [f"key {name} *{i}" for i, name in enumerate(odd)]
    assert await store.size() == StoreSize(entries=2 * len(odd), bytes=None)
    for i, name in enumerate(odd):
        assert await store.invalidate(namespace=None, tags=[name]) == 1, name
        assert await store.get(keys[i]) is None
        assert await store.get(name) == b"bare"
        assert await values(store, keys[i + 1 :]) == [k.encode() for k in keys[i + 1 :]]
    await put(store, "x", namespace="a:b")
    await put(store, "y", namespace="a")
    assert await store.invalidate(namespace="a", tags=[]) == 1
    assert await values(store, "xy") == [b"x", None]
    assert await store.size() == StoreSize(entries=len(odd) + 1, bytes=None)
    assert await raw.exists(*(tag_set(name) for name in odd)) == 0


async def test_size_counts_only_this_prefix(
    store: RedisStore, redis_url: str, raw: redis.asyncio.Redis
) -> None:
    other = RedisStore(client_for(redis_url), prefix="other*[")
    try:
        await put(other, "a")
        await put(other, "b")
        await put(store, "c")
        await raw.set(PREFIX + "x", b"not an entry")
        assert await store.size() == StoreSize(entries=1, bytes=None)
        assert await other.size() == StoreSize(entries=2, bytes=None)
        assert await other.invalidate(namespace="", tags=[]) == 2
        assert await store.get("c") == b"c"
    finally:
        await other.aclose()


async def test_replicas_share_entries(redis_url: str) -> None:
    first = RedisStore(client_for(redis_url))
    second = RedisStore(client_for(redis_url))
    try:
        await put(first, "k", b"from first", namespace="ns", tags=["doc"])
        assert await second.get("k") == b"from first"
        await put(second, "k2", namespace="ns", tags=["doc"])
        assert await second.invalidate(namespace="ns", tags=["doc"]) == 2
        assert await first.get("k") is None
    finally:
        await first.aclose()
        await second.aclose()


async def test_decoding_client_is_refused(redis_url: str) -> None:
    client = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)
    try:
        with pytest.raises(ValueError, match="decode"):
            RedisStore(client)
    finally:
        await client.aclose()


async def test_redis_down_is_a_miss_and_a_skipped_write(
    redis_server_factory: Callable[[], RedisServer], caplog: pytest.LogCaptureFixture
) -> None:
    server = redis_server_factory()
    clock = FakeClock()
    store = RedisStore(client_for(server.url), clock=clock)
    try:
        await put(store, "k")
        assert await store.get("k") == b"k"
        server.stop()
        with caplog.at_level(logging.WARNING, logger="switchboard.cache"):
            assert await store.get("k") is None
            await put(store, "k2")
            assert await store.get("k2") is None
            warnings = [r for r in caplog.records if r.name == "switchboard.cache"]
            assert len(warnings) == 1, warnings
            assert "get" in warnings[0].getMessage()
            clock.advance(30)
            await put(store, "k3")
            warnings = [r for r in caplog.records if r.name == "switchboard.cache"]
            assert len(warnings) == 2, warnings
            assert "2 failures not logged" in warnings[1].getMessage()
        # An invalidation must not pretend it happened.
        with pytest.raises(CacheUnavailable):
            await store.invalidate(namespace="", tags=[])
        with pytest.raises(RedisError):
            await store.size()
    finally:
        await store.aclose()
