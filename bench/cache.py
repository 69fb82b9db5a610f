"""What the response cache costs and saves, in one run.

An exact hit through gRPC beside a miss against a zero-delay upstream (the
simulator's `instant` profile) and beside a bare grpc.aio server's round
trip (bench/compare/bare_grpc.py: the same stubs and loop, no work at all),
sequential calls alternating in blocks so machine noise hits all alike.
Then the semantic half (bench/semantic_bench.py): embedding time per
prompt, RSS with the model loaded, and lookup latency at 10,000 and
100,000 entries.

    python bench/cache.py [--calls 2000] [--entries 10000 100000] [--json PATH]

Target: an exact hit costs no more than the bare round trip plus 0.3 ms at p50.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from switchboard.api.pb import gateway_pb2 as pb
from switchboard.api.pb import gateway_pb2_grpc as pb_grpc
from tests.integration.procs import Proc, gateway_config, start_gateway, start_sim

ROOT = Path(__file__).resolve().parent.parent
BLOCK = 100
PROMPT = "Say hi"
TARGET_OVER_BARE_MS = 0.3


def percentiles(samples: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return {"p50_ms": cuts[49] * 1e3, "p99_ms": cuts[98] * 1e3, "n": len(samples)}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--entries", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    exact = measure_exact(args.calls, args.warmup)
    semantic = measure_semantic(args.entries)
    results = {"exact": exact, "semantic": semantic}
    print_exact(exact)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


def measure_exact(calls: int, warmup: int) -> dict[str, object]:
    sim_proc, sim_url = start_sim(profile="instant")
    procs: list[Proc] = [sim_proc]
    try:
        bare = Proc(
            [sys.executable, "-m", "bench.compare.bare_grpc", "--listen", "127.0.0.1:0"],
            ready=re.compile(r"serving on (\S+:\d+)"),
            stream="stdout",
        )
        procs.append(bare)
        with tempfile.TemporaryDirectory() as scratch:
            config = gateway_config(
                sim_url,
                {"chat": ["instant"]},
                provider_path="fast-path",
                switchboard={"cache": {"max_entries": 1_000_000, "max_bytes": 1 << 30}},
            )
            gateway, address = start_gateway(config, Path(scratch))
            procs.append(gateway)
            samples = run(bare.match.group(1), address, calls, warmup)
    finally:
        for proc in reversed(procs):
            proc.terminate()
    out: dict[str, object] = {name: percentiles(values) for name, values in samples.items()}
    hit, bare_p = out["exact_hit"], out["bare_grpc"]
    assert isinstance(hit, dict)
    assert isinstance(bare_p, dict)
    out["hit_over_bare_p50_ms"] = hit["p50_ms"] - bare_p["p50_ms"]
    out["target_over_bare_p50_ms"] = TARGET_OVER_BARE_MS
    return out


def run(bare: str, gateway: str, calls: int, warmup: int) -> dict[str, list[float]]:
    def ask(text: str) -> pb.CompleteRequest:
        return pb.CompleteRequest(
            model="chat", messages=[pb.Message(role=pb.ROLE_USER, content=text)]
        )

    repeated = ask(PROMPT)
    with grpc.insecure_channel(bare) as bc, grpc.insecure_channel(gateway) as gc:
        bare_stub, stub = pb_grpc.GatewayStub(bc), pb_grpc.GatewayStub(gc)
        assert not stub.Complete(repeated, timeout=30).cache_hit

        def hit() -> None:
            if not stub.Complete(repeated, timeout=30).cache_hit:
                raise AssertionError("expected a cache hit")

        def miss() -> None:
            if stub.Complete(ask(f"{PROMPT} {uuid.uuid4()}"), timeout=30).cache_hit:
                raise AssertionError("expected a miss")

        def bare_call() -> None:
            bare_stub.Complete(repeated, timeout=30)

        ways: dict[str, Callable[[], None]] = {
            "bare_grpc": bare_call,
            "exact_hit": hit,
            "miss": miss,
        }
        for _ in range(warmup):
            for call in ways.values():
                call()
        samples: dict[str, list[float]] = {name: [] for name in ways}
        done = 0
        while done < calls:
            block = min(BLOCK, calls - done)
            for name, call in ways.items():
                for _ in range(block):
                    start = time.perf_counter()
                    call()
                    samples[name].append(time.perf_counter() - start)
            done += block
    return samples


def measure_semantic(entries: list[int]) -> dict[str, object]:
    """bench/semantic_bench.py in its own process, so its RSS is the model's alone."""
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "semantic.json"
        command = [sys.executable, str(ROOT / "bench" / "semantic_bench.py"), "--json", str(out)]
        command += ["--entries", *map(str, entries)]
        subprocess.run(command, check=True, cwd=ROOT)
        result: dict[str, object] = json.loads(out.read_text())
        return result


def print_exact(exact: dict[str, object]) -> None:
    print("\nexact cache, sequential Complete calls over one connection")
    print("{:12s} {:>6s} {:>9s} {:>9s}".format("path", "n", "p50 ms", "p99 ms"))
    for name in ("bare_grpc", "exact_hit", "miss"):
        row = exact[name]
        assert isinstance(row, dict)
        print(f"{name:12s} {row['n']:6.0f} {row['p50_ms']:9.3f} {row['p99_ms']:9.3f}")
    over = exact["hit_over_bare_p50_ms"]
    assert isinstance(over, float)
    verdict = "met" if over <= TARGET_OVER_BARE_MS else "NOT met"
    print(f"exact hit over bare grpc at p50: {over:+.3f} ms (target <= +0.3 ms: {verdict})")


if __name__ == "__main__":
    raise SystemExit(main())
