"""`make bench-compare`: Switchboard side by side with its ceiling and with LiteLLM's proxy.

    python -m bench.compare [--quick] [--systems sb_fast,bare_grpc,cpu] [--delays 0,60]
    python -m bench.compare --report bench/results/compare-STAMP.json

Systems (bench/compare/systems.py): direct, direct_stream, bare_grpc, relay,
relay_stream, sb_fast, sb_fast_stream, sb_litellm, sb_litellm_stream, sb_fast_w2, litellm_proxy,
litellm_proxy_stream; `cpu` is the CPU-per-call experiment (cpu_per_call.py).
At zero upstream delay each system climbs a ladder of offered rates to its
highest sustained one; at a non-zero delay it runs a few fixed rates,
300/s among them. The latency overhead is read at 300/s and 60 ms in paired
rounds at the end: each round runs the direct call, the relay and the fast
path (Complete and StreamComplete) one after another, and the acceptance
figures are the medians of the rounds' differences.

Writes bench/results/compare-STAMP.json (every step), compare.md (the
summary, also printed) and compare.png; k6's logs go to bench/results/logs/.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.compare import cpu_per_call, litellm_proxy, report
from bench.compare.loadgen import K6
from bench.compare.suite import Record, Runner, Settings
from bench.compare.systems import (
    BY_NAME,
    REPO,
    SYSTEMS,
    NotAvailable,
    System,
    Upstream,
    launch,
    start_upstream,
)

RESULTS = REPO / "bench" / "results"
MODES: dict[str, dict[str, Any]] = {
    # About 50 minutes here; the 60 ms rates bracket the 300/s the overheads are read at.
    "full": {
        "duration_s": 10.0,
        "warmup_s": 4.0,
        "fine_steps": 3,
        "confirm": True,
        "max_steps": 14,
        "points": (150.0, 300.0, 600.0),
        "proxy_points": (10.0, 20.0, 40.0),
        "cpu_duration_s": 15.0,
        "quiet_budget_s": 120.0,
        # Five, not three: the same code's overhead has moved by 0.28 ms between
        # two rounds, so one noisy round must not be the median.
        "rounds": 5,
    },
    # A few minutes: every system answers and is measured, rates are rough.
    "quick": {
        "duration_s": 4.0,
        "warmup_s": 2.0,
        "fine_steps": 0,
        "confirm": False,
        "max_steps": 2,
        "points": (300.0,),
        "proxy_points": (20.0,),
        "cpu_duration_s": 5.0,
        "quiet_budget_s": 30.0,
        "rounds": 1,
    },
}


def _take_rerun(saved: dict[str, Any], rerun: dict[str, Any], source: str) -> None:
    """Replace `saved`'s steps of the systems `rerun` measured, and say so in its settings."""
    systems = {step["system"] for step in rerun["steps"]}
    saved["steps"] = [s for s in saved["steps"] if s["system"] not in systems] + rerun["steps"]
    saved["systems"].update({k: v for k, v in rerun["systems"].items() if k in systems})
    saved.setdefault("reruns", []).append(
        {"file": Path(source).name, "started": rerun.get("started"), "systems": sorted(systems)}
    )


def main() -> int:
    args = _parse()
    if args.report:
        saved = json.loads(Path(args.report).read_text())
        for other in args.rerun or ():
            _take_rerun(saved, json.loads(Path(other).read_text()), other)
        saved["acceptance"] = report.acceptance(saved)
        saved["notes"] = _notes(saved)
        _save(saved, Path(args.report))
        _publish(saved, Path(args.report).parent)
        return 0
    # The systems run as configured, with no telemetry exporter picked up from the environment.
    for name in [n for n in os.environ if n.startswith("OTEL_")]:
        del os.environ[name]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks
    mode = MODES["quick" if args.quick else "full"]
    names = args.systems.split(",") if args.systems else [*BY_NAME, "cpu"]
    unknown = [n for n in names if n not in BY_NAME and n != "cpu"]
    if unknown:
        print(f"unknown systems {unknown}; known: {[*BY_NAME, 'cpu']}", file=sys.stderr)
        return 2
    delays = [float(d) for d in args.delays.split(",")]
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(args.out)
    logs = out / "logs" / stamp
    logs.mkdir(parents=True, exist_ok=True)
    settings = Settings(
        duration_s=args.duration or mode["duration_s"],
        warmup_s=mode["warmup_s"],
        vus=args.vus,
        cap=args.cap,
        fine_steps=mode["fine_steps"],
        confirm=mode["confirm"],
        max_steps=mode["max_steps"],
        logs=logs,
        quiet_budget_s=mode["quiet_budget_s"],
    )
    results: dict[str, Any] = {
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": _machine(),
        "settings": {
            "mode": "quick" if args.quick else "full",
            "duration_s": settings.duration_s,
            "warmup_s": settings.warmup_s,
            "vus": settings.vus,
            "cap": settings.cap,
            "delays_ms": delays,
            "systems": names,
            "cpu_rate": args.cpu_rate,
            "paired_rounds": mode["rounds"],
        },
        "systems": {},
        "steps": [],
        "notes": [],
    }
    path = out / f"compare-{stamp}.json"

    def record(entry: Record) -> None:
        results["steps"].append(entry.to_json())
        _save(results, path)

    runner = Runner(settings, record)
    print(f"bench-compare: results in {path}, k6 logs in {logs}", flush=True)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-compare-") as scratch:
            _run(runner, results, names, delays, mode, Path(scratch), logs, args.cpu_rate)
    finally:
        results["finished"] = datetime.datetime.now().isoformat(timespec="seconds")
        results["acceptance"] = report.acceptance(results)
        results["notes"] = _notes(results)
        _save(results, path)
        _publish(results, out)
        print(f"bench-compare: wrote {path}", flush=True)
    return 0


def _run(
    runner: Runner,
    results: dict[str, Any],
    names: list[str],
    delays: list[float],
    mode: dict[str, Any],
    scratch: Path,
    logs: Path,
    cpu_rate: float,
) -> None:
    chosen = [s for s in SYSTEMS if s.name in names]
    litellm = None
    if any(s.server == "litellm_proxy" for s in chosen):
        litellm = litellm_proxy.ensure_venv(logs / "litellm-venv.log")
    for delay in delays:
        upstream = start_upstream(delay)
        try:
            for system in chosen:
                if delay == 0 or system.uses_upstream:
                    _system(runner, results, system, upstream, mode, scratch, litellm)
        finally:
            upstream.proc.terminate()
    if report.AT_DELAY in delays:
        _paired(runner, [s for s in chosen if s.name in report.PAIRED], mode["rounds"], scratch)
    if "cpu" in names:
        print(f"cpu per call: sb_fast at {cpu_rate:g}/s, 1 then 256 connections", flush=True)
        rounds = mode["rounds"]
        outcome = cpu_per_call.run(
            runner, cpu_rate, mode["cpu_duration_s"], scratch / "cpu", rounds
        )
        results["cpu_per_call"] = outcome.to_json()


def _system(
    runner: Runner,
    results: dict[str, Any],
    system: System,
    upstream: Upstream,
    mode: dict[str, Any],
    scratch: Path,
    litellm: Path | None,
) -> None:
    info = results["systems"].setdefault(system.name, {"label": system.label})
    delay = upstream.delay_ms
    print(f"{system.name} ({system.label}), upstream delay {delay:g} ms", flush=True)
    proxy = system.server == "litellm_proxy"
    points = mode["proxy_points"] if proxy else mode["points"]
    try:
        with launch(system, upstream, scratch / f"{system.name}-{delay:g}", litellm) as running:
            info["available"] = True
            runner.warm_up(system, running, upstream, points[0] if delay else system.start_rate)
            if delay == 0:
                runner.ladder(system, running, upstream)
            else:
                required = None if proxy else report.AT_RATE
                runner.points(system, running, upstream, points, required)
    except NotAvailable as reason:
        info.update(available=False, reason=str(reason))
        print(f"  {system.name}: not available ({reason})", flush=True)


def _paired(runner: Runner, systems: list[System], rounds: int, scratch: Path) -> None:
    """The overhead figures again, in rounds that visit each system in turn.

    The machine's speed drifts over a run (the same upstream work has cost
    from 0.05 to 0.18 cores at 300/s in different steps), and minutes pass
    between the direct call's step and Switchboard's in the ladder order. A
    round measures them a few seconds apart, so each round's difference
    compares like with like; the report takes the median over rounds.
    """
    if not systems or rounds <= 0:
        return
    upstream = start_upstream(report.AT_DELAY)
    try:
        for number in range(1, rounds + 1):
            print(f"paired round {number}/{rounds}", flush=True)
            for system in systems:
                folder = scratch / f"{system.name}-paired-{number}"
                try:
                    with launch(system, upstream, folder, None) as running:
                        runner.warm_up(system, running, upstream, report.AT_RATE)
                        runner.step(system, running, upstream, report.AT_RATE, f"paired-{number}")
                except NotAvailable as reason:
                    print(f"  {system.name}: not available ({reason})", flush=True)
    finally:
        upstream.proc.terminate()


def _machine() -> dict[str, Any]:
    def run(*args: str) -> str:
        done = subprocess.run(args, capture_output=True, text=True, check=False, cwd=REPO)
        return done.stdout.strip()

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    dirty = run("git", "status", "--porcelain", "--", "server", "ratelimit-rs")
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "k6": run(str(K6), "version").split(" (")[0].removeprefix("k6 "),
        "litellm": importlib.metadata.version("litellm"),
        "commit": run("git", "rev-parse", "--short", "HEAD") + ("+dirty" if dirty else ""),
    }


def _notes(results: dict[str, Any]) -> list[str]:
    notes = [
        f"{', '.join(r['systems'])}: measured again in a later run (started {r['started']}), "
        "whose steps replace this run's."
        for r in results.get("reruns", ())
    ]
    busy = [s for s in results["steps"] if (s.get("background_cores") or 0) > 0.3]
    if busy:
        worst = max(s["background_cores"] for s in busy)
        notes.append(
            f"{len(busy)} of {len(results['steps'])} steps ran while other processes on the "
            f"machine used > 0.3 cores (up to {worst:.2f}); their figures are pessimistic."
        )
    for name, info in results["systems"].items():
        if info.get("available") is False:
            notes.append(f"{name}: not available ({info.get('reason')}).")
    vus = results["settings"]["vus"]
    for name in results["systems"]:
        top = report.best(results, name, 0.0)
        if top and (top["client_conns"] or 0) < 0.9 * vus:
            notes.append(
                f"{name}: {top['client_conns']} of {vus} client connections open halfway "
                f"through its {top['offered_rate']:g}/s step: it closes idle keep-alive "
                f"connections, and at that rate each waits {vus / top['offered_rate']:.0f} s "
                "between calls."
            )
    loads = [s for s in results["steps"] if s.get("k6_cores") is not None]
    if loads:
        busiest = max(loads, key=lambda s: s["k6_cores"])
        notes.append(
            f"k6 shares the machine: it used up to {busiest['k6_cores']:.2f} cores "
            f"({busiest['system']} at {busiest['offered_rate']:g}/s)."
        )
    return notes


def _save(results: dict[str, Any], path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1))
    tmp.replace(path)


def _publish(results: dict[str, Any], out: Path) -> None:
    text = report.markdown(results)
    (out / "compare.md").write_text(text)
    print(text, flush=True)
    try:
        from bench.compare.plot import plot
    except ImportError as error:  # matplotlib is a bench-only dependency
        print(f"no plot: {error}", file=sys.stderr)
        return
    if results["steps"]:
        plot(results, out / "compare.png")


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short steps, two per ladder")
    parser.add_argument("--systems", help="comma-separated names (default: all, and cpu)")
    parser.add_argument("--delays", default="0,60", help="upstream delays in ms (default 0,60)")
    parser.add_argument("--duration", type=float, help="seconds per step")
    parser.add_argument("--vus", type=int, default=256, help="client connections (default 256)")
    parser.add_argument("--cap", type=float, default=4000.0, help="highest rate tried")
    parser.add_argument("--cpu-rate", type=float, default=100.0, help="rate of the cpu experiment")
    parser.add_argument("--out", default=str(RESULTS), help="results directory")
    parser.add_argument("--report", metavar="JSON", help="only rebuild the summary of a saved run")
    parser.add_argument(
        "--rerun",
        metavar="JSON",
        action="append",
        help="with --report: replace the steps of the systems this later run measured",
    )
    return parser.parse_args()


if __name__ == "__main__":
    raise SystemExit(main())
