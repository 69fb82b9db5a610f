"""A real redis-server on a loopback port, for tests of what runs against Redis.

redis-server cannot bind port 0 and say which port it got, so a free port
is picked first and the start retried on the rare race for it. Readiness
is a PING answered, polled against a deadline.

Fixtures (registered in tests/conftest.py):

- `redis_server`: one server for the session;
- `redis_url`: that server's URL, emptied before each test;
- `redis_server_factory`: servers of the test's own, to stop at will;
- `restart_on_same_port`: a stopped server's successor on its port.

Without redis-server on PATH the tests using them are skipped, except on
CI (`CI=true`), where a missing server must not pass unnoticed.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
_PORT_ATTEMPTS = 5


class RedisServer:
    def __init__(self, binary: str, directory: Path) -> None:
        """Starts the server and returns once it answers PING."""
        self.directory = directory
        for _ in range(_PORT_ATTEMPTS):
            self.port = _free_port()
            self._log = directory / f"redis-{self.port}.log"
            with self._log.open("wb") as log:
                self.popen = subprocess.Popen(
                    [
                        binary,
                        "--port", str(self.port),
                        "--bind", "127.0.0.1",
                        "--save", "",
                        "--appendonly", "no",
                        "--dir", str(directory),
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )  # fmt: skip
            # A test that fails between start and stop must not leave a server behind.
            atexit.register(self.stop)
            if self._wait_ready():
                return
            self.stop()
        raise RuntimeError(f"redis-server did not start:\n{self.output()}")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5.0)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()

    def output(self) -> str:
        return self._log.read_text(errors="replace")

    def _wait_ready(self) -> bool:
        """False when the server exited first (most likely: the port was taken meanwhile)."""
        deadline = time.monotonic() + START_TIMEOUT_S
        client = redis.Redis(
            host="127.0.0.1", port=self.port, socket_connect_timeout=0.5, socket_timeout=0.5
        )
        try:
            while time.monotonic() < deadline:
                if self.popen.poll() is not None:
                    return False
                try:
                    if client.ping():
                        return True
                except redis.exceptions.RedisError:
                    time.sleep(0.01)  # poll interval, bounded by the deadline
        finally:
            client.close()
        return False


def redis_server_binary() -> str:
    """The redis-server to run; skips the test, or fails it on CI, when there is none."""
    binary = shutil.which("redis-server")
    if binary is None:
        message = "redis-server is not on PATH (install it, e.g. apt-get install redis-server)"
        if os.environ.get("CI") == "true":
            pytest.fail(message + "; CI must run the Redis tests", pytrace=False)
        pytest.skip(message)
    return binary


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(redis_server_binary(), tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session's server, empty: tests see only their own keys."""
    with redis_server.client() as client:
        client.flushall()
    return redis_server.url


@pytest.fixture
def redis_server_factory(tmp_path: Path) -> Iterator[Callable[[], RedisServer]]:
    """Starts servers of the test's own (to stop mid-test); all are stopped after it."""
    servers: list[RedisServer] = []

    def start() -> RedisServer:
        server = RedisServer(redis_server_binary(), tmp_path)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def restart_on_same_port(
    redis_server_factory: Callable[[], RedisServer], monkeypatch: pytest.MonkeyPatch
) -> Callable[[RedisServer], RedisServer]:
    """Starts a server where a stopped one was: same port, same directory (its dump)."""

    def restart(stopped: RedisServer) -> RedisServer:
        monkeypatch.setattr(sys.modules[__name__], "_free_port", lambda: stopped.port)
        return redis_server_factory()

    return restart
