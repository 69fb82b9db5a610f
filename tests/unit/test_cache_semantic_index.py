"""The partitioned vector index behind the semantic cache, on real usearch graphs."""

from __future__ import annotations

import sys

import pytest

from tests.semantic_support import require_semantic

require_semantic("numpy", "usearch.index")

import numpy as np  # noqa: E402

from switchboard.cache.semantic import SemanticIndex  # noqa: E402

DIM = 32


def unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def exact_cos(a: np.ndarray, b: np.ndarray) -> float:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    return float(a64 @ b64 / np.linalg.norm(a64) / np.linalg.norm(b64))


def assert_match(found: tuple[str, float] | None, key: str, similarity: float) -> None:
    assert found is not None
    assert found[0] == key
    assert found[1] == pytest.approx(similarity, abs=1e-6)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def test_the_nearest_key_comes_with_its_exact_similarity(rng: np.random.Generator) -> None:
    index = SemanticIndex(dimension=DIM, max_entries=100)
    vectors = unit(rng, 3)
    for i, vector in enumerate(vectors):
        index.add("p", f"k{i}", vector)
    # Unnormalised on purpose: cosine ignores length.
    query = 3.0 * (vectors[1] + 0.2 * unit(rng, 1)[0])
    found = index.search("p", query, min_similarity=0.5)
    assert found is not None
    key, similarity = found
    assert key == "k1"
    assert similarity == pytest.approx(exact_cos(query, vectors[1]), abs=1e-6)


def test_the_threshold_is_respected(rng: np.random.Generator) -> None:
    index = SemanticIndex(dimension=DIM, max_entries=100)
    stored = unit(rng, 1)[0]
    index.add("p", "k", stored)
    query = stored + 0.5 * unit(rng, 1)[0]
    similarity = exact_cos(query, stored)
    assert 0.5 < similarity < 0.99
    assert index.search("p", query, min_similarity=similarity + 1e-4) is None
    assert_match(index.search("p", query, min_similarity=similarity - 1e-4), "k", similarity)


def test_partitions_never_mix(rng: np.random.Generator) -> None:
    index = SemanticIndex(dimension=DIM, max_entries=100)
    a, b = unit(rng, 2)
    index.add("A", "in-a", a)
    assert index.search("B", a, min_similarity=-1.0) is None
    index.add("B", "in-b", b)
    found = index.search("B", a, min_similarity=-1.0)
    assert found is not None
    assert found[0] == "in-b"
    assert found[1] == pytest.approx(exact_cos(a, b), abs=1e-6)
    assert_match(index.search("A", a, min_similarity=0.999), "in-a", 1.0)
    assert index.partitions == 2
    assert len(index) == 2


def test_adding_a_key_again_replaces_its_vector(rng: np.random.Generator) -> None:
    index = SemanticIndex(dimension=DIM, max_entries=100)
    old, new = unit(rng, 2)
    index.add("p", "k", old)
    index.add("p", "k", new)
    assert len(index) == 1
    found = index.search("p", old, min_similarity=-1.0)
    assert_match(found, "k", exact_cos(old, new))
    # A key lives in one partition: adding it elsewhere moves it.
    index.add("q", "k", new)
    assert len(index) == 1
    assert index.partitions == 1
    assert index.search("p", new, min_similarity=-1.0) is None
    assert index.search("q", new, min_similarity=0.999) is not None


def test_remove_forgets_the_key_and_drops_an_empty_partition(rng: np.random.Generator) -> None:
    index = SemanticIndex(dimension=DIM, max_entries=100)
    a, b = unit(rng, 2)
    index.add("p", "a", a)
    index.add("p", "b", b)
    index.add("q", "c", a)
    index.remove("a")
    assert_match(index.search("p", a, min_similarity=-1.0), "b", exact_cos(a, b))
    assert (len(index), index.partitions) == (2, 2)
    index.remove("c")
    assert (len(index), index.partitions) == (1, 1)
    assert index.search("q", a, min_similarity=-1.0) is None
    index.remove("c")  # already gone: nothing happens
    index.remove("never-added")
    index.remove("b")
    assert (len(index), index.partitions) == (0, 0)


def test_the_oldest_entries_are_evicted_first_across_partitions(
    rng: np.random.Generator,
) -> None:
    index = SemanticIndex(dimension=DIM, max_entries=3)
    vectors = unit(rng, 5)
    index.add("p", "k0", vectors[0])
    index.add("q", "k1", vectors[1])
    index.add("p", "k2", vectors[2])
    index.add("q", "k3", vectors[3])
    assert len(index) == 3
    assert index.search("p", vectors[0], min_similarity=0.999) is None
    assert index.search("p", vectors[2], min_similarity=0.999) is not None
    # Rewriting k1 makes it the newest: k2 is now the oldest.
    index.add("q", "k1", vectors[1])
    index.add("p", "k4", vectors[4])
    assert len(index) == 3
    assert index.search("p", vectors[2], min_similarity=0.999) is None
    assert index.search("q", vectors[1], min_similarity=0.999) is not None
    assert index.search("q", vectors[3], min_similarity=0.999) is not None


def test_eviction_drops_a_partition_it_empties(rng: np.random.Generator) -> None:
    index = SemanticIndex(dimension=DIM, max_entries=2)
    vectors = unit(rng, 3)
    index.add("old", "k0", vectors[0])
    index.add("new", "k1", vectors[1])
    index.add("new", "k2", vectors[2])
    assert (len(index), index.partitions) == (2, 1)


def test_add_many_keeps_the_last_vector_of_a_repeated_key(rng: np.random.Generator) -> None:
    index = SemanticIndex(dimension=DIM, max_entries=3)
    vectors = unit(rng, 5)
    index.add_many("p", ["a", "b", "a", "c", "d"], vectors)
    # As if added one by one: a's second vector replaced its first, then b,
    # the oldest left, was evicted.
    assert len(index) == 3
    assert_match(index.search("p", vectors[2], min_similarity=0.999), "a", 1.0)
    assert index.search("p", vectors[0], min_similarity=0.999) is None
    assert index.search("p", vectors[1], min_similarity=0.999) is None


def test_bad_vectors_are_refused(rng: np.random.Generator) -> None:
    index = SemanticIndex(dimension=DIM, max_entries=10)
    with pytest.raises(ValueError, match="dimension"):
        index.add("p", "k", unit(rng, 1, dim=DIM + 1)[0])
    with pytest.raises(ValueError, match="one vector"):
        index.add("p", "k", unit(rng, 2))
    with pytest.raises(ValueError, match="non-zero"):
        index.add("p", "k", np.zeros(DIM, dtype=np.float32))
    assert (len(index), index.partitions) == (0, 0)
    index.add("p", "k", unit(rng, 1)[0])
    assert index.search("p", np.zeros(DIM, dtype=np.float32), min_similarity=-1.0) is None


def test_a_missing_usearch_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "usearch.index", None)
    with pytest.raises(RuntimeError, match=r"switchboard\[semantic\]"):
        SemanticIndex(dimension=DIM, max_entries=10)


def test_a_large_random_index_finds_near_duplicates(rng: np.random.Generator) -> None:
    # Uniformly random 384-d vectors are HNSW's hardest case: nothing is
    # much nearer than anything else, and a few nodes end up (nearly)
    # unreachable in the graph. A perturbed stored vector must still come
    # back with its own key nearly always, and never with a wrong one.
    dim, entries, queries = 384, 20_000, 500
    index = SemanticIndex(dimension=dim, max_entries=entries)
    stored = unit(rng, entries, dim)
    keys = [f"k{i}" for i in range(entries)]
    for start in range(0, entries, 5_000):
        index.add_many("p", keys[start : start + 5_000], stored[start : start + 5_000], threads=0)
    assert len(index) == entries

    targets = rng.choice(entries, size=queries, replace=False)
    noisy = stored[targets] + 0.1 * unit(rng, queries, dim)
    found = 0
    for target, query in zip(targets, noisy, strict=True):
        result = index.search("p", query, min_similarity=0.9)
        if result is None:
            continue
        key, similarity = result
        assert key == keys[target]
        assert similarity == pytest.approx(exact_cos(query, stored[target]), abs=1e-5)
        found += 1
    # Measured: 495 to 499 of 500 over six seeds, never a wrong key.
    assert found >= 0.98 * queries
