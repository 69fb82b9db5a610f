"""Cost control over real gRPC: aliases, spend, budgets, GetStats, and spend shared in Redis.

The gateway and its own simulator run as real processes; the simulator's own
request counter says whether a refused call reached it. Prices are set in the
config so every cost is known: input $0.001 and output $0.002 per token.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from switchboard.api.pb import gateway_pb2 as pb
from switchboard.api.pb import gateway_pb2_grpc as pb_grpc

from .procs import Proc, start_gateway, start_sim

pytestmark = pytest.mark.integration

GRPCURL = Path(sys.executable).parent / "grpcurl"
IN_PRICE, OUT_PRICE = 0.001, 0.002
OPS = f"sk-ops-{secrets.token_hex(12)}"
ANN = f"sk-ann-{secrets.token_hex(12)}"
BEN = f"sk-ben-{secrets.token_hex(12)}"
CY = f"sk-cy-{secrets.token_hex(12)}"


def _key(name: str, key: str, **extra: object) -> dict[str, object]:
    return {"name": name, "sha256": hashlib.sha256(key.encode()).hexdigest(), **extra}


def _auth(key: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {key}")]


def _config(sim_url: str, **switchboard: object) -> dict[str, object]:
    def deployment(group: str, profile: str, scale: float) -> dict[str, object]:
        return {
            "model_name": group,
            "litellm_params": {"model": f"openai/{profile}", "api_base": sim_url, "api_key": "s"},
            "model_info": {
                "id": group,
                "input_cost_per_token": IN_PRICE * scale,
                "output_cost_per_token": OUT_PRICE * scale,
            },
        }

    return {
        "model_list": [deployment("mini", "instant", 1.0), deployment("pro", "instant", 10.0)],
        "router_settings": {"num_retries": 0, "max_queue_wait": 0},
        "switchboard": {
            "providers": {"fast_path": True},
            "aliases": {
                "cheap": "mini",
                "creative": {"target": "mini", "defaults": {"temperature": 1.2}},
                "auto": {"auto": {"simple": "mini", "hard": "pro"}},
            },
            "teams": {"red": {"max_budget": 100, "budget_duration": "30d"}},
            "keys": [
                _key("ops", OPS, admin=True),
                _key("ann", ANN, metadata={"team": "red"}, max_budget=0.3, budget_duration="1d"),
                _key("ben", BEN, metadata={"team": "red"}),
                _key("cy", CY, metadata={"team": "blue"}),
            ],
            **switchboard,
        },
    }


@dataclass(frozen=True)
class Served:
    proc: Proc
    address: str
    sim_url: str
    stub: pb_grpc.GatewayStub


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    sim_proc, sim_url = start_sim()
    config = _config(sim_url, cache={"ttl_seconds": 600})
    proc, address = start_gateway(config, tmp_path_factory.mktemp("costs"))
    try:
        with grpc.insecure_channel(address) as channel:
            yield Served(proc, address, sim_url, pb_grpc.GatewayStub(channel))
    finally:
        assert proc.terminate() == 0, proc.output()
        sim_proc.terminate()


def _ask(model: str, text: str = "Say hi", max_tokens: int = 20) -> pb.CompleteRequest:
    return pb.CompleteRequest(
        model=model,
        messages=[pb.Message(role=pb.ROLE_USER, content=text)],
        max_tokens=max_tokens,
        cache=pb.CacheControl(no_cache=True, no_store=True),
    )


def _upstream_requests(sim_url: str) -> int:
    base = sim_url.removesuffix("/v1")
    with urllib.request.urlopen(f"{base}/sim/stats", timeout=5) as answer:
        return int(json.load(answer)["requests"])


def _grpcurl(address: str, key: str, method: str, data: object) -> dict[str, object]:
    result = subprocess.run(
        [
            str(GRPCURL), "-plaintext", "-max-time", "30", "-H", f"authorization: Bearer {key}",
            "-d", json.dumps(data), address, f"switchboard.v1.Gateway/{method}",
        ],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    answer: dict[str, object] = json.loads(result.stdout)
    return answer


def _details(err: grpc.RpcError) -> list[object]:
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None
    found: list[object] = []
    for detail in status.details:
        for kind in (
            error_details_pb2.ErrorInfo,
            error_details_pb2.RetryInfo,
            error_details_pb2.QuotaFailure,
        ):
            if detail.Is(kind.DESCRIPTOR):
                message = kind()
                detail.Unpack(message)
                found.append(message)
    return found


def test_a_calls_cost_is_its_tokens_times_the_configured_prices(served: Served) -> None:
    for model, scale in (("mini", 1.0), ("pro", 10.0)):
        answer = served.stub.Complete(_ask(model), metadata=_auth(CY), timeout=30)
        expected = (
            answer.usage.input_tokens * IN_PRICE + answer.usage.output_tokens * OUT_PRICE
        ) * scale
        assert answer.cost_usd == pytest.approx(expected)


def test_list_models_shows_aliases_with_defaults_prices_and_auto(served: Served) -> None:
    listing = served.stub.ListModels(pb.ListModelsRequest(), metadata=_auth(OPS), timeout=10)
    aliases = {a.name: a for a in listing.aliases}
    assert set(aliases) == {"cheap", "creative", "auto"}
    assert aliases["creative"].target == "mini"
    assert aliases["creative"].defaults.temperature == pytest.approx(1.2)
    assert not aliases["creative"].defaults.HasField("top_p")
    assert aliases["cheap"].min_price.input_per_1k_usd == pytest.approx(IN_PRICE * 1000)
    assert aliases["cheap"].max_price.output_per_1k_usd == pytest.approx(OUT_PRICE * 1000)
    auto = aliases["auto"]
    assert (auto.auto.simple_target, auto.auto.hard_target) == ("mini", "pro")
    assert 0 < auto.auto.threshold < 1
    assert auto.min_price.input_per_1k_usd == pytest.approx(IN_PRICE * 1000)
    assert auto.max_price.input_per_1k_usd == pytest.approx(IN_PRICE * 10_000)
    deployments = {d.id: d for g in listing.groups for d in g.deployments}
    assert deployments["pro"].price.output_per_1k_usd == pytest.approx(OUT_PRICE * 10_000)


def test_auto_routing_facts_are_in_the_answer(served: Served) -> None:
    simple = served.stub.Complete(_ask("auto", "Hello!"), metadata=_auth(CY), timeout=30)
    hard = served.stub.Complete(
        _ask(
            "auto",
            "Design a distributed rate limiter for a multi-region API gateway. Compare "
            "token bucket and sliding window approaches, analyse the consistency trade-offs, "
            "and write the core algorithm in Python with tests.",
        ),
        metadata=_auth(CY),
        timeout=30,
    )
    assert (simple.model_group, hard.model_group) == ("mini", "pro")
    assert simple.routing.alias == hard.routing.alias == "auto"
    assert (simple.routing.auto.tier, hard.routing.auto.tier) == ("simple", "hard")
    assert hard.routing.auto.model_group == "pro"
    assert hard.routing.auto.reason.startswith("hard")
    assert 0 <= simple.routing.auto.score < hard.routing.auto.score <= 1


def test_a_key_over_its_budget_is_refused_before_any_upstream_call(served: Served) -> None:
    # ann may spend $0.30 a day; a mini call costs up to about $0.05.
    spent = 0.0
    refusal: grpc.RpcError | None = None
    for _ in range(40):
        try:
            answer = served.stub.Complete(_ask("mini"), metadata=_auth(ANN), timeout=30)
        except grpc.RpcError as err:
            refusal = err
            break
        spent += answer.cost_usd
    assert refusal is not None
    assert 0.2 < spent <= 0.3
    before = _upstream_requests(served.sim_url)
    with pytest.raises(grpc.RpcError) as caught:
        served.stub.Complete(_ask("mini"), metadata=_auth(ANN), timeout=30)
    assert _upstream_requests(served.sim_url) == before
    err = caught.value
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    info, retry, quota = _details(err)
    assert isinstance(info, error_details_pb2.ErrorInfo)
    assert info.reason == "BUDGET_EXCEEDED"
    assert info.metadata["budget"] == "budget:key:ann"
    assert isinstance(retry, error_details_pb2.RetryInfo)
    assert 0 < retry.retry_delay.seconds <= 86_400
    assert isinstance(quota, error_details_pb2.QuotaFailure)
    assert quota.violations[0].subject == "budget:key:ann"
    # ben, of the same team, has room of his own and in the team's budget.
    served.stub.Complete(_ask("mini"), metadata=_auth(BEN), timeout=30)
    # A stream is refused alike, before its first event.
    with pytest.raises(grpc.RpcError) as streamed:
        list(served.stub.StreamComplete(_ask("mini"), metadata=_auth(ANN), timeout=30))
    assert streamed.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert _upstream_requests(served.sim_url) == before + 1


def test_a_cache_hit_costs_nothing_and_counts_as_saved(served: Served) -> None:
    request = pb.CompleteRequest(
        model="mini", messages=[pb.Message(role=pb.ROLE_USER, content=secrets.token_hex(8))]
    )
    before = _key_stats(served, CY, "cy")
    first = served.stub.Complete(request, metadata=_auth(CY), timeout=30)
    second = served.stub.Complete(request, metadata=_auth(CY), timeout=30)
    assert second.cache_hit
    after = _key_stats(served, CY, "cy")
    assert float(after.get("spend_usd", 0)) - float(before.get("spend_usd", 0)) == pytest.approx(
        first.cost_usd
    )
    assert float(after.get("saved_usd", 0)) - float(before.get("saved_usd", 0)) == pytest.approx(
        first.cost_usd
    )
    assert int(after.get("cache_hits", 0)) - int(before.get("cache_hits", 0)) == 1


def _key_stats(served: Served, key: str, name: str) -> dict[str, object]:
    stats = _grpcurl(served.address, key, "GetStats", {"period": "STATS_PERIOD_DAY"})
    (line,) = [k for k in stats["keys"] if k["name"] == name]  # type: ignore[attr-defined]
    calls: dict[str, object] = line["calls"]
    return calls


def test_get_stats_through_grpcurl_shows_the_figures(served: Served) -> None:
    for _ in range(3):
        served.stub.Complete(_ask("cheap"), metadata=_auth(BEN), timeout=30)
    stats = _grpcurl(served.address, OPS, "GetStats", {"period": "STATS_PERIOD_HOUR"})
    assert stats["period"] == "STATS_PERIOD_HOUR"
    assert "shared" not in stats  # false: no Redis here (proto3 JSON omits false)
    groups = {g["name"]: g["calls"] for g in stats["groups"]}  # type: ignore[attr-defined]
    mini = groups["mini"]
    assert int(mini["requests"]) >= 3
    assert float(mini["spend_usd"]) > 0
    assert int(mini["input_tokens"]) > 0
    assert int(mini["output_tokens"]) > 0
    assert mini["latency_p50"].endswith("s")
    assert mini["latency_p95"].endswith("s")
    deployments = {d["id"]: d for d in stats["deployments"]}  # type: ignore[attr-defined]
    assert deployments["mini"]["state"] == "DEPLOYMENT_STATE_HEALTHY"
    assert int(deployments["mini"]["calls"]["requests"]) >= 3
    keys = {k["name"]: k for k in stats["keys"]}  # type: ignore[attr-defined]
    assert set(keys) == {"ops", "ann", "ben", "cy"}
    assert keys["ann"]["budget"]["max_budget_usd"] == 0.3
    assert keys["ann"]["budget"]["duration"] == "1d"
    assert "resets_at" in keys["ann"]["budget"]
    assert "budget" not in keys["ben"]
    teams = {t["name"]: t for t in stats["teams"]}  # type: ignore[attr-defined]
    assert set(teams) == {"red", "blue"}
    assert teams["red"]["budget"]["max_budget_usd"] == 100
    red_requests = int(teams["red"]["calls"]["requests"])
    assert red_requests == int(keys["ann"]["calls"]["requests"]) + int(
        keys["ben"]["calls"]["requests"]
    )
    assert {p["name"] for p in stats["providers"]} == {"openai"}  # type: ignore[attr-defined]


def test_a_key_sees_only_its_own_line(served: Served) -> None:
    served.stub.Complete(_ask("mini"), metadata=_auth(BEN), timeout=30)
    stats = _grpcurl(served.address, BEN, "GetStats", {})
    assert stats["period"] == "STATS_PERIOD_DAY"
    assert [k["name"] for k in stats["keys"]] == ["ben"]  # type: ignore[attr-defined]
    assert [t["name"] for t in stats["teams"]] == ["red"]  # type: ignore[attr-defined]
    assert "providers" not in stats


def test_a_bad_period_is_named(served: Served) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        served.stub.GetStats(pb.GetStatsRequest(period=42), metadata=_auth(OPS), timeout=10)  # type: ignore[arg-type]
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "period" in (caught.value.details() or "")


def test_spend_is_shared_by_two_gateways_and_survives_a_restart(
    redis_url: str, tmp_path: Path
) -> None:
    sim_proc, sim_url = start_sim()
    config = _config(sim_url, redis={"url": redis_url})
    procs: list[Proc] = []
    try:
        (proc_a, address_a), (proc_b, address_b) = (
            start_gateway(config, _fresh(tmp_path / name)) for name in ("a", "b")
        )
        procs += [proc_a, proc_b]
        spent = {"a": 0.0, "b": 0.0}
        with grpc.insecure_channel(address_a) as ca, grpc.insecure_channel(address_b) as cb:
            for name, channel in (("a", ca), ("b", cb)):
                stub = pb_grpc.GatewayStub(channel)
                for _ in range(2):
                    spent[name] += stub.Complete(
                        _ask("mini"), metadata=_auth(ANN), timeout=30
                    ).cost_usd
        # b stops: its last flush sends what it spent. a reads the shared totals.
        assert proc_b.terminate() == 0, proc_b.output()
        ann = _ann(address_a)
        assert ann["calls"]["requests"] == "4"
        assert float(ann["calls"]["spend_usd"]) == pytest.approx(spent["a"] + spent["b"])
        assert float(ann["budget"]["spend_usd"]) == pytest.approx(spent["a"] + spent["b"])
        assert proc_a.terminate() == 0, proc_a.output()
        # A restarted gateway starts from the shared totals, and its budget knows them.
        proc_c, address_c = start_gateway(config, _fresh(tmp_path / "c"))
        procs.append(proc_c)
        ann = _ann(address_c)
        assert float(ann["calls"]["spend_usd"]) == pytest.approx(spent["a"] + spent["b"])
        with grpc.insecure_channel(address_c) as cc:
            stub = pb_grpc.GatewayStub(cc)
            refused = None
            for _ in range(40):
                try:
                    stub.Complete(_ask("mini"), metadata=_auth(ANN), timeout=30)
                except grpc.RpcError as err:
                    refused = err
                    break
            assert refused is not None
            assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        stats = _grpcurl(address_c, OPS, "GetStats", {"period": "STATS_PERIOD_TOTAL"})
        assert stats["shared"] is True
        assert float(_ann(address_c)["budget"]["spend_usd"]) <= 0.3
    finally:
        for proc in procs:
            proc.terminate()
        sim_proc.terminate()


def _fresh(directory: Path) -> Path:
    directory.mkdir()
    return directory


def _ann(address: str) -> dict[str, dict[str, str]]:
    stats = _grpcurl(address, ANN, "GetStats", {"period": "STATS_PERIOD_TOTAL"})
    (line,) = stats["keys"]  # type: ignore[misc]
    return line  # type: ignore[no-any-return]
