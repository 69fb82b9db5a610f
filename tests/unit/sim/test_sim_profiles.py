"""Profiles: selection by model name, validation, and loading from files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from switchboard.sim import (
    FaultRates,
    InvalidProfileError,
    LatencyShift,
    ProfileConfigError,
    SimProfile,
    builtin_profiles,
    load_profiles,
    profiles_from_mapping,
)
from switchboard.sim.profiles import resolve_profile_name

PROFILES = builtin_profiles()


@pytest.mark.parametrize(
    ("model", "profile"),
    [
        ("fast", "fast"),
        ("sim-slow", "slow"),
        ("instant", "instant"),
        ("gpt-4o", "medium"),
        ("sim-unknown", "medium"),
        ("", "medium"),
    ],
)
def test_the_model_names_the_profile(model: str, profile: str) -> None:
    assert resolve_profile_name(model, PROFILES, "medium") == profile


def test_builtin_profiles_is_a_fresh_dict() -> None:
    mine = builtin_profiles()
    mine["extra"] = SimProfile()
    assert "extra" not in builtin_profiles()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"ttft_ms": -1.0}, "ttft_ms"),
        ({"ttft_jitter_ms": -1.0}, "ttft_jitter_ms"),
        ({"tokens_per_second": 0.0}, "tokens_per_second"),
        ({"min_output_tokens": 0}, "min_output_tokens"),
        ({"min_output_tokens": 10, "max_output_tokens": 9}, "max_output_tokens"),
        ({"tpm_budget": 0}, "tpm_budget"),
        ({"max_context_tokens": 0}, "max_context_tokens"),
    ],
)
def test_impossible_profiles_are_rejected(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(InvalidProfileError) as caught:
        SimProfile(**kwargs)  # type: ignore[arg-type]
    assert caught.value.field == field


YAML_PROFILES = """
flaky:
  ttft_ms: 80
  ttft_jitter_ms: 5
  tokens_per_second: 100
  min_output_tokens: 5
  max_output_tokens: 10
  tpm_budget: 1000
  max_context_tokens: 4096
  faults: {server_error: 0.05, rate_limit: 0.1, retry_after_s: 2}
  latency_schedule:
    - {at_s: 30, ttft_factor: 4}
    - {at_s: 60, tokens_per_second: 10}
unbounded:
  tokens_per_second: .inf
fast:
  ttft_ms: 1
"""


def test_profiles_load_from_yaml(tmp_path: Path) -> None:
    path = tmp_path / "profiles.yaml"
    path.write_text(YAML_PROFILES)
    profiles = load_profiles(path)
    assert profiles["flaky"] == SimProfile(
        ttft_ms=80.0,
        ttft_jitter_ms=5.0,
        tokens_per_second=100.0,
        min_output_tokens=5,
        max_output_tokens=10,
        tpm_budget=1000,
        max_context_tokens=4096,
        faults=FaultRates(server_error=0.05, rate_limit=0.1, retry_after_s=2.0),
        latency_schedule=(
            LatencyShift(at_s=30.0, ttft_factor=4.0),
            LatencyShift(at_s=60.0, tokens_per_second=10.0),
        ),
    )
    assert math.isinf(profiles["unbounded"].tokens_per_second)
    assert profiles["fast"].ttft_ms == 1.0


def test_profiles_load_from_json(tmp_path: Path) -> None:
    path = tmp_path / "profiles.json"
    path.write_text(json.dumps({"steady": {"ttft_ms": 5, "faults": {"timeout": 0.5}}}))
    assert load_profiles(path) == {
        "steady": SimProfile(ttft_ms=5.0, faults=FaultRates(timeout=0.5))
    }


def test_every_problem_is_reported_with_its_path() -> None:
    with pytest.raises(ProfileConfigError) as caught:
        profiles_from_mapping(
            {
                "a": {"ttft_ms": "slow", "faults": {"server_eror": 0.1}},
                "b": {"latency_schedule": [{"ttft_factor": 2}], "tpm_budget": 1.5},
                "c": {"ttft_ms": -5},
                "d": {"faults": {"timeout": 2.0}},
            },
            path="switchboard.simulator.profiles",
        )
    paths = [path for path, _ in caught.value.problems]
    prefix = "switchboard.simulator.profiles"
    assert paths == [
        f"{prefix}.a.ttft_ms",
        f"{prefix}.a.faults.server_eror",
        f"{prefix}.b.latency_schedule[0]",
        f"{prefix}.b.tpm_budget",
        f"{prefix}.c.ttft_ms",
        f"{prefix}.d.faults.timeout",
    ]
    assert "unknown field" in str(caught.value)


def test_a_document_that_is_not_a_mapping_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "profiles.yaml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(ProfileConfigError):
        load_profiles(path)
    path.write_text("a: [unclosed\n")
    with pytest.raises(ProfileConfigError, match="cannot parse"):
        load_profiles(path)
