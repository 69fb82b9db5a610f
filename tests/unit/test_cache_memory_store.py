"""MemoryStore: LRU bounds, expiry on a fake clock, indexes kept through every removal."""

from __future__ import annotations

from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from switchboard.cache.memory import MemoryStore
from switchboard.cache.store import CacheStore, StoreSize
from tests.unit.fakes import FakeClock

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Completes a store call without an event loop, failing if it ever suspends."""
    try:
        coro.send(None)
    except StopIteration as stop:
        result: T = stop.value
        return result
    coro.close()
    raise AssertionError("MemoryStore must not await")


def make(max_entries: int = 100, max_bytes: int = 10_000) -> tuple[MemoryStore, FakeClock]:
    clock = FakeClock()
    return MemoryStore(max_entries=max_entries, max_bytes=max_bytes, clock=clock), clock


def put(
    store: MemoryStore,
    key: str,
    value: bytes | None = None,
    *,
    ttl_s: float = 60.0,
    namespace: str = "",
    tags: Sequence[str] = (),
) -> None:
    value = key.encode() if value is None else value
    run(store.put(key, value, ttl_s=ttl_s, namespace=namespace, tags=tags))


def get(store: MemoryStore, key: str) -> bytes | None:
    return run(store.get(key))


def invalidate(
    store: MemoryStore, *, namespace: str | None = None, tags: Sequence[str] = ()
) -> int:
    return run(store.invalidate(namespace=namespace, tags=tags))


def size(store: MemoryStore) -> StoreSize:
    return run(store.size())


def assert_no_index_leak(store: MemoryStore) -> None:
    # Private, on purpose: a key left in an index is a leak no public call shows.
    live = set(store._entries)
    for index in (store._by_tag, store._by_namespace):
        assert all(keys and keys <= live for keys in index.values()), index
    assert sum(len(e.value) for e in store._entries.values()) == store._bytes


def test_is_a_cache_store() -> None:
    store, _ = make()
    store_as_protocol: CacheStore = store
    assert store_as_protocol.backend == "memory"


def test_put_get_and_replace() -> None:
    store, _ = make()
    assert get(store, "k") is None
    put(store, "k", b"one")
    assert get(store, "k") == b"one"
    put(store, "k", b"three")
    assert get(store, "k") == b"three"
    assert size(store) == StoreSize(entries=1, bytes=5)


def test_lru_by_entries_evicts_least_recently_used() -> None:
    store, _ = make(max_entries=2)
    put(store, "a")
    put(store, "b")
    assert get(store, "a") == b"a"  # b is now the least recently used
    put(store, "c")
    assert get(store, "b") is None
    assert get(store, "a") == b"a"
    assert get(store, "c") == b"c"
    assert size(store).entries == 2


def test_lru_by_bytes_evicts_until_the_bytes_fit() -> None:
    store, _ = make(max_bytes=10)
    put(store, "a", b"aaaa")
    put(store, "b", b"bbbb")
    get(store, "a")
    put(store, "c", b"cccc")  # 12 bytes: b goes, a stays
    assert get(store, "b") is None
    assert (get(store, "a"), get(store, "c")) == (b"aaaa", b"cccc")
    assert size(store) == StoreSize(entries=2, bytes=8)
    put(store, "d", b"d" * 9)  # only d fits
    assert [get(store, k) for k in "acd"] == [None, None, b"d" * 9]
    assert size(store) == StoreSize(entries=1, bytes=9)
    assert_no_index_leak(store)


def test_value_larger_than_max_bytes_is_not_stored_and_drops_the_old_entry() -> None:
    store, _ = make(max_bytes=10)
    put(store, "other", b"o", tags=["t"])
    put(store, "k", b"small", tags=["t"])
    put(store, "k", b"x" * 11, tags=["t"])
    assert get(store, "k") is None
    assert get(store, "other") == b"o"  # nothing evicted for a value that was never kept
    assert size(store) == StoreSize(entries=1, bytes=1)
    put(store, "exact", b"y" * 9)  # 9 + 1 == max_bytes: both stay
    assert (get(store, "exact"), get(store, "other")) == (b"y" * 9, b"o")
    assert_no_index_leak(store)


def test_entry_expires_at_its_ttl() -> None:
    store, clock = make()
    put(store, "k", ttl_s=10)
    clock.advance(9.999)
    assert get(store, "k") == b"k"
    clock.advance(0.001)
    assert get(store, "k") is None
    assert size(store) == StoreSize(entries=0, bytes=0)
    assert_no_index_leak(store)


def test_replaced_entry_keeps_its_own_ttl() -> None:
    store, clock = make()
    put(store, "k", b"short", ttl_s=1)
    put(store, "k", b"long", ttl_s=100)
    clock.advance(2)  # the first entry's expiry is due, and must not take the second
    put(store, "other")
    assert size(store) == StoreSize(entries=2, bytes=9)
    assert get(store, "k") == b"long"


def test_size_excludes_expired_entries_never_read() -> None:
    store, clock = make()
    put(store, "short", b"12345", ttl_s=1)
    put(store, "long", b"12", ttl_s=100)
    clock.advance(1)
    assert size(store) == StoreSize(entries=1, bytes=2)
    assert_no_index_leak(store)


@pytest.mark.parametrize("ttl_s", [0.0, -1.0, float("nan")])
def test_put_without_positive_ttl_only_drops_the_old_entry(ttl_s: float) -> None:
    store, _ = make()
    put(store, "k", b"old", tags=["t"])
    put(store, "k", b"new", ttl_s=ttl_s, tags=["t"])
    assert get(store, "k") is None
    assert size(store) == StoreSize(entries=0, bytes=0)
    assert_no_index_leak(store)


def test_expired_entries_make_room_before_live_ones_are_evicted() -> None:
    store, clock = make(max_entries=3)
    put(store, "live", ttl_s=100)  # the least recently used
    put(store, "old1", ttl_s=1)
    put(store, "old2", ttl_s=1)
    clock.advance(2)
    put(store, "new1")
    put(store, "new2")
    assert [get(store, k) for k in ("live", "new1", "new2")] == [b"live", b"new1", b"new2"]


def test_replacement_moves_the_entry_between_indexes() -> None:
    store, _ = make()
    put(store, "k", b"v1", namespace="X", tags=["a"])
    put(store, "k", b"v2", namespace="Y", tags=["b"])
    assert invalidate(store, tags=["a"]) == 0
    assert invalidate(store, namespace="X") == 0
    assert get(store, "k") == b"v2"
    assert invalidate(store, namespace="Y", tags=["b"]) == 1
    assert get(store, "k") is None
    assert_no_index_leak(store)


def test_invalidate_by_tag() -> None:
    store, _ = make()
    put(store, "a", tags=["doc1"])
    put(store, "b", tags=["doc1", "doc2"])
    put(store, "c", tags=["doc2"])
    put(store, "d")
    assert invalidate(store, tags=["doc1"]) == 2
    assert [get(store, k) for k in "abcd"] == [None, None, b"c", b"d"]
    assert invalidate(store, tags=["doc1"]) == 0


def test_invalidate_by_several_tags_counts_each_entry_once() -> None:
    store, _ = make()
    put(store, "a", tags=["doc1"])
    put(store, "b", tags=["doc1", "doc2"])
    put(store, "c", tags=["doc2", "doc3"])
    put(store, "d", tags=["doc4"])
    assert invalidate(store, tags=["doc1", "doc2", "missing"]) == 3
    assert [get(store, k) for k in "abcd"] == [None, None, None, b"d"]
    assert_no_index_leak(store)


def test_invalidate_a_namespace() -> None:
    store, _ = make()
    put(store, "a", namespace="tenant1", tags=["doc"])
    put(store, "b", namespace="tenant1")
    put(store, "c", namespace="tenant2", tags=["doc"])
    put(store, "d", namespace="")
    assert invalidate(store, namespace="tenant1") == 2
    assert [get(store, k) for k in "abcd"] == [None, None, b"c", b"d"]
    assert invalidate(store, namespace="") == 1
    assert get(store, "d") is None
    assert_no_index_leak(store)


def test_invalidate_tags_within_a_namespace() -> None:
    store, _ = make()
    put(store, "a", namespace="tenant1", tags=["doc"])
    put(store, "b", namespace="tenant2", tags=["doc"])
    put(store, "c", namespace="tenant1", tags=["other"])
    assert invalidate(store, namespace="tenant1", tags=["doc"]) == 1
    assert [get(store, k) for k in "abc"] == [None, b"b", b"c"]
    assert invalidate(store, namespace="absent", tags=["doc"]) == 0
    assert get(store, "b") == b"b"
    assert_no_index_leak(store)


def test_invalidate_does_not_count_evicted_or_expired_entries() -> None:
    store, clock = make(max_entries=2)
    put(store, "evicted", tags=["t"])
    put(store, "expired", tags=["t"], ttl_s=1)
    put(store, "live", tags=["t"])  # evicts "evicted"
    clock.advance(1)  # "expired" expires, unread, unswept
    assert invalidate(store, tags=["t"]) == 1
    assert get(store, "live") is None
    assert size(store) == StoreSize(entries=0, bytes=0)
    assert_no_index_leak(store)


def test_invalidate_needs_tags_or_a_namespace() -> None:
    store, _ = make()
    put(store, "k")
    with pytest.raises(ValueError, match="tags, a namespace"):
        invalidate(store)
    assert get(store, "k") == b"k"


def test_bounds_are_validated_and_zero_stores_nothing() -> None:
    with pytest.raises(ValueError, match="negative"):
        make(max_entries=-1)
    with pytest.raises(ValueError, match="negative"):
        make(max_bytes=-1)
    store, _ = make(max_entries=0)
    put(store, "k")
    assert get(store, "k") is None
    store, _ = make(max_bytes=0)
    put(store, "empty", b"")
    assert get(store, "empty") == b""


def test_expiry_heap_stays_bounded_under_replacement() -> None:
    store, _ = make()
    for i in range(10_000):
        put(store, "k", str(i).encode(), ttl_s=3600)
    assert get(store, "k") == b"9999"
    assert len(store._expiries) <= 2 * len(store._entries) + 64


def test_aclose_empties_the_store() -> None:
    store, _ = make()
    put(store, "k", tags=["t"])
    run(store.aclose())
    assert size(store) == StoreSize(entries=0, bytes=0)
    assert get(store, "k") is None


# --- property -------------------------------------------------------------

MAX_ENTRIES = 3
MAX_BYTES = 20
KEYS = ("a", "b", "c", "d", "e")
NAMESPACES = ("", "n1")
TAGS = ("x", "y", "z")


@dataclass(frozen=True)
class Put:
    key: str
    size: int
    ttl_s: float
    namespace: str
    tags: tuple[str, ...]


@dataclass(frozen=True)
class Get:
    key: str


@dataclass(frozen=True)
class Invalidate:
    namespace: str | None
    tags: tuple[str, ...]


@dataclass(frozen=True)
class Advance:
    seconds: float


tags_st = st.lists(st.sampled_from(TAGS), max_size=3).map(tuple)
operations = st.one_of(
    st.builds(
        Put,
        st.sampled_from(KEYS),
        st.integers(4, MAX_BYTES + 4),  # sometimes larger than max_bytes
        st.sampled_from([0.0, 0.5, 1.0, 3.0]),
        st.sampled_from(NAMESPACES),
        tags_st,
    ),
    st.builds(Get, st.sampled_from(KEYS)),
    st.builds(Invalidate, st.sampled_from((None, *NAMESPACES)), tags_st).filter(
        lambda op: op.namespace is not None or op.tags
    ),
    st.builds(Advance, st.sampled_from([0.25, 0.5, 1.0])),
)


@dataclass
class Latest:
    """What the model knows of a key: its last put, unless invalidated since."""

    value: bytes
    expires_at: float
    namespace: str
    tags: tuple[str, ...]


@settings(max_examples=300, deadline=None)
@given(st.lists(operations, max_size=60))
def test_bounds_hold_and_nothing_stale_is_ever_returned(ops: list[Any]) -> None:
    """LRU makes presence hard to predict, so the model only says what may be present.

    Whatever get returns must be the key's latest value, unexpired and not
    invalidated since; a kept put is readable at once; invalidate's count is
    exactly the matching entries still present; the bounds always hold.
    """
    store, clock = make(max_entries=MAX_ENTRIES, max_bytes=MAX_BYTES)
    model: dict[str, Latest] = {}
    serial = 0

    def check_get(key: str) -> bytes | None:
        value = get(store, key)
        if value is not None:
            latest = model.get(key)
            assert latest is not None, f"{key} returned after invalidation or a dropped put"
            assert value == latest.value, f"{key} returned a replaced value"
            assert clock.now < latest.expires_at, f"{key} returned after expiry"
        return value

    for op in ops:
        if isinstance(op, Put):
            serial += 1
            value = f"{serial:04d}".encode().ljust(op.size, b".")
            put(store, op.key, value, ttl_s=op.ttl_s, namespace=op.namespace, tags=op.tags)
            if op.ttl_s > 0 and op.size <= MAX_BYTES:
                model[op.key] = Latest(value, clock.now + op.ttl_s, op.namespace, op.tags)
                assert get(store, op.key) == value
            else:
                model.pop(op.key, None)
                assert get(store, op.key) is None
        elif isinstance(op, Get):
            check_get(op.key)
        elif isinstance(op, Invalidate):
            matching = [
                key
                for key, latest in model.items()
                if (op.namespace is None or latest.namespace == op.namespace)
                and (not op.tags or set(op.tags) & set(latest.tags))
            ]
            present = [key for key in matching if check_get(key) is not None]
            assert invalidate(store, namespace=op.namespace, tags=op.tags) == len(present)
            for key in matching:
                del model[key]
                assert get(store, key) is None
        else:
            clock.advance(op.seconds)
        current = size(store)
        assert current.entries <= MAX_ENTRIES
        assert current.bytes is not None
        assert current.bytes <= MAX_BYTES

    values = [v for v in (check_get(key) for key in KEYS) if v is not None]
    assert size(store) == StoreSize(entries=len(values), bytes=sum(map(len, values)))
    assert_no_index_leak(store)
