"""Writes deploy/grafana/switchboard.json, the Grafana dashboard, from the panel list below.

Kept as code so every panel has the same shape and the queries sit in one
readable list; tests/integration/test_dashboard_metrics.py checks each metric
named here against what a running server exports.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent.parent / "deploy" / "grafana" / "switchboard.json"
WINDOW = "$__rate_interval"

# (title, unit, [(legend, PromQL)], panel type)
PANELS: list[tuple[str, str, list[tuple[str, str]], str]] = [
    (
        "Latency p50 / p95 / p99 by model group",
        "s",
        [
            (
                f"{{{{switchboard_model_group}}}} p{q}",
                f"histogram_quantile(0.{q}, sum by (le, switchboard_model_group) "
                f"(rate(gen_ai_client_operation_duration_seconds_bucket[{WINDOW}])))",
            )
            for q in ("50", "95", "99")
        ],
        "timeseries",
    ),
    (
        "Latency p95 by deployment",
        "s",
        [
            (
                "{{switchboard_deployment}}",
                "histogram_quantile(0.95, sum by (le, switchboard_deployment) "
                f"(rate(gen_ai_client_operation_duration_seconds_bucket[{WINDOW}])))",
            )
        ],
        "timeseries",
    ),
    (
        "Time to first chunk p95 by model group",
        "s",
        [
            (
                "{{switchboard_model_group}}",
                "histogram_quantile(0.95, sum by (le, switchboard_model_group) "
                f"(rate(switchboard_time_to_first_chunk_seconds_bucket[{WINDOW}])))",
            )
        ],
        "timeseries",
    ),
    (
        "Tokens per minute against the limit, by deployment",
        "short",
        [
            (
                "{{switchboard_deployment}} used",
                "60 * sum by (switchboard_deployment) "
                f"(rate(gen_ai_client_token_usage_sum[{WINDOW}]))",
            ),
            (
                "{{switchboard_deployment}} limit",
                "max by (switchboard_deployment) "
                '(switchboard_ratelimit_limit{switchboard_limit_unit="tokens"})',
            ),
        ],
        "timeseries",
    ),
    (
        "Limiter headroom by deployment",
        "short",
        [
            (
                "{{switchboard_deployment}} {{switchboard_limit_unit}}",
                "max by (switchboard_deployment, switchboard_limit_unit) "
                "(switchboard_ratelimit_headroom)",
            )
        ],
        "timeseries",
    ),
    (
        "Limiter and cooldown wait p95",
        "s",
        [
            (
                "{{switchboard_model_group}}",
                "histogram_quantile(0.95, sum by (le, switchboard_model_group) "
                f"(rate(switchboard_ratelimit_wait_seconds_bucket[{WINDOW}])))",
            )
        ],
        "timeseries",
    ),
    (
        "Upstream errors by kind",
        "reqps",
        [
            (
                "{{error_type}}",
                "sum by (error_type) "
                '(rate(gen_ai_client_operation_duration_seconds_count{error_type!=""}'
                f"[{WINDOW}]))",
            )
        ],
        "timeseries",
    ),
    (
        "Calls by outcome",
        "reqps",
        [
            (
                "{{switchboard_outcome}}",
                f"sum by (switchboard_outcome) (rate(switchboard_requests_total[{WINDOW}]))",
            )
        ],
        "timeseries",
    ),
    (
        "Fallback rate",
        "percentunit",
        [
            (
                "fallback",
                f'sum(rate(switchboard_requests_total{{switchboard_fallback="true"}}[{WINDOW}])) '
                f"/ sum(rate(switchboard_requests_total[{WINDOW}]))",
            )
        ],
        "stat",
    ),
    (
        "Cache hit rate",
        "percentunit",
        [
            (
                "hits",
                f'sum(rate(switchboard_requests_total{{switchboard_cache_hit="true"}}[{WINDOW}])) '
                f"/ sum(rate(switchboard_requests_total[{WINDOW}]))",
            )
        ],
        "stat",
    ),
    (
        "Cost per model group (last hour)",
        "currencyUSD",
        [
            (
                "{{switchboard_model_group}}",
                "sum by (switchboard_model_group) (increase(switchboard_cost_USD_total[1h]))",
            )
        ],
        "bargauge",
    ),
    (
        "Deployments cooling down",
        "short",
        [
            (
                "{{switchboard_deployment}}",
                "max by (switchboard_deployment) (switchboard_deployment_cooling_down)",
            )
        ],
        "timeseries",
    ),
    (
        "Calls in flight by deployment",
        "short",
        [
            (
                "{{switchboard_deployment}}",
                "sum by (switchboard_deployment) (switchboard_deployment_in_flight)",
            )
        ],
        "timeseries",
    ),
]


def _panel(
    index: int, title: str, unit: str, targets: list[tuple[str, str]], kind: str
) -> dict[str, Any]:
    return {
        "id": index + 1,
        "type": kind,
        "title": title,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"h": 8, "w": 12, "x": 12 * (index % 2), "y": 8 * (index // 2)},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
        "targets": [
            {
                "refId": chr(ord("A") + n),
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
                "expr": expr,
                "legendFormat": legend,
            }
            for n, (legend, expr) in enumerate(targets)
        ],
    }


def dashboard() -> dict[str, Any]:
    return {
        "uid": "switchboard",
        "title": "Switchboard",
        "tags": ["switchboard", "llm", "gen_ai"],
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "type": "datasource",
                    "query": "prometheus",
                    "label": "Prometheus",
                }
            ]
        },
        "panels": [_panel(i, *panel) for i, panel in enumerate(PANELS)],
    }


def main() -> int:
    text = json.dumps(dashboard(), indent=2) + "\n"
    if sys.argv[1:] == ["--check"]:
        return 0 if OUT.read_text() == text else 1
    OUT.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
