"""A simulated OpenAI-compatible upstream: the project's one mock, over real HTTP.

It speaks chat completions (JSON and SSE streaming) well enough for litellm's and
OpenAI's own clients, and behaves as configured per profile: time to first token,
tokens per second, output length, and faults (429 with Retry-After, 5xx, hangs,
resets, mid-stream drops, context-window and content-policy 400s, a TPM budget,
latency shifts over time). The request's `model` picks the profile.

    async with SimServer(builtin_profiles(), rng=random.Random(7)) as sim:
        litellm.acompletion(model="openai/fast", api_base=sim.base_url, api_key="sim", ...)

The profile side (profiles, faults, loading) is imported with the package; the
server side (aiohttp's server, the app, `SimStats`) only when one of its names
is first used, so the config, which reads sim profiles, costs no HTTP server.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .errors import InvalidProfileError, ProfileConfigError
from .faults import FaultKind, FaultRates
from .loading import load_profiles, profiles_from_mapping
from .profiles import LatencyShift, SimProfile, builtin_profiles

if TYPE_CHECKING:
    from .server import SimServer, parse_listen, run
    from .stats import SimStats

# Names imported on first use (PEP 562), by the submodule that defines them.
_LAZY: Mapping[str, str] = {
    "SimServer": ".server",
    "parse_listen": ".server",
    "run": ".server",
    "SimStats": ".stats",
}

__all__ = [
    "FaultKind",
    "FaultRates",
    "InvalidProfileError",
    "LatencyShift",
    "ProfileConfigError",
    "SimProfile",
    "SimServer",
    "SimStats",
    "builtin_profiles",
    "load_profiles",
    "parse_listen",
    "profiles_from_mapping",
    "run",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module, __name__), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
