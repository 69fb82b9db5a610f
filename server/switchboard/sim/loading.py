"""Profiles from YAML or JSON: a mapping of profile names to `SimProfile` fields.

    flaky:
      ttft_ms: 80
      tokens_per_second: 100
      faults: {server_error: 0.05, rate_limit: 0.05, retry_after_s: 2}
      latency_schedule:
        - {at_s: 30, ttft_factor: 4}

Parsing is strict and reports every problem with its path at once (unknown fields
included), because a misspelt fault rate that silently stays 0 makes a resilience
test pass for the wrong reason. `profiles_from_mapping` serves the gateway's own
config section as well as files.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from .errors import InvalidProfileError, ProfileConfigError
from .faults import FaultRates
from .profiles import LatencyShift, SimProfile

_Problems = list[tuple[str, str]]


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _scalar(value: object, hint: object, path: str, problems: _Problems) -> object:
    if value is None:
        if hint in (int | None, float | None):
            return None
        problems.append((path, "must not be null"))
        return None
    if hint in (float, float | None):
        if isinstance(value, str) and value.strip().lower() in {"inf", "infinity", ".inf"}:
            return math.inf
        if isinstance(value, bool) or not isinstance(value, int | float):
            problems.append((path, f"must be a number, got {type(value).__name__}"))
            return None
        return float(value)
    if hint in (int, int | None):
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append((path, f"must be an integer, got {type(value).__name__}"))
            return None
        return value
    raise AssertionError(f"no parser for {hint!r}")


def _fields(
    cls: type[Any],
    data: object,
    path: str,
    problems: _Problems,
) -> dict[str, Any] | None:
    """Check `data` against the dataclass `cls`; return its keyword arguments or None."""
    if not isinstance(data, Mapping):
        problems.append((path or "<root>", "must be a mapping"))
        return None
    hints = typing.get_type_hints(cls)
    known = {field.name for field in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    before = len(problems)
    for key, value in data.items():
        field_path = _join(path, str(key))
        if key not in known:
            problems.append((field_path, "unknown field"))
            continue
        hint = hints[key]
        if hint is FaultRates:
            kwargs[key] = _build(FaultRates, value, field_path, problems)
        elif hint == tuple[LatencyShift, ...]:
            if not isinstance(value, list):
                problems.append((field_path, "must be a list"))
                continue
            kwargs[key] = tuple(
                _build(LatencyShift, item, f"{field_path}[{index}]", problems)
                for index, item in enumerate(value)
            )
        else:
            kwargs[key] = _scalar(value, hint, field_path, problems)
    return kwargs if len(problems) == before else None


def _build(cls: type[Any], data: object, path: str, problems: _Problems) -> Any:
    kwargs = _fields(cls, data, path, problems)
    if kwargs is None:
        return None
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required field (LatencyShift.at_s) is missing
        problems.append((path, str(exc)))
    except InvalidProfileError as exc:
        problems.append((_join(path, exc.field), exc.message))
    return None


def profiles_from_mapping(data: object, path: str = "") -> dict[str, SimProfile]:
    """Build profiles from decoded YAML/JSON; raise `ProfileConfigError` listing all faults.

    `path` prefixes every reported path (e.g. "switchboard.simulator.profiles").
    """
    problems: _Problems = []
    if not isinstance(data, Mapping):
        raise ProfileConfigError([(path or "<root>", "must be a mapping of profile names")])
    profiles: dict[str, SimProfile] = {}
    for name, fields in data.items():
        if not isinstance(name, str) or not name:
            problems.append((_join(path, str(name)), "profile names must be non-empty strings"))
            continue
        profile = _build(
            SimProfile, fields if fields is not None else {}, _join(path, name), problems
        )
        if isinstance(profile, SimProfile):
            profiles[name] = profile
    if problems:
        raise ProfileConfigError(problems)
    return profiles


def load_profiles(path: str | os.PathLike[str]) -> dict[str, SimProfile]:
    """Read a `.json` file as JSON and anything else as YAML (a superset of JSON)."""
    file = Path(path)
    text = file.read_text(encoding="utf-8")
    try:
        data: object = json.loads(text) if file.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ProfileConfigError([(str(file), f"cannot parse: {exc}")]) from exc
    return profiles_from_mapping(data)
