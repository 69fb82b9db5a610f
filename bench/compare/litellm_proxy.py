"""LiteLLM's own proxy as a system under test, in a venv of its own.

The proxy needs packages Switchboard does not (fastapi, uvicorn and many more),
so it gets its own venv, bench/.venv-litellm, made on first use from the
pinned bench/compare/litellm-proxy.lock (`pip install --no-deps`: a fresh
machine gets exactly what was measured) and remade when the lock changes.

It is run as shipped: its default single uvicorn worker, no database, no
master key (the proxy refuses to start without one unless told it may; every
request is then accepted as it is by a Switchboard without caller keys), and
the model cost map read from the package rather than fetched from the network.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.integration.procs import Proc, free_port

HERE = Path(__file__).resolve().parent
LOCK = HERE / "litellm-proxy.lock"
VENV = HERE.parent / ".venv-litellm"
STAMP = VENV / "lock.sha256"
READY = re.compile(r"Uvicorn running on (http://\S+)")
ENV = {"LITELLM_LOCAL_MODEL_COST_MAP": "True"}


def ensure_venv(log: Path) -> Path:
    """The proxy's `litellm` command, installing the venv first when missing or stale."""
    digest = hashlib.sha256(LOCK.read_bytes()).hexdigest()
    command = VENV / "bin" / "litellm"
    if command.exists() and STAMP.exists() and STAMP.read_text().strip() == digest:
        return command
    print(f"installing LiteLLM's proxy into {VENV} (first use; log: {log})", flush=True)
    shutil.rmtree(VENV, ignore_errors=True)
    with log.open("w") as out:
        for args in (
            [sys.executable, "-m", "venv", str(VENV)],
            [str(VENV / "bin" / "pip"), "install", "--quiet", "--no-deps", "-r", str(LOCK)],
        ):
            subprocess.run(args, stdout=out, stderr=subprocess.STDOUT, check=True)
    STAMP.write_text(digest + "\n")
    return command


def config(deployments: list[dict[str, object]]) -> dict[str, object]:
    """The same deployments as the gateway's, in the proxy's format."""
    return {
        "model_list": deployments,
        "general_settings": {"dangerously_permit_weak_or_unset_master_key": True},
    }


def start(command: Path, deployments: list[dict[str, object]], directory: Path) -> tuple[Proc, int]:
    path = directory / "litellm.yaml"
    path.write_text(yaml.safe_dump(config(deployments)))
    port = free_port()
    args = [str(command), "--config", str(path), "--host", "127.0.0.1", "--port", str(port)]
    return Proc(args, ready=READY, stream="stderr", env=ENV), port
