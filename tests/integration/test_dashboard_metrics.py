"""Every metric and label the Grafana dashboard queries is one a running server exports.

The server exposes its metrics on a Prometheus endpoint (the same names the
collector's Prometheus exporter produces); after a few calls of every kind
the scrape must hold each series the dashboard names, with the labels its
queries group and filter by.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import grpc
import httpx
import pytest
import yaml

from switchboard.api.pb import gateway_pb2 as pb
from switchboard.api.pb import gateway_pb2_grpc as pb_grpc

from .procs import gateway_config, start_gateway, start_sim

pytestmark = pytest.mark.integration

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "switchboard.json"
_BY = re.compile(r"\bby\s*\(([^)]*)\)")
_SELECTOR = re.compile(r"\{([^}]*)\}")
_IDENT = re.compile(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*\b")
_FUNCTIONS = {"histogram_quantile", "sum", "max", "rate", "increase", "by", "le"}


def dashboard_queries() -> list[str]:
    board = json.loads(DASHBOARD.read_text())
    return [t["expr"] for panel in board["panels"] for t in panel["targets"]]


def names_in(expr: str) -> tuple[set[str], set[str]]:
    """(metric names, label names) one PromQL expression uses."""
    labels: set[str] = set()
    for group in _BY.findall(expr):
        labels |= {name.strip() for name in group.split(",") if name.strip()}
    for selector in _SELECTOR.findall(expr):
        labels |= {m.split("=")[0].rstrip("!~").strip() for m in selector.split(",")}
    bare = _SELECTOR.sub("", _BY.sub("", expr))
    bare = re.sub(r"\[[^\]]*\]", "", bare)  # range selectors
    metrics = {
        name
        for name in _IDENT.findall(bare)
        if name not in _FUNCTIONS and not re.fullmatch(r"\d.*", name)
    }
    return metrics, labels - {"le"}


def test_the_query_parser_finds_metrics_and_labels() -> None:
    metrics, labels = names_in(
        'histogram_quantile(0.95, sum by (le, a_b) (rate(x_bucket{c="d"}[5m]))) / max(y)'
    )
    assert metrics == {"x_bucket", "y"}
    assert labels == {"a_b", "c"}


def test_every_dashboard_metric_is_exported(tmp_path: Path) -> None:
    profiles = tmp_path / "profiles.yaml"
    profiles.write_text(yaml.safe_dump({"outage": {"faults": {"unavailable": 1.0}}}))
    sim, sim_url = start_sim(profiles)
    config = gateway_config(
        sim_url,
        {"chat": ["instant"], "down": ["outage"]},
        router_settings={"fallbacks": [{"down": ["chat"]}], "num_retries": 0},
        switchboard={"telemetry": {"prometheus_listen": "127.0.0.1:0"}},
    )
    for deployment in config["model_list"]:  # type: ignore[attr-defined]
        deployment["litellm_params"].update(rpm=600, tpm=100_000)
    gateway, address = start_gateway(config, tmp_path)
    try:
        with grpc.insecure_channel(address) as channel:
            stub = pb_grpc.GatewayStub(channel)
            request = pb.CompleteRequest(
                model="chat", messages=[pb.Message(role=pb.ROLE_USER, content="hi")]
            )
            stub.Complete(request, timeout=30)
            list(stub.StreamComplete(request, timeout=30))
            fallback = stub.Complete(
                pb.CompleteRequest(model="down", messages=request.messages), timeout=30
            )
            assert fallback.fallback_depth == 1
            with pytest.raises(grpc.RpcError):
                stub.Complete(pb.CompleteRequest(model="nope", messages=request.messages))
        match = re.search(r"prometheus metrics on http://(\S+)/metrics", gateway.output())
        assert match, gateway.output()
        scrape = httpx.get(f"http://{match.group(1)}/metrics").text
    finally:
        assert gateway.terminate() == 0, gateway.output()
        sim.terminate()

    series: dict[str, set[str]] = {}
    for line in scrape.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, _, rest = line.partition("{")
        labels = set(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="', rest))
        series.setdefault(name.split()[0], set()).update(labels)

    queries = dashboard_queries()
    assert len(queries) >= 10
    for expr in queries:
        metrics, labels = names_in(expr)
        assert metrics, expr
        for metric in metrics:
            assert metric in series, f"{metric} (in {expr!r}) is not exported"
            missing = labels - series[metric] - {"le"}
            # A label grouped by in one metric of a ratio may belong to the other metric.
            others = set().union(*(series.get(m, set()) for m in metrics))
            assert not (missing - others), f"{metric} lacks labels {missing} for {expr!r}"
    assert 'switchboard_fallback="true"' in scrape
