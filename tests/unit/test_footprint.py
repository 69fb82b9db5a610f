"""What a fast-path-only gateway imports: no litellm, no simulator server, no network.

Each check runs in a fresh interpreter, since this test process has long
imported everything. The child refuses every DNS lookup and connect through
an audit hook, and runs without the environment variables litellm sets or
needs, so reading the tokenizer and prices must be offline on its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

HEAVY = ("litellm", "aiohttp", "aiohttp.web", "switchboard.sim.server", "switchboard.sim.app")

PRELUDE = (
    textwrap.dedent(
        """
    import json, os, sys

    def refuse_network(event, args):
        if event in ("socket.connect", "socket.getaddrinfo"):
            raise RuntimeError(f"network use: {event} {args!r}")

    sys.addaudithook(refuse_network)

    def loaded():
        return sorted(m for m in HEAVY if m in sys.modules)
    """
    )
    + f"HEAVY = {HEAVY!r}\n"
)

CONFIG = """
import switchboard.config
after_config = loaded()
from switchboard.sim import ProfileConfigError, SimProfile, builtin_profiles
after_profiles = loaded()
from switchboard.sim import SimServer
print(json.dumps({"config": after_config, "profiles": after_profiles, "server": loaded(),
                  "sim_server": SimServer.__name__}))
"""

PROVIDER_DATA = """
from switchboard.domain import CompletionRequest, Message, Role, Usage
from switchboard.providers.prices import PriceTable
from switchboard.providers.tokens import PromptEstimator

request = CompletionRequest(model="chat", messages=(Message(Role.USER, "Say hi"),))
tokens = PromptEstimator.bundled().prompt_tokens(request)
price = PriceTable.bundled().price("openai/gpt-4o", Usage(1000, 100))
print(json.dumps({"tokens": tokens, "price": price, "loaded": loaded(),
                  "env": sorted(k for k in os.environ if "TIKTOKEN" in k or "LITELLM" in k)}))
"""


def run_child(body: str) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if "TIKTOKEN" not in k and "LITELLM" not in k}
    result = subprocess.run(
        [sys.executable, "-c", PRELUDE + body],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    report: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return report


def test_the_config_imports_no_simulator_server() -> None:
    report = run_child(CONFIG)
    assert report["config"] == []
    assert report["profiles"] == []
    # The server side still loads on first use of its names.
    assert report["sim_server"] == "SimServer"
    assert "switchboard.sim.server" in report["server"]  # type: ignore[operator]


def test_tokenizer_and_prices_need_neither_litellm_nor_the_network() -> None:
    report = run_child(PROVIDER_DATA)
    assert report["loaded"] == []
    assert report["env"] == []  # nothing set process-wide on the way
    assert report["tokens"] == 2 + 3 + 1 + 3  # "Say hi", one message, its role, reply priming
    assert isinstance(report["price"], float)
    assert report["price"] > 0


GATEWAY = """
from switchboard.app import build_gateway
from switchboard.config import parse_settings

deployment = (
    "  - model_name: chat\\n"
    "    litellm_params: {{model: {model}, api_base: 'http://127.0.0.1:9/v1', api_key: k}}\\n"
)
config = "model_list:\\n" + "".join(deployment.format(model=m) for m in MODELS)
config += "switchboard:\\n  providers: {fast_path: true}\\n"
gateway = build_gateway(parse_settings(config, source="t", env={}))
print(json.dumps({"litellm": "litellm" in sys.modules, "loaded": loaded()}))
"""


def test_a_fast_path_only_gateway_never_imports_litellm() -> None:
    report = run_child("MODELS = ['openai/a', 'openai/b']\n" + GATEWAY)
    assert report == {"litellm": False, "loaded": []}


def test_one_deployment_that_needs_litellm_brings_it_in() -> None:
    report = run_child("MODELS = ['openai/a', 'groq/llama-3.3-70b-versatile']\n" + GATEWAY)
    assert report["litellm"] is True
