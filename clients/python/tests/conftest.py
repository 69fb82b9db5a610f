"""One live Switchboard for the whole run: clients/testdata/live_server.py.

It is started once per session (two processes and a config are too slow to
make per test) and stopped by closing its stdin. Tests that need the gateway
in a particular state get it from their own fixtures, never from test order.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from switchboard_client import Client

REPO = Path(__file__).resolve().parents[3]
LIVE_SERVER = REPO / "clients" / "testdata" / "live_server.py"
# Starting the simulator and the two gateways takes a few seconds;
# live_server.py gives each of the three up to 60 s.
START_TIMEOUT_S = 210.0
STOP_TIMEOUT_S = 30.0
USER = [{"role": "user", "content": "Say something."}]


@dataclass(frozen=True)
class Live:
    target: str
    api_key: str
    limited_key: str
    slow_ms: int
    models: dict[str, str]
    # The same gateway with a response cache; target has none.
    cache_target: str
    # May call InvalidateCache, on either gateway.
    admin_key: str

    @property
    def chat(self) -> str:
        return self.models["chat"]

    @property
    def slow(self) -> str:
        return self.models["slow"]

    @property
    def stream(self) -> str:
        """Tokens paced apart: a stream of several deltas."""
        return self.models["stream"]

    @property
    def alias(self) -> str:
        return self.models["alias"]


def _python() -> str:
    return os.environ.get("SWITCHBOARD_PYTHON", str(REPO / ".venv" / "bin" / "python"))


@pytest.fixture(scope="session")
def live() -> Iterator[Live]:
    proc = subprocess.Popen(
        [_python(), str(LIVE_SERVER)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    assert proc.stdout is not None
    assert proc.stdin is not None
    lines: queue.Queue[str] = queue.Queue()
    stdout = proc.stdout
    # A reader thread, so a server that never prints cannot hang the run.
    threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
    try:
        line = lines.get(timeout=START_TIMEOUT_S)
        if not line:
            raise RuntimeError(f"live_server.py exited with {proc.wait(STOP_TIMEOUT_S)}")
        facts = json.loads(line)
        yield Live(
            target=facts["target"],
            api_key=facts["api_key"],
            limited_key=facts["limited_key"],
            slow_ms=int(facts["slow_ms"]),
            models=dict(facts["models"]),
            cache_target=facts["cache_target"],
            admin_key=facts["admin_key"],
        )
    finally:
        proc.stdin.close()  # its end of the pipe closed: it stops both servers
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_TIMEOUT_S)


@pytest.fixture(scope="session")
def exhausted_key(live: Live) -> str:
    """The limited key after its one call of the window: every call now is refused.

    Spent here, once, so each test that expects RESOURCE_EXHAUSTED gets it
    whatever ran before; the key is used nowhere else.
    """
    with Client(live.target, api_key=live.limited_key, timeout=10) as client:
        assert client.complete(live.chat, USER, max_tokens=8).text
    return live.limited_key


@pytest.fixture
def client(live: Live) -> Iterator[Client]:
    with Client(live.target, api_key=live.api_key, timeout=20) as c:
        yield c


def raised_within(seconds: float, call: Callable[[], object]) -> BaseException | None:
    """What `call` raised (None if nothing), failing the test if it runs past `seconds`.

    For calls whose bug would be a long wait (a retry sleeping past its
    deadline): the call runs on a daemon thread so that such a bug fails the
    test in `seconds` instead of holding the run for as long as it sleeps.
    """
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            call()
        except BaseException as exc:  # handed to the test, which asserts on it
            outcome.append(exc)
        else:
            outcome.append(None)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    if not outcome:
        pytest.fail(f"the call was still running after {seconds} s")
    return outcome[0]
