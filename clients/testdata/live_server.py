"""A live Switchboard for the clients' tests: the simulator and two gateways on free ports.

Every client suite (Python, Go, TypeScript) runs against the same thing: this
script starts `switchboard sim` and twice `switchboard serve` (from the repo's
.venv) on ports the kernel picks, with fresh keys, and prints one JSON line
on stdout once all serve:

    {"target": "127.0.0.1:PORT", "api_key": "...", "limited_key": "...", ...}

It stops them all when its stdin closes (the test runner exited) or on SIGTERM.
The groups: `chat` (instant answers), `slow` (the first chunk after
`slow_ms`, for deadlines), `stream` (tokens paced apart: many deltas).
Keys: `api_key` may call anything; `limited_key` may make `limited_rpm`
calls a window, then is refused with RESOURCE_EXHAUSTED and RetryInfo;
`admin_key` may also call InvalidateCache. Any other key is UNAUTHENTICATED.

`target` has no response cache, so that equal calls stay separate calls
(priced, limited, streamed anew) and InvalidateCache is FAILED_PRECONDITION.
`cache_target` is a second gateway, the same in every other way, with an
in-process exact cache scoped to each key.

    .venv/bin/python clients/testdata/live_server.py
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import signal
import stat
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import IO

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
START_TIMEOUT_S = 60.0
SLOW_MS = 3000
LIMITED_RPM = 1
WINDOW_S = 600


def _start(args: list[str], ready: re.Pattern[str]) -> tuple[subprocess.Popen[str], str]:
    """`args` running, and the group of `ready` once a line of its output matches."""
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO
    )
    found: list[str] = []
    seen = threading.Event()

    def drain(pipe: IO[str]) -> None:
        for line in pipe:
            sys.stderr.write(line)
            if not found and (match := ready.search(line)):
                found.append(match.group(1))
                seen.set()
        seen.set()

    assert proc.stdout is not None
    threading.Thread(target=drain, args=(proc.stdout,), daemon=True).start()
    if not seen.wait(START_TIMEOUT_S) or not found:
        proc.kill()
        raise SystemExit(f"{args[1]} did not start")
    return proc, found[0]


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _config(sim_url: str, keys: dict[str, str], *, cache: bool) -> str:
    def deployment(group: str, profile: str) -> dict[str, object]:
        return {
            "model_name": group,
            "litellm_params": {
                "model": f"openai/{profile}",
                "api_base": sim_url,
                "api_key": "sim",
                "timeout": 30,
            },
            "model_info": {
                "id": f"{group}-{profile}",
                "input_cost_per_token": 0.000001,
                "output_cost_per_token": 0.000002,
            },
        }

    switchboard: dict[str, object] = {
        "providers": {"fast_path": True},
        "limits": {"window_seconds": WINDOW_S},
        "aliases": {"fast": "chat"},
        "keys": [
            {"name": "client", "sha256": _digest(keys["api_key"])},
            {"name": "limited", "sha256": _digest(keys["limited_key"]), "rpm": LIMITED_RPM},
            {"name": "admin", "sha256": _digest(keys["admin_key"]), "admin": True},
        ],
    }
    if cache:
        switchboard["cache"] = {}  # the in-process exact cache, with its defaults
    config = {
        "model_list": [
            deployment("chat", "instant"),
            deployment("slow", "sluggish"),
            # Tokens paced apart (the simulator's `fast` profile): a stream of many deltas.
            deployment("stream", "fast"),
        ],
        "router_settings": {"num_retries": 0, "max_queue_wait": 0},
        "switchboard": switchboard,
    }
    return json.dumps(config, indent=2)  # JSON is YAML


def main() -> int:
    keys = {
        "api_key": f"sk-client-{secrets.token_hex(12)}",
        "limited_key": f"sk-limited-{secrets.token_hex(12)}",
        "admin_key": f"sk-admin-{secrets.token_hex(12)}",
    }
    with tempfile.TemporaryDirectory(prefix="switchboard-clients-") as scratch:
        profiles = Path(scratch) / "profiles.yaml"
        profiles.write_text(json.dumps({"sluggish": {"ttft_ms": SLOW_MS}}))
        sim, sim_url = _start(
            [str(BIN / "switchboard"), "sim", "--listen", "127.0.0.1:0", "--profile", "instant",
             "--profiles-file", str(profiles)],
            re.compile(r"listening on (http://\S+/v1)"),
        )  # fmt: skip
        procs = [sim]
        try:
            targets = []
            for name, cache in (("switchboard", False), ("switchboard-cache", True)):
                config = Path(scratch) / f"{name}.yaml"
                config.write_text(_config(sim_url, keys, cache=cache))
                gateway, target = _start(
                    [str(BIN / "switchboard"), "serve", "--config", str(config),
                     "--listen", "127.0.0.1:0"],
                    re.compile(r"serving on (\S+:\d+)"),
                )  # fmt: skip
                procs.append(gateway)
                targets.append(target)
            facts = {
                "target": targets[0],
                "cache_target": targets[1],
                **keys,
                "limited_rpm": LIMITED_RPM,
                "slow_ms": SLOW_MS,
                "models": {"chat": "chat", "slow": "slow", "stream": "stream", "alias": "fast"},
            }
            print(json.dumps(facts), flush=True)
            stop = threading.Event()
            signal.signal(signal.SIGTERM, lambda *_: stop.set())
            mode = os.fstat(0).st_mode
            if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):  # a runner's pipe: its end is ours
                threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
            stop.wait()
        finally:
            for proc in reversed(procs):
                proc.send_signal(signal.SIGTERM)
            for proc in reversed(procs):
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
