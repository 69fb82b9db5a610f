"""How workers split limits: shares that sum to the limit, and settings per worker."""

from __future__ import annotations

from pathlib import Path

import pytest

from switchboard.cli import main
from switchboard.config import parse_settings
from switchboard.workers import parse_worker, problems, share, too_small, worker_settings


def test_shares_sum_to_the_limit_and_differ_by_at_most_one() -> None:
    for limit in (1, 2, 5, 7, 100, 1001):
        for count in range(1, 9):
            parts = [share(limit, i, count) or 0 for i in range(count)]
            assert sum(parts) == limit
            assert max(parts) - min(parts) <= 1
    assert share(None, 0, 3) is None


def test_worker_settings_hold_the_share_and_no_simulator() -> None:
    settings = parse_settings(
        "model_list:\n"
        "  - model_name: g\n"
        "    litellm_params: {model: openai/x, api_key: k, rpm: 7, tpm: 1000}\n"
        "switchboard:\n"
        "  keys: [{name: a, sha256: '" + "0" * 64 + "', rpm: 3}]\n",
        source="t",
        env={},
    )
    first, second = (worker_settings(settings, i, 2) for i in range(2))
    assert (first.deployments[0].rpm, second.deployments[0].rpm) == (4, 3)
    assert (first.deployments[0].tpm, second.deployments[0].tpm) == (500, 500)
    assert first.groups["g"][0] is first.deployments[0]
    assert (first.keys[0].rpm, second.keys[0].rpm) == (2, 1)
    assert first.simulator is None


@pytest.mark.parametrize(
    ("redis", "share_of"), [("", 0.5), ("  redis: {url: 'redis://h/0'}\n", 1.0)]
)
def test_budgets_are_split_between_workers_unless_redis_shares_them(
    redis: str, share_of: float
) -> None:
    settings = parse_settings(
        "model_list:\n"
        "  - model_name: g\n"
        "    litellm_params: {model: openai/x, api_key: k}\n"
        "router_settings:\n"
        "  provider_budget_config: {openai: {budget_limit: 10, time_period: 1d}}\n"
        "switchboard:\n" + redis + "  teams: {t: {max_budget: 4}}\n"
        "  keys: [{name: a, sha256: '" + "0" * 64 + "', max_budget: 2, budget_duration: 1h}]\n",
        source="t",
        env={},
    )
    worker = worker_settings(settings, 1, 2)
    key_budget = worker.keys[0].budget
    assert key_budget is not None
    assert (key_budget.max_usd, key_budget.duration) == (2 * share_of, "1h")
    assert worker.teams["t"].max_usd == 4 * share_of
    assert worker.provider_budgets["openai"].max_usd == 10 * share_of


def test_limits_below_the_worker_count_are_named() -> None:
    settings = parse_settings(
        "model_list:\n"
        "  - model_name: g\n"
        "    litellm_params: {model: openai/x, api_key: k, rpm: 3}\n",
        source="t",
        env={},
    )
    assert too_small(settings, 3) == []
    assert too_small(settings, 4) == ["model_list[g/openai/x].rpm 3"]
    assert parse_worker("1/4") == (1, 4)


@pytest.mark.parametrize("bad", ["2/2", "-1/2", "x/2", "1"])
def test_worker_labels_are_checked(bad: str) -> None:
    with pytest.raises(ValueError, match="INDEX/COUNT"):
        parse_worker(bad)


def test_problems_name_small_limits_and_a_scrape_port(tmp_path: Path) -> None:
    config = (
        "model_list:\n"
        "  - model_name: g\n"
        "    litellm_params: {model: openai/x, api_key: k, rpm: 3}\n"
        "switchboard:\n"
        "  server: {workers: 4}\n"
        "  telemetry: {prometheus_listen: '127.0.0.1:9464'}\n"
    )
    settings = parse_settings(config, source="t", env={})
    assert problems(settings, 1) == []
    found = problems(settings, 4)
    assert (
        found[0] == "model_list[g/openai/x].rpm 3: below 4, so some worker's share of it would be 0"
    )
    assert found[1].startswith("switchboard.telemetry.prometheus_listen")
    path = tmp_path / "c.yaml"
    path.write_text(config)
    # check-config refuses what `serve` would refuse with the configured workers.
    assert main(["check-config", str(path)]) == 1
