"""`python -m bench.auto`: what the `auto` alias saves, and what its classifier costs.

Part one (offline): the difficulty classifier (switchboard.routing.difficulty)
over the labelled set (tests/data/difficulty/prompts.jsonl) as a whole and
per split (tune, which the weights were fitted on, and held-out): accuracy,
confusion matrix, the share of hard prompts called simple (these would go to
the cheap group) and of simple ones called hard; and the classifier's CPU
time per prompt (time.perf_counter_ns around every call, several passes
after a warm-up), plus one 1 MB prompt.

Part two (through a gateway; `--no-gateway` skips it): a Switchboard server
on a free loopback port serving the repo's default config (its in-process
simulator moved to a free port too), and for every prompt three `Complete`
calls: model `auto`, the strong group and the cheap group, `max_tokens`
fixed, the cache bypassed, refusals of the config's rpm/tpm limits waited
out as their RetryInfo says (`--lift-limits` drops the limits instead, for a
quicker run). It sums `cost_usd` per mode and reads where `auto` sent each
prompt from `model_group` and `routing.auto`.

    python -m bench.auto [--no-gateway] [--passes 20] [--concurrency 16]
                         [--max-tokens 256] [--strong smart] [--cheap cheap]
                         [--lift-limits] [--out PATH]

Results go to bench/results/auto-<YYYYmmdd-HHMMSS>.json (or `--out`), and a
markdown summary to stdout. Targets: auto at least 40% cheaper than always
strong; under 10% of hard prompts answered by the cheap group; classifier
p50 under 0.2 ms per prompt.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import yaml

from switchboard.domain import Message, Role
from switchboard.routing.difficulty import DifficultyClassifier
from tests.unit.test_difficulty import LABELS, SPLITS, Prompt, load_prompts

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = ROOT / "configs" / "default.yaml"
RESULTS = ROOT / "bench" / "results"

TARGET_SAVING = 0.40
TARGET_HARD_TO_CHEAP = 0.10
TARGET_P50_MS = 0.2
# Nominal cheap-to-strong price ratios for the offline estimate (the config's are ~10-20x).
NOMINAL_RATIOS = (10, 20)
MEGABYTE_PROMPT = "Is this long? " * 75_000 + "\n\nProve that there are infinitely many primes."
CALL_TIMEOUT_S = 120.0
# Refusals worth waiting out (a limit with room later, a deployment cooling down), how
# often, and the longest wait taken when the gateway's RetryInfo asks for one.
RETRIES = 6
MAX_WAIT_S = 30.0
DETAILS_KEY = "grpc-status-details-bin"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.auto", description=__doc__)
    parser.add_argument("--no-gateway", action="store_true", help="part one only")
    parser.add_argument("--passes", type=int, default=20, help="timing passes over the set")
    parser.add_argument("--warmup", type=int, default=2, help="untimed passes first")
    parser.add_argument("--concurrency", type=int, default=16, help="calls in flight")
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--strong", default="smart", help="the strong group, or an alias of it")
    parser.add_argument("--cheap", default="cheap", help="the cheap group, or an alias of it")
    parser.add_argument("--alias", default="auto", help="the difficulty-routed alias")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--lift-limits", action="store_true", help="drop the rpm/tpm limits")
    parser.add_argument("--out", type=Path, help="where to write the JSON results")
    args = parser.parse_args(argv)
    if args.passes < 1 or args.concurrency < 1:
        parser.error("--passes and --concurrency must be at least 1")

    prompts = load_prompts()
    results: dict[str, Any] = {
        "dataset": {
            "prompts": len(prompts),
            "by_split_and_label": {
                split: dict(Counter(p.label for p in prompts if p.split == split))
                for split in SPLITS
            },
        },
        "classifier": offline(prompts, args.passes, args.warmup),
    }
    if not args.no_gateway:
        results["gateway"] = through_gateway(prompts, args)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = args.out or RESULTS / f"auto-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(report(results))
    print(f"\nresults: {out}")
    return 0


# --- part one: the classifier alone ------------------------------------------------------


def offline(prompts: list[Prompt], passes: int, warmup: int) -> dict[str, Any]:
    classifier = DifficultyClassifier()
    conversations = [p.messages() for p in prompts]
    verdicts = [classifier.classify(c).hard for c in conversations]
    groups = {"all": prompts, **{s: [p for p in prompts if p.split == s] for s in SPLITS}}
    hard_by_id = {p.id: hard for p, hard in zip(prompts, verdicts, strict=True)}
    figures = {name: accuracy(group, hard_by_id) for name, group in groups.items()}

    for _ in range(warmup):
        for conversation in conversations:
            classifier.classify(conversation)
    samples: list[int] = []
    for _ in range(passes):
        for conversation in conversations:
            started = time.perf_counter_ns()
            classifier.classify(conversation)
            samples.append(time.perf_counter_ns() - started)
    big = (Message(Role.USER, MEGABYTE_PROMPT),)
    big_samples = []
    for _ in range(max(passes, 20)):
        started = time.perf_counter_ns()
        classifier.classify(big)
        big_samples.append(time.perf_counter_ns() - started)
    return {
        "threshold": classifier.settings.threshold,
        "splits": figures,
        "cpu_per_prompt": percentiles_ms(samples),
        "cpu_megabyte_prompt": {
            "chars": len(MEGABYTE_PROMPT),
            **percentiles_ms(big_samples),
            "verdict": classifier.classify(big).explain(),
        },
        "target_p50_ms": TARGET_P50_MS,
    }


def accuracy(prompts: list[Prompt], hard_by_id: dict[str, bool]) -> dict[str, Any]:
    # confusion[label][predicted]
    confusion = {label: dict.fromkeys(LABELS, 0) for label in LABELS}
    for prompt in prompts:
        confusion[prompt.label]["hard" if hard_by_id[prompt.id] else "simple"] += 1
    hard, simple = sum(confusion["hard"].values()), sum(confusion["simple"].values())
    correct = confusion["hard"]["hard"] + confusion["simple"]["simple"]
    strong_share = (confusion["hard"]["hard"] + confusion["simple"]["hard"]) / len(prompts)
    return {
        "n": len(prompts),
        "accuracy": correct / len(prompts),
        "confusion": confusion,
        "hard_as_simple": confusion["hard"]["simple"] / hard,
        "simple_as_hard": confusion["simple"]["hard"] / simple,
        "hard_as_simple_ids": sorted(
            p.id for p in prompts if p.label == "hard" and not hard_by_id[p.id]
        ),
        # Prompts routed to the strong group; with equal per-prompt costs and the cheap
        # group R times cheaper, auto saves 1 - (share + (1 - share) / R).
        "strong_share": strong_share,
        "estimated_saving": {
            f"ratio_{ratio}": 1 - (strong_share + (1 - strong_share) / ratio)
            for ratio in NOMINAL_RATIOS
        },
    }


def percentiles_ms(samples_ns: list[int]) -> dict[str, float]:
    cuts = statistics.quantiles(samples_ns, n=100, method="inclusive")
    return {"p50_ms": cuts[49] / 1e6, "p99_ms": cuts[98] / 1e6, "n": len(samples_ns)}


# --- part two: through a gateway ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Answer:
    """One Complete call's outcome, as much of it as the report needs."""

    prompt_id: str
    mode: str
    cost_usd: float = 0.0
    model_group: str = ""
    alias: str = ""
    tier: str = ""
    score: float = 0.0
    reason: str = ""
    error: str = ""


def gateway_config(path: Path, lift_limits: bool) -> dict[str, Any]:
    """The config at `path`, its simulator on a free port and (if asked) its limits lifted."""
    from tests.integration.procs import free_port

    config: dict[str, Any] = yaml.safe_load(path.read_text())
    simulator = (config.get("switchboard") or {}).get("simulator")
    if simulator:
        old = str(simulator.get("listen", "127.0.0.1:50061"))
        new = f"127.0.0.1:{free_port()}"
        simulator["listen"] = new
        for deployment in config.get("model_list", []):
            params = deployment.get("litellm_params", {})
            base = params.get("api_base")
            if isinstance(base, str):
                params["api_base"] = base.replace(old, new)
    if lift_limits:
        for deployment in config.get("model_list", []):
            for limit in ("rpm", "tpm"):
                deployment.get("litellm_params", {}).pop(limit, None)
    return config


def through_gateway(prompts: list[Prompt], args: argparse.Namespace) -> dict[str, Any]:
    # The stubs and the gateway's `auto` alias land with the gateway side; import late so
    # that part one runs without them.
    from switchboard.api.pb import gateway_pb2 as pb

    if not hasattr(pb, "AutoDecision"):
        raise SystemExit("bench.auto: the stubs lack routing.auto; run `make proto`")
    config = gateway_config(args.config, args.lift_limits)
    groups = {"strong": group_of(config, args.strong), "cheap": group_of(config, args.cheap)}
    auto = ((config.get("switchboard") or {}).get("aliases") or {}).get(args.alias)
    routes = auto.get("auto") if isinstance(auto, dict) else None
    missing = [name for name, group in groups.items() if group is None]
    if not isinstance(routes, dict):
        missing.append(f"auto alias {args.alias!r}")
    if missing:
        raise SystemExit(f"bench.auto: {args.config} lacks {', '.join(missing)}; try --no-gateway")
    assert isinstance(routes, dict)
    if (routes.get("simple"), routes.get("hard")) != (groups["cheap"], groups["strong"]):
        print(
            f"bench.auto: note: {args.alias!r} routes {routes}, not simple -> "
            f"{groups['cheap']} and hard -> {groups['strong']}",
            file=sys.stderr,
        )

    from tests.integration.procs import start_gateway

    with tempfile.TemporaryDirectory(prefix="bench-auto-") as scratch:
        proc, address = start_gateway(config, Path(scratch))
        try:
            started = time.perf_counter()
            answers = asyncio.run(ask_all(address, prompts, args))
            elapsed = time.perf_counter() - started
        finally:
            proc.terminate()
    resolved = {"auto": args.alias, "strong": groups["strong"], "cheap": groups["cheap"]}
    quality = quality_by_group(config)
    return summarise(prompts, answers, args, resolved, quality) | {
        "elapsed_s": elapsed,
        "quality_by_group": quality,
    }


def quality_by_group(config: dict[str, Any]) -> dict[str, float]:
    """Each group's simulated quality: the mean `quality` of the profiles its deployments play."""
    from switchboard.sim import builtin_profiles, profiles_from_mapping
    from switchboard.sim.profiles import resolve_profile_name

    simulator = (config.get("switchboard") or {}).get("simulator") or {}
    profiles = builtin_profiles()
    profiles.update(profiles_from_mapping(simulator.get("profiles") or {}))
    default = str(simulator.get("default_profile", "fast"))
    found: dict[str, list[float]] = {}
    for deployment in config.get("model_list", []):
        model = str(deployment.get("litellm_params", {}).get("model", ""))
        name = resolve_profile_name(model.split("/", 1)[-1], profiles, default)
        found.setdefault(str(deployment.get("model_name")), []).append(profiles[name].quality)
    return {group: sum(qs) / len(qs) for group, qs in found.items()}


def group_of(config: dict[str, Any], name: str) -> str | None:
    """The model group a name stands for: itself, or a plain alias's (or `target`'s) group."""
    if any(d.get("model_name") == name for d in config.get("model_list", [])):
        return name
    alias = ((config.get("switchboard") or {}).get("aliases") or {}).get(name)
    if isinstance(alias, dict):
        alias = alias.get("target")
    return alias if isinstance(alias, str) else None


async def ask_all(address: str, prompts: list[Prompt], args: argparse.Namespace) -> list[Answer]:
    from switchboard.api.pb import gateway_pb2_grpc as pb_grpc

    modes = (args.alias, args.strong, args.cheap)
    gate = asyncio.Semaphore(args.concurrency)
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.GatewayStub(channel)

        async def one(prompt: Prompt, mode: str) -> Answer:
            async with gate:
                return await complete(stub, prompt, mode, args.max_tokens)

        return list(await asyncio.gather(*(one(p, m) for p in prompts for m in modes)))


async def complete(stub: Any, prompt: Prompt, mode: str, max_tokens: int) -> Answer:
    from switchboard.api.pb import gateway_pb2 as pb

    messages = [pb.Message(role=pb.ROLE_USER, content=prompt.prompt)]
    if prompt.system:
        messages.insert(0, pb.Message(role=pb.ROLE_SYSTEM, content=prompt.system))
    request = pb.CompleteRequest(
        model=mode,
        messages=messages,
        max_tokens=max_tokens,
        cache=pb.CacheControl(no_cache=True, no_store=True),
        metadata={"bench": "auto", "prompt_id": prompt.id},
    )
    error = ""
    for attempt in range(RETRIES + 1):
        try:
            response = await stub.Complete(request, timeout=CALL_TIMEOUT_S)
        except grpc.aio.AioRpcError as exc:
            error = f"{exc.code().name}: {exc.details()}"
            retryable = exc.code() in (
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                grpc.StatusCode.UNAVAILABLE,
            )
            if not retryable or attempt == RETRIES:
                return Answer(prompt.id, mode, error=error)
            await asyncio.sleep(min(MAX_WAIT_S, retry_after(exc) or 1.0 + attempt))
            continue
        routing = response.routing
        auto = routing.auto if routing.HasField("auto") else None
        return Answer(
            prompt_id=prompt.id,
            mode=mode,
            cost_usd=response.cost_usd,
            model_group=response.model_group,
            alias=routing.alias,
            tier=auto.tier if auto else "",
            score=auto.score if auto else 0.0,
            reason=auto.reason if auto else "",
        )
    return Answer(prompt.id, mode, error=error)  # unreachable: the loop returns


def retry_after(exc: Any) -> float | None:
    """RetryInfo's delay from a refusal's status details, None without one."""
    from google.protobuf.message import DecodeError
    from google.rpc import error_details_pb2, status_pb2

    for key, value in exc.trailing_metadata() or ():
        if key != DETAILS_KEY or not isinstance(value, bytes):
            continue
        try:
            status = status_pb2.Status.FromString(value)
        except DecodeError:
            return None
        for detail in status.details:
            if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                info = error_details_pb2.RetryInfo()
                detail.Unpack(info)
                return float(info.retry_delay.ToTimedelta().total_seconds())
    return None


def summarise(
    prompts: list[Prompt],
    answers: list[Answer],
    args: argparse.Namespace,
    groups: dict[str, str | None],
    quality: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Totals per mode; `groups` maps each mode to the model group it names.

    Quality per mode is the mean over prompts of the answering group's simulated
    `quality` for a hard prompt, and 1 for a simple one (a small model answers
    those as well): what routing by difficulty gives up against always-strong.
    """
    quality = quality or {}
    by_id = {p.id: p for p in prompts}
    modes = {"auto": args.alias, "strong": args.strong, "cheap": args.cheap}
    splits: dict[str, Any] = {}
    for split in ("all", *SPLITS):
        ids = {p.id for p in prompts if split == "all" or p.split == split}
        mine = [a for a in answers if a.prompt_id in ids]
        # Compare modes over the prompts every mode answered, so an error skews no total.
        ok = {(a.prompt_id, a.mode) for a in mine if not a.error}
        answered = {pid for pid in ids if all((pid, m) in ok for m in modes.values())}
        cost = {
            name: sum(a.cost_usd for a in mine if a.mode == mode and a.prompt_id in answered)
            for name, mode in modes.items()
        }
        auto_answers = [a for a in mine if a.mode == args.alias and a.prompt_id in answered]
        hard = [a for a in auto_answers if by_id[a.prompt_id].label == "hard"]
        simple = [a for a in auto_answers if by_id[a.prompt_id].label == "simple"]
        hard_to_cheap = [a.prompt_id for a in hard if a.model_group == groups["cheap"]]
        scored = {
            name: [
                quality.get(a.model_group, 0.0) if by_id[a.prompt_id].label == "hard" else 1.0
                for a in mine
                if a.mode == mode and a.prompt_id in answered
            ]
            for name, mode in modes.items()
        }
        splits[split] = {
            "quality": {
                name: sum(values) / len(values) if values else None
                for name, values in scored.items()
            },
            "prompts": len(ids),
            "answered_by_every_mode": len(answered),
            "cost_usd": cost,
            "saving_vs_strong": 1 - cost["auto"] / cost["strong"] if cost["strong"] else None,
            "saving_vs_cheap": 1 - cost["auto"] / cost["cheap"] if cost["cheap"] else None,
            "auto_over_cheap": cost["auto"] / cost["cheap"] if cost["cheap"] else None,
            "hard_to_cheap": len(hard_to_cheap) / len(hard) if hard else None,
            "hard_to_cheap_ids": sorted(hard_to_cheap),
            "simple_to_strong": (
                sum(a.model_group == groups["strong"] for a in simple) / len(simple)
                if simple
                else None
            ),
        }
    auto_answers = [a for a in answers if a.mode == args.alias and not a.error]
    offline = DifficultyClassifier()
    disagreements = [
        a.prompt_id
        for a in auto_answers
        if a.tier and a.tier != offline.classify(by_id[a.prompt_id].messages()).tier
    ]
    return {
        "modes": modes,
        "groups": groups,
        "max_tokens": args.max_tokens,
        "limits_lifted": args.lift_limits,
        "splits": splits,
        "errors": dict(Counter(f"{a.mode}: {a.error.split(':')[0]}" for a in answers if a.error)),
        "error_examples": sorted({a.error for a in answers if a.error})[:5],
        # Answered by a group other than the one named (a fallback), per fixed mode.
        "other_group": {
            name: sum(
                1
                for a in answers
                if a.mode == modes[name] and not a.error and a.model_group != groups[name]
            )
            for name in ("strong", "cheap")
        },
        "auto_without_decision": sum(1 for a in auto_answers if not a.tier),
        "auto_alias_reported": Counter(a.alias for a in auto_answers).most_common(3),
        # The gateway's tier against this process's classifier with default settings.
        "tier_disagreements": len(disagreements),
        "tier_disagreement_ids": disagreements[:20],
        "targets": {"saving_vs_strong": TARGET_SAVING, "hard_to_cheap": TARGET_HARD_TO_CHEAP},
    }


# --- the report --------------------------------------------------------------------------


def report(results: dict[str, Any]) -> str:
    classifier = results["classifier"]
    lines = [
        f"## auto: difficulty classifier (threshold {classifier['threshold']})",
        "",
        "| split | n | accuracy | hard->simple | simple->hard | strong share "
        "| est. saving at 10x / 20x |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for split, row in classifier["splits"].items():
        confusion = row["confusion"]
        est = row["estimated_saving"]
        lines.append(
            f"| {split} | {row['n']} | {row['accuracy']:.1%} "
            f"| {row['hard_as_simple']:.1%} ({confusion['hard']['simple']}) "
            f"| {row['simple_as_hard']:.1%} ({confusion['simple']['hard']}) "
            f"| {row['strong_share']:.1%} | {est['ratio_10']:.1%} / {est['ratio_20']:.1%} |"
        )
    cpu, big = classifier["cpu_per_prompt"], classifier["cpu_megabyte_prompt"]
    verdict = "met" if cpu["p50_ms"] < TARGET_P50_MS else "NOT met"
    lines += [
        "",
        f"classifier CPU per prompt: p50 {cpu['p50_ms'] * 1e3:.1f} us, "
        f"p99 {cpu['p99_ms'] * 1e3:.1f} us over {cpu['n']} calls "
        f"(target p50 < {TARGET_P50_MS} ms: {verdict}); "
        f"1 MB prompt: p50 {big['p50_ms'] * 1e3:.0f} us",
    ]
    gateway = results.get("gateway")
    if gateway is None:
        lines += ["", "gateway part skipped (--no-gateway)"]
        return "\n".join(lines)
    modes = gateway["modes"]
    lines += [
        "",
        f"## auto through the gateway (max_tokens {gateway['max_tokens']}, "
        f"auto = `{modes['auto']}`, strong = `{modes['strong']}` ({gateway['groups']['strong']}), "
        f"cheap = `{modes['cheap']}` ({gateway['groups']['cheap']}))",
        "",
        "| split | answered | auto $ | strong $ | cheap $ | saving vs strong "
        "| auto / cheap | hard->cheap | simple->strong | quality auto / strong / cheap |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for split, row in gateway["splits"].items():
        cost, quality = row["cost_usd"], row["quality"]
        lines.append(
            f"| {split} | {row['answered_by_every_mode']} | {cost['auto']:.4f} "
            f"| {cost['strong']:.4f} | {cost['cheap']:.4f} | {_pct(row['saving_vs_strong'])} "
            f"| {_times(row['auto_over_cheap'])} | {_pct(row['hard_to_cheap'])} "
            f"| {_pct(row['simple_to_strong'])} "
            f"| {_q(quality['auto'])} / {_q(quality['strong'])} / {_q(quality['cheap'])} |"
        )
    whole = gateway["splits"]["all"]
    saving, leaked = whole["saving_vs_strong"], whole["hard_to_cheap"]
    lines += [
        "",
        f"saving vs always-strong {_pct(saving)} (target >= {TARGET_SAVING:.0%}: "
        f"{'met' if saving is not None and saving >= TARGET_SAVING else 'NOT met'}); "
        f"hard prompts answered by the cheap group {_pct(leaked)} "
        f"(target < {TARGET_HARD_TO_CHEAP:.0%}: "
        f"{'met' if leaked is not None and leaked < TARGET_HARD_TO_CHEAP else 'NOT met'})",
        f"errors: {gateway['errors'] or 'none'}; answered by another group: "
        f"{gateway['other_group']}; auto answers without a decision: "
        f"{gateway['auto_without_decision']}; tier disagreements with the offline classifier: "
        f"{gateway['tier_disagreements']}",
    ]
    return "\n".join(lines)


def _q(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _times(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}x"


if __name__ == "__main__":
    sys.exit(main())
