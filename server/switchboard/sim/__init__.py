"""A simulated OpenAI-compatible upstream: the project's one mock, over real HTTP.

It speaks chat completions (JSON and SSE streaming) well enough for litellm's and
OpenAI's own clients, and behaves as configured per profile: time to first token,
tokens per second, output length, and faults (429 with Retry-After, 5xx, hangs,
resets, mid-stream drops, context-window and content-policy 400s, a TPM budget,
latency shifts over time). The request's `model` picks the profile.

    async with SimServer(builtin_profiles(), rng=random.Random(7)) as sim:
        litellm.acompletion(model="openai/fast", api_base=sim.base_url, api_key="sim", ...)
"""

from .errors import InvalidProfileError, ProfileConfigError
from .faults import FaultKind, FaultRates
from .loading import load_profiles, profiles_from_mapping
from .profiles import LatencyShift, SimProfile, builtin_profiles
from .server import SimServer, parse_listen, run
from .stats import SimStats

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
