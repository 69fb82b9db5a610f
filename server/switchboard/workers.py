"""Several server processes on one port: a supervisor and its workers.

One Python process serves one core's worth of calls. `switchboard serve
--workers N` (or `switchboard.server.workers`) starts N worker processes
that bind the same address with SO_REUSEPORT, so the kernel spreads
connections among them, and supervises them:

- The supervisor binds the address first (SO_REUSEPORT, not listening) and
  holds it for its whole life, so port 0 resolves once for every worker and
  no other program can take the port between a worker's restart and bind.
- It runs the in-process simulator, when the config has one, so there is
  one simulator however many workers call it.
- Budgets are shared through `switchboard.redis` when it is configured;
  without it each worker may spend 1/N of every key, team and provider budget.
- Limits are shared through `switchboard.redis` when it is configured: every
  worker enforces the full limits, exactly, and falls back to 1/N of its
  `local_share` while Redis is unreachable. Without Redis, worker i of N
  enforces its share of every deployment and key limit: the limit divided
  by N, the remainder spread over the first workers. Together they never
  admit more than the limit; each admits only its share, so traffic that
  the kernel spreads unevenly leaves some headroom unused.
- It prints the ready line when every worker is serving; SIGTERM or SIGINT
  stops every worker gracefully (each finishes its calls in flight within
  the grace period) before the supervisor exits. A worker that dies is
  started again; one that keeps dying stops the whole server (exit 1).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
import socket
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from switchboard.config import Address, Budget, Settings

log = logging.getLogger(__name__)

READY = "switchboard: serving on"
# A worker that dies more often than this within RESTART_WINDOW_S stops the server.
MAX_RESTARTS = 5
RESTART_WINDOW_S = 60.0
# Beyond the grace period, how long a worker may take to exit before it is killed.
EXIT_MARGIN_S = 10.0


class WorkerError(Exception):
    """The workers could not be started or kept running."""


def share(limit: int | None, index: int, count: int) -> int | None:
    """Worker `index`'s share of `limit`: the shares of all `count` workers sum to it."""
    if limit is None:
        return None
    return limit // count + (1 if index < limit % count else 0)


def too_small(settings: Settings, count: int) -> list[str]:
    """The limits that cannot give each of `count` workers at least one."""
    found = [
        f"model_list[{d.id}].{name} {value}"
        for d in settings.deployments
        for name, value in (("rpm", d.rpm), ("tpm", d.tpm))
        if value is not None and value < count
    ]
    found += [
        f"switchboard.keys[{k.name}].{name} {value}"
        for k in settings.keys
        for name, value in (("rpm", k.rpm), ("tpm", k.tpm))
        if value is not None and value < count
    ]
    return found


def problems(settings: Settings, count: int) -> list[str]:
    """Why `settings` cannot be served by `count` workers; empty when it can."""
    if count == 1:
        return []
    found = []
    if settings.state_redis is None:
        found = [
            f"{limit}: below {count}, so some worker's share of it would be 0"
            for limit in too_small(settings, count)
        ]
    if settings.telemetry.prometheus_listen is not None:
        found.append(
            "switchboard.telemetry.prometheus_listen: one scrape port cannot serve several "
            "workers; export with OTLP instead"
        )
    return found


def worker_settings(settings: Settings, index: int, count: int) -> Settings:
    """The settings worker `index` of `count` serves: its share of every limit, no simulator.

    With Redis every worker enforces the full limits, shared; its share only
    applies while Redis is unreachable, as `local_share` divided among them.
    """
    redis = settings.state_redis
    if redis is not None:
        return dataclasses.replace(
            settings,
            simulator=None,
            workers=1,
            state_redis=dataclasses.replace(redis, local_share=redis.local_share / count),
        )
    deployments = tuple(
        dataclasses.replace(d, rpm=share(d.rpm, index, count), tpm=share(d.tpm, index, count))
        for d in settings.deployments
    )
    by_id = {d.id: d for d in deployments}
    groups = {name: tuple(by_id[d.id] for d in deps) for name, deps in settings.groups.items()}
    keys = tuple(
        dataclasses.replace(
            k,
            rpm=share(k.rpm, index, count),
            tpm=share(k.tpm, index, count),
            budget=None if k.budget is None else _budget_share(k.budget, count, settings),
        )
        for k in settings.keys
    )
    return dataclasses.replace(
        settings,
        deployments=deployments,
        groups=groups,
        keys=keys,
        simulator=None,
        workers=1,
        teams=_budget_shares(settings.teams, count, settings),
        provider_budgets=_budget_shares(settings.provider_budgets, count, settings),
    )


def _budget_share(budget: Budget, count: int, settings: Settings) -> Budget:
    """Without Redis each worker's spend is its own: it may spend 1/N of each budget."""
    if settings.state_redis is not None:
        return budget
    return dataclasses.replace(budget, max_usd=budget.max_usd / count)


def _budget_shares(
    budgets: Mapping[str, Budget], count: int, settings: Settings
) -> dict[str, Budget]:
    return {name: _budget_share(b, count, settings) for name, b in budgets.items()}


def parse_worker(text: str) -> tuple[int, int]:
    """`INDEX/COUNT` as the supervisor passes it to a worker."""
    index, _, count = text.partition("/")
    if index.isdigit() and count.isdigit() and int(index) < int(count):
        return int(index), int(count)
    raise ValueError(f"expected INDEX/COUNT with 0 <= INDEX < COUNT, got {text!r}")


def reserve(address: Address) -> socket.socket:
    """Bind `address` with SO_REUSEPORT without listening: the workers' port, held."""
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((address.host, address.port))
    except OSError:
        sock.close()
        raise
    return sock


class Supervisor:
    """Starts, watches and stops the worker processes."""

    def __init__(
        self,
        *,
        command: Callable[[int, Address], Sequence[str]],
        count: int,
        address: Address,
        grace_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._command = command
        self._count = count
        self._address = address
        self._grace_s = grace_s
        self._clock = clock
        self._procs: dict[int, asyncio.subprocess.Process] = {}
        self._restarts: list[float] = []
        self._stopping = False

    async def start(self) -> None:
        """Start every worker; returns when all of them serve."""
        started = await asyncio.gather(
            *(self._spawn(i) for i in range(self._count)), return_exceptions=True
        )
        failed = [r for r in started if isinstance(r, BaseException)]
        if failed:
            await self.stop()
            raise WorkerError(str(failed[0]))

    async def run(self, stop: asyncio.Event, hurry: asyncio.Event | None = None) -> int:
        """Keep the workers running until `stop` is set; the exit code of the server.

        `hurry` (a second signal) is passed on to the workers as their own second
        SIGTERM, so they cut their drain and grace short too.
        """
        code = 0
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                waits = {
                    asyncio.ensure_future(proc.wait()): index for index, proc in self._procs.items()
                }
                done, _ = await asyncio.wait(
                    {stopping, *waits}, return_when=asyncio.FIRST_COMPLETED
                )
                for task in waits:
                    task.cancel()
                if stopping in done:
                    break
                for task in done:
                    index = waits[task]
                    log.error("worker %d exited with %s", index, task.result())
                    if not self._may_restart():
                        log.error("workers keep dying: stopping the server")
                        code = 1
                        stop.set()
                        break
                    try:
                        await self._spawn(index)
                    except WorkerError as exc:
                        log.error("worker %d could not be restarted: %s", index, exc)
                        code = 1
                        stop.set()
                        break
        finally:
            stopping.cancel()
            await self.stop(hurry)
        return code

    async def stop(self, hurry: asyncio.Event | None = None) -> None:
        """SIGTERM every worker, again when `hurry` is set; kill those left after the grace."""
        self._stopping = True
        self._signal_all()
        again = asyncio.ensure_future(hurry.wait()) if hurry is not None else None
        if again is not None:
            again.add_done_callback(self._hurried)
        try:
            await self._reap()
        finally:
            if again is not None:
                again.cancel()

    def _hurried(self, waited: asyncio.Future[Any]) -> None:
        # SIGINT, not a second SIGTERM: two signals of one kind that arrive
        # together are delivered as one, and the worker would never hurry.
        if not waited.cancelled():
            self._signal_all(signal.SIGINT)

    def _signal_all(self, signum: signal.Signals = signal.SIGTERM) -> None:
        for proc in self._procs.values():
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signum)

    async def _reap(self) -> None:
        for index, proc in self._procs.items():
            try:
                await asyncio.wait_for(proc.wait(), self._grace_s + EXIT_MARGIN_S)
            except TimeoutError:
                log.error("worker %d did not stop in time: killed", index)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()

    def _may_restart(self) -> bool:
        now = self._clock()
        self._restarts = [t for t in self._restarts if now - t < RESTART_WINDOW_S]
        self._restarts.append(now)
        return len(self._restarts) <= MAX_RESTARTS

    async def _spawn(self, index: int) -> None:
        args = self._command(index, self._address)
        # A session of its own: a terminal's Ctrl-C reaches the supervisor only, which
        # then stops the workers in order instead of racing them.
        proc = await asyncio.create_subprocess_exec(
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=None,
            stdin=asyncio.subprocess.DEVNULL,
            start_new_session=True,
        )
        self._procs[index] = proc
        assert proc.stdout is not None
        while True:
            line = await proc.stdout.readline()
            if not line:
                code = await proc.wait()
                raise WorkerError(f"worker {index} exited with {code} before serving")
            if line.decode(errors="replace").startswith(READY):
                break
        # Nothing else is expected on a worker's stdout; keep the pipe drained.
        asyncio.get_running_loop().create_task(_drain(proc.stdout))


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.readline():
        pass


def worker_command(
    config_path: str, count: int, log_level: str
) -> Callable[[int, Address], list[str]]:
    """How the supervisor starts worker `index`: this interpreter, the same config."""

    def command(index: int, address: Address) -> list[str]:
        host = f"[{address.host}]" if ":" in address.host else address.host
        return [
            sys.executable, "-m", "switchboard.cli", "--log-level", log_level,
            "serve", "--config", config_path, "--listen", f"{host}:{address.port}",
            "--worker", f"{index}/{count}",
        ]  # fmt: skip

    return command
