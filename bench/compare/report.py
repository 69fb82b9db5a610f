"""From a run's results to the summary: each system's sustained rate, the acceptance figures.

Works on the results JSON alone (`python -m bench.compare --report FILE`
rebuilds the summary of a saved run), so nothing here needs a live system.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from typing import Any

Results = Mapping[str, Any]
StepJson = Mapping[str, Any]

AT_DELAY = 60.0
AT_RATE = 300.0
TABLE_SYSTEMS = (
    "direct",
    "direct_stream",
    "bare_grpc",
    "relay",
    "relay_stream",
    "sb_fast",
    "sb_fast_stream",
    "sb_litellm",
    "sb_litellm_stream",
    "sb_fast_w2",
    "litellm_proxy",
    "litellm_proxy_stream",
)

# Measured again in paired rounds (bench/compare/__main__.py), a few seconds apart.
PAIRED = ("direct", "relay", "sb_fast", "direct_stream", "relay_stream", "sb_fast_stream")


def _counted(step: StepJson) -> bool:
    """Ladder and fixed-rate steps; not warm-ups, re-measured steps or experiments."""
    return step["phase"] in ("ladder", "point")


def measured(results: Results, system: str, delay_ms: float) -> list[StepJson]:
    return [
        s
        for s in results["steps"]
        if s["system"] == system and s["delay_ms"] == delay_ms and _counted(s)
    ]


def delays(results: Results) -> list[float]:
    return sorted({float(s["delay_ms"]) for s in results["steps"] if _counted(s)})


def best(results: Results, system: str, delay_ms: float) -> StepJson | None:
    """The highest sustained step (the last run of that rate decides)."""
    last: dict[float, StepJson] = {}
    for step in measured(results, system, delay_ms):
        last[step["offered_rate"]] = step
    held = [s for s in last.values() if s["sustained"]]
    return max(held, key=lambda s: s["offered_rate"], default=None)


def sustained_rate(results: Results, system: str, delay_ms: float = 0.0) -> float | None:
    step = best(results, system, delay_ms)
    return step["offered_rate"] if step else None


def at_rate(results: Results, system: str, delay_ms: float, rate: float) -> StepJson | None:
    steps = [s for s in measured(results, system, delay_ms) if s["offered_rate"] == rate]
    return steps[-1] if steps else None


def paired_rounds(results: Results) -> list[dict[str, StepJson]]:
    """Each paired round's steps by system, in round order."""
    rounds: dict[int, dict[str, StepJson]] = {}
    for step in results["steps"]:
        phase = str(step["phase"])
        if phase.startswith("paired-") and step["delay_ms"] == AT_DELAY:
            rounds.setdefault(int(phase.split("-", 1)[1]), {})[step["system"]] = step
    return [rounds[number] for number in sorted(rounds)]


def _paired_diff(
    rounds: Sequence[Mapping[str, StepJson]], system: str, base: str, metric: str, pct: str
) -> float | None:
    """The median over rounds of `system` minus `base`, each pair from one round."""
    return median(
        [
            value
            for steps in rounds
            if (value := _diff(steps.get(system), steps.get(base), metric, pct)) is not None
        ]
    )


def median(values: Sequence[float]) -> float | None:
    """The median of `values`; None when there are none (nothing was measured)."""
    return statistics.median(values) if values else None


def acceptance(results: Results) -> list[dict[str, Any]]:
    """The targets, each with its measured value (None when the run did not measure it)."""
    rows: list[dict[str, Any]] = []

    def add(key: str, what: str, value: float | None, target: str, ok: bool | None) -> None:
        rows.append({"key": key, "what": what, "value": value, "target": target, "pass": ok})

    fast = sustained_rate(results, "sb_fast")
    for key, other, goal in (("a1", "bare_grpc", 0.5), ("a2", "litellm_proxy", 15.0)):
        base = sustained_rate(results, other)
        value = fast / base if fast and base else None
        add(key, f"sb_fast sustained / {other} sustained", value, f">= {goal:g}", _ge(value, goal))
    relay = sustained_rate(results, "relay")
    value = fast / relay if fast and relay else None
    add("a1-relay", "sb_fast sustained / relay sustained", value, "info", None)

    rounds = paired_rounds(results)
    if rounds:
        _paired_acceptance(rounds, add)
    _point_acceptance(results, add, judge=not rounds)

    cpu = results.get("cpu_per_call") or {}
    ratio = cpu.get("ratio")
    cpu_rounds = len(cpu.get("ratios") or ())
    what = "CPU per call, 256 vs 1 connections"
    if cpu_rounds > 1:
        what += f", median of {cpu_rounds} rounds"
    add("c", what, ratio, "< 1.5", _lt(ratio, 1.5))

    top = best(results, "sb_fast", 0.0)
    rss = top["sut_rss_mb"] if top else None
    add("d", "sb_fast RSS at its highest sustained rate (MB)", rss, "< 150", _lt(rss, 150.0))

    workers = results.get("systems", {}).get("sb_fast_w2", {})
    two = sustained_rate(results, "sb_fast_w2")
    value = two / fast if two and fast else None
    what = "sb_fast_w2 sustained / sb_fast sustained"
    if workers.get("available") is False:
        what += f" (not available: {workers.get('reason')})"
    add("e", what, value, ">= 1.6", _ge(value, 1.6))
    return rows


Add = Callable[[str, str, float | None, str, bool | None], None]


def _paired_acceptance(rounds: Sequence[Mapping[str, StepJson]], add: Add) -> None:
    """b from the paired rounds: medians of same-round differences."""
    where = f"at {AT_DELAY:g} ms, {AT_RATE:g}/s, median of {len(rounds)} paired rounds (ms)"
    for pct, goal in (("p50", 1.0), ("p99", 5.0)):
        value = _paired_diff(rounds, "sb_fast", "direct", "latency_ms", pct)
        what = f"sb_fast {pct} - direct {pct} {where}"
        add(f"b-sb_fast-{pct}", what, value, f"< {goal:g}", _lt(value, goal))
    value = _paired_diff(rounds, "sb_fast_stream", "direct_stream", "ttfc_ms", "p50")
    what = f"sb_fast_stream TTFC p50 - direct stream TTFB p50 {where}"
    add("b-sb_fast_stream-ttfc", what, value, "< 1", _lt(value, 1.0))
    for key, system, base, metric in (
        ("b-relay-p50", "relay", "direct", "latency_ms"),
        ("b-own-p50", "sb_fast", "relay", "latency_ms"),
        ("b-relay-ttfc", "relay_stream", "direct_stream", "ttfc_ms"),
        ("b-own-ttfc", "sb_fast_stream", "relay_stream", "ttfc_ms"),
    ):
        value = _paired_diff(rounds, system, base, metric, "p50")
        label = "TTFC p50" if metric == "ttfc_ms" else "p50"
        add(key, f"{system} {label} - {base} {label} {where}", value, "info", None)


def _point_acceptance(results: Results, add: Add, *, judge: bool) -> None:
    """b from the fixed-rate points' 300/s steps; only informative after paired rounds."""
    suffix = "" if judge else "-point"
    direct = at_rate(results, "direct", AT_DELAY, AT_RATE)
    for system in ("sb_fast", "sb_litellm"):
        step = at_rate(results, system, AT_DELAY, AT_RATE)
        for pct, goal in (("p50", 1.0), ("p99", 5.0)):
            value = _diff(step, direct, "latency_ms", pct)
            judged = system == "sb_fast" and judge
            what = f"{system} {pct} - direct {pct} at {AT_DELAY:g} ms, {AT_RATE:g}/s (ms)"
            target = f"< {goal:g}" if judged else "info"
            ok = _lt(value, goal) if judged else None
            add(f"b-{system}-{pct}{suffix}", what, value, target, ok)
    # The relay splits sb_fast's overhead: the stack's share (relay - direct), Switchboard's own.
    relay_step = at_rate(results, "relay", AT_DELAY, AT_RATE)
    fast_step = at_rate(results, "sb_fast", AT_DELAY, AT_RATE)
    for key, what, value in (
        ("b-relay-p50", "relay p50 - direct p50", _diff(relay_step, direct, "latency_ms", "p50")),
        ("b-own-p50", "sb_fast p50 - relay p50", _diff(fast_step, relay_step, "latency_ms", "p50")),
    ):
        add(key + suffix, f"{what} at {AT_DELAY:g} ms, {AT_RATE:g}/s (ms)", value, "info", None)
    direct_stream = at_rate(results, "direct_stream", AT_DELAY, AT_RATE)
    for system in ("sb_fast_stream", "sb_litellm_stream"):
        step = at_rate(results, system, AT_DELAY, AT_RATE)
        value = _diff(step, direct_stream, "ttfc_ms", "p50")
        judged = system == "sb_fast_stream" and judge
        what = f"{system} TTFC p50 - direct stream TTFB p50 at {AT_DELAY:g} ms (ms)"
        ok = _lt(value, 1.0) if judged else None
        add(f"b-{system}-ttfc{suffix}", what, value, "< 1" if judged else "info", ok)
    relay_stream = at_rate(results, "relay_stream", AT_DELAY, AT_RATE)
    fast_stream = at_rate(results, "sb_fast_stream", AT_DELAY, AT_RATE)
    for key, what, value in (
        (
            "b-relay-ttfc",
            "relay_stream TTFC p50 - direct stream TTFB p50",
            _diff(relay_stream, direct_stream, "ttfc_ms", "p50"),
        ),
        (
            "b-own-ttfc",
            "sb_fast_stream TTFC p50 - relay_stream TTFC p50",
            _diff(fast_stream, relay_stream, "ttfc_ms", "p50"),
        ),
    ):
        add(key + suffix, f"{what} at {AT_DELAY:g} ms (ms)", value, "info", None)


def _diff(step: StepJson | None, base: StepJson | None, metric: str, pct: str) -> float | None:
    if not step or not base or not step.get(metric) or not base.get(metric):
        return None
    return float(step[metric][pct] - base[metric][pct])


def _ge(value: float | None, goal: float) -> bool | None:
    return None if value is None else value >= goal


def _lt(value: float | None, goal: float) -> bool | None:
    return None if value is None else value < goal


def markdown(results: Results) -> str:
    m = results["machine"]
    s = results["settings"]
    lines = [
        "## Side by side (`make bench-compare`)",
        "",
        f"Run {results['started']} ({s['mode']}), commit {m['commit']}: {m['nproc']} cores "
        f"({m['cpu']}), Python {m['python']}, k6 {m['k6']}, litellm {m['litellm']}. "
        f"Open-loop k6 at fixed offered rates, {s['vus']} client connections, steps of "
        f"{s['duration_s']:g} s; sustained = >= 99.9% OK, >= 97% of the offered rate "
        "completed, p99 <= 250 ms plus the upstream delay. Each system ran alone against "
        "one upstream (aiohttp, fixed ~20-token reply).",
        "",
        "### Zero upstream delay: the highest sustained rate",
        "",
        "| system | sustained /s | p50 ms | p99 ms | TTFC p50 ms | CPU cores | RSS MB "
        "| upstream cores | client conns |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    systems = results.get("systems", {})
    for name in _present(results, 0.0):
        info = systems.get(name, {})
        if info.get("available") is False:
            lines.append(f"| {name} | not available: {info.get('reason')} |||||||| ")
            continue
        lines.append(_sustained_row(results, name))
    lines += [
        "",
        f"### {AT_DELAY:g} ms upstream delay at {AT_RATE:g}/s offered",
        "",
        "| system | done /s | p50 ms | p99 ms | TTFC p50 ms | p50 - direct | p99 - direct "
        "| CPU cores | held |",
        "|---|--:|--:|--:|--:|--:|--:|--:|:-:|",
    ]
    for name in _present(results, AT_DELAY):
        lines.append(_at_row(results, name))
    rounds = paired_rounds(results)
    if rounds:
        lines += [
            "",
            f"### {AT_DELAY:g} ms upstream delay at {AT_RATE:g}/s: paired rounds",
            "",
            "Each round runs these systems one after another, a few seconds apart; "
            "the acceptance figures b are the medians of the rounds' differences.",
            "",
            "| round | system | p50 ms | p99 ms | TTFC p50 ms | p50 - direct | p99 - direct "
            "| TTFC - direct | CPU cores |",
            "|--:|---|--:|--:|--:|--:|--:|--:|--:|",
        ]
        for number, steps in enumerate(rounds, 1):
            lines += [_paired_row(number, steps, name) for name in PAIRED if name in steps]
    cpu = results.get("cpu_per_call")
    if cpu:
        lines += [
            "",
            f"### CPU per call: Switchboard fast path, Complete, {cpu['rate']:g}/s",
            "",
            "| client connections | upstream delay | CPU ms per call | calls in flight |",
            "|--:|--:|--:|--:|",
            f"| 1 | 0 ms | {_num(cpu['cpu_ms_per_call_1'], 3)} | <= 1 |",
            f"| {cpu['client_conns_256']} | {cpu['many_upstream_delay_ms']:g} ms | "
            f"{_num(cpu['cpu_ms_per_call_256'], 3)} | {_num(cpu['in_flight_256'], 0)} |",
        ]
        ratios = cpu.get("ratios") or []
        if len(ratios) > 1:
            each = ", ".join(f"{r:.2f}" for r in ratios)
            lines += ["", f"Medians of {len(ratios)} rounds; each round's ratio: {each}."]
    lines += [
        "",
        "### Acceptance",
        "",
        "| | figure | measured | target | |",
        "|---|---|--:|--:|:-:|",
    ]
    for row in results.get("acceptance", []):
        mark = {True: "pass", False: "FAIL", None: "-"}[row["pass"]]
        lines.append(
            f"| {row['key']} | {row['what']} | {_num(row['value'], 2)} | {row['target']} | {mark} |"
        )
    notes = results.get("notes", [])
    if notes:
        lines += ["", *[f"- {note}" for note in notes]]
    return "\n".join(lines) + "\n"


def _present(results: Results, delay_ms: float) -> list[str]:
    names = {s["system"] for s in results["steps"] if s["delay_ms"] == delay_ms and _counted(s)}
    if delay_ms == 0.0:
        names |= {n for n, i in results.get("systems", {}).items() if i.get("available") is False}
    return [n for n in TABLE_SYSTEMS if n in names]


def _sustained_row(results: Results, name: str) -> str:
    step = best(results, name, 0.0)
    if step is None:
        tried = [s["offered_rate"] for s in measured(results, name, 0.0)]
        low = f"< {min(tried):g}" if tried else "not run"
        return f"| {name} | {low} |||||||| "
    cap = results["settings"]["cap"]
    rate = f"{'>= ' if step['offered_rate'] >= cap else ''}{step['offered_rate']:g}"
    return (
        f"| {name} | {rate} | {_num(step['latency_ms'].get('p50'), 2)} "
        f"| {_num(step['latency_ms'].get('p99'), 2)} | {_ttfc(step)} "
        f"| {_num(step['sut_cores'], 2)} | {_num(step['sut_rss_mb'], 0)} "
        f"| {_num(step['upstream_cores'], 2)} | {step['client_conns']} |"
    )


def _at_row(results: Results, name: str) -> str:
    step = at_rate(results, name, AT_DELAY, AT_RATE)
    if step is None:
        return f"| {name} | not run at {AT_RATE:g}/s |||||||| "
    base = at_rate(results, "direct_stream" if step.get("ttfc_ms") else "direct", AT_DELAY, AT_RATE)
    return (
        f"| {name} | {step['completed_rate']:.0f} | {_num(step['latency_ms'].get('p50'), 2)} "
        f"| {_num(step['latency_ms'].get('p99'), 2)} | {_ttfc(step)} "
        f"| {_num(_diff(step, base, 'latency_ms', 'p50'), 2)} "
        f"| {_num(_diff(step, base, 'latency_ms', 'p99'), 2)} "
        f"| {_num(step['sut_cores'], 2)} | {'yes' if step['sustained'] else 'no'} |"
    )


def _paired_row(number: int, steps: Mapping[str, StepJson], name: str) -> str:
    step = steps[name]
    base = steps.get("direct_stream" if step.get("ttfc_ms") else "direct")
    lat = step["latency_ms"]
    return (
        f"| {number} | {name} | {_num(lat.get('p50'), 2)} | {_num(lat.get('p99'), 2)} "
        f"| {_ttfc(step)} | {_num(_diff(step, base, 'latency_ms', 'p50'), 2)} "
        f"| {_num(_diff(step, base, 'latency_ms', 'p99'), 2)} "
        f"| {_num(_diff(step, base, 'ttfc_ms', 'p50'), 2) if step.get('ttfc_ms') else ''} "
        f"| {_num(step['sut_cores'], 2)} |"
    )


def _ttfc(step: StepJson) -> str:
    return _num(step["ttfc_ms"]["p50"], 2) if step.get("ttfc_ms") else ""


def _num(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def steps_of(results: Results, system: str, delay_ms: float) -> Sequence[StepJson]:
    """The measured steps of one system at one delay, by offered rate (for plots)."""
    return sorted(measured(results, system, delay_ms), key=lambda s: s["offered_rate"])
