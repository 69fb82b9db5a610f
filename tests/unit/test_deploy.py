"""deploy/: the multi-replica compose file and the config its gateways serve."""

from __future__ import annotations

from pathlib import Path

import yaml

from switchboard.config import load_settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def test_the_replicas_config_shares_state_through_the_compose_redis() -> None:
    settings = load_settings(DEPLOY / "replicas.yaml", env={})
    redis = settings.state_redis
    assert redis is not None
    assert redis.url == "redis://redis:6379/0"
    assert redis.local_share == 1 / 3
    assert {d.params["api_base"] for d in settings.deployments} == {"http://sim:50061/v1"}
    assert settings.telemetry.otlp_endpoint == "http://collector:4317"


def test_compose_runs_three_gateways_on_that_config_with_redis_and_the_collector() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    gateways = sorted(name for name in services if name.startswith("gateway-"))
    assert gateways == ["gateway-1", "gateway-2", "gateway-3"]
    for name in gateways:
        service = services[name]
        assert "./replicas.yaml:/etc/switchboard/replicas.yaml:ro" in service["volumes"]
        assert {"redis", "sim", "collector"} <= set(service["depends_on"])
    ports = [services[name]["ports"][0].split(":")[0] for name in gateways]
    assert len(set(ports)) == 3
    assert (DEPLOY / services["collector"]["volumes"][0].split(":")[0]).exists()
    assert (DEPLOY / "Dockerfile").exists()
