"""`make run-replicas`: the default config served by three replicas sharing one Redis.

Starts, each on a free loopback port: a `redis-server` (from PATH; nothing saved),
the simulator once (the replicas' shared upstream, instead of one simulator inside
each), and three `switchboard serve` processes whose config is configs/default.yaml
with `switchboard.redis` pointing at that Redis. Prints where each listens, then
runs until Ctrl-C or SIGTERM, and stops them all.

    python tools/replicas.py [--replicas 3] [--config configs/default.yaml]
"""

from __future__ import annotations

import argparse
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
READY_S = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def replica_config(base: dict[str, Any], sim_url: str, redis_url: str, replicas: int) -> str:
    """`base` with every simulator deployment sent to the shared simulator, and Redis on."""
    config = dict(base)
    ours = dict(config.get("switchboard") or {})
    simulator = ours.pop("simulator", None) or {}
    old = f"http://{simulator.get('listen', '127.0.0.1:50061')}/v1"
    for entry in config.get("model_list", []):
        params = entry.get("litellm_params", {})
        if params.get("api_base") == old:
            params["api_base"] = sim_url
    ours["redis"] = {"url": redis_url, "replicas": replicas}
    config["switchboard"] = ours
    return yaml.safe_dump(config, sort_keys=False)


def spawn(args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for(proc: subprocess.Popen[str], pattern: str, what: str) -> re.Match[str]:
    """Waits for `pattern` in the process's output, which a thread echoes to stderr."""
    assert proc.stdout is not None
    found: list[re.Match[str]] = []
    ready = threading.Event()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stderr.write(line)
            if not found and (match := re.search(pattern, line)):
                found.append(match)
                ready.set()
        ready.set()

    threading.Thread(target=pump, daemon=True).start()
    if not ready.wait(READY_S) or not found:
        raise SystemExit(f"{what} did not start")
    return found[0]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--config", default=str(ROOT / "configs" / "default.yaml"))
    args = parser.parse_args(argv)
    binary = shutil.which("redis-server")
    if binary is None:
        print("redis-server is not on PATH (apt-get install redis-server)", file=sys.stderr)
        return 1
    procs: list[subprocess.Popen[str]] = []
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with tempfile.TemporaryDirectory(prefix="switchboard-replicas-") as directory:
        try:
            redis_port = free_port()
            options = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
            procs.append(spawn([binary, "--port", str(redis_port), *options, "--dir", directory]))
            wait_for(procs[-1], r"Ready to accept connections", "redis-server")
            procs.append(spawn([str(BIN / "switchboard"), "sim", "--listen", "127.0.0.1:0"]))
            sim_url = wait_for(procs[-1], r"listening on (http://\S+/v1)", "the simulator")[1]
            base = yaml.safe_load(Path(args.config).read_text(encoding="utf-8"))
            path = Path(directory) / "replica.yaml"
            redis_url = f"redis://127.0.0.1:{redis_port}/0"
            path.write_text(replica_config(base, sim_url, redis_url, args.replicas))
            print(f"redis-server on {redis_url}; simulator on {sim_url}", flush=True)
            for _ in range(args.replicas):
                listen = f"127.0.0.1:{free_port()}"
                serve = ["serve", "--config", str(path), "--listen", listen]
                procs.append(spawn([str(BIN / "switchboard"), *serve]))
                address = wait_for(procs[-1], r"serving on (\S+:\d+)", "a replica")[1]
                print(f"replica serving on {address}", flush=True)
            print(f"{args.replicas} replicas share limits, cooldowns and latency", flush=True)
            while not stop.is_set() and all(p.poll() is None for p in procs):
                stop.wait(0.5)
        finally:
            for proc in reversed(procs):
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 15
            for proc in reversed(procs):
                try:
                    proc.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    proc.kill()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
