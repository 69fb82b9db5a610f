"""Lifecycle of a simulator: start on a loopback port, serve, stop without leftovers.

`SimServer` is what tests and `make run` embed; `run` is the blocking entry point
behind `switchboard sim`. Both build the app from explicit collaborators (profiles,
RNG, clocks, sleep), so a test can make the simulator exactly reproducible.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import sys
import time
from collections.abc import Callable, Mapping
from types import TracebackType

from aiohttp import web

from .app import SimApp, SimSettings, Sleep
from .loading import load_profiles
from .profiles import SimProfile, builtin_profiles
from .stats import SimStats

RUNNER_SHUTDOWN_S = 1.0
"""aiohttp's own wait per connection at cleanup; handlers are already cancelled then."""
CLI_SHUTDOWN_GRACE_S = 5.0


class SimServer:
    """A simulated OpenAI-compatible upstream on a real TCP port.

    `port=0` picks a free port; read `port` or `base_url` after `start()`.
    `shutdown_grace_s` is how long `stop()` lets in-flight responses finish before
    cancelling them (0 for tests, which want stop to be immediate).
    """

    def __init__(
        self,
        profiles: Mapping[str, SimProfile] | None = None,
        *,
        default_profile: str = "fast",
        host: str = "127.0.0.1",
        port: int = 0,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        sleep: Sleep = asyncio.sleep,
        allow_fault_headers: bool = False,
        shutdown_grace_s: float = 0.0,
    ) -> None:
        profiles = dict(builtin_profiles() if profiles is None else profiles)
        if default_profile not in profiles:
            known = ", ".join(sorted(profiles))
            raise ValueError(f"default profile {default_profile!r} is not one of: {known}")
        self._settings = SimSettings(
            profiles=profiles,
            default_profile=default_profile,
            rng=random.Random() if rng is None else rng,
            clock=clock,
            wall_clock=wall_clock,
            sleep=sleep,
            allow_fault_headers=allow_fault_headers,
        )
        self._host = host
        self._requested_port = port
        self._shutdown_grace_s = shutdown_grace_s
        self.stats = SimStats(clock=clock)
        self._app: SimApp | None = None
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._port: int | None = None

    @property
    def profiles(self) -> Mapping[str, SimProfile]:
        return self._settings.profiles

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the simulator is not started")
        return self._port

    @property
    def url(self) -> str:
        """`http://host:port`, for the non-OpenAI routes such as `/sim/stats`."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """What OpenAI clients and litellm take as `api_base`: `http://host:port/v1`."""
        return f"{self.url}/v1"

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError("the simulator is already started")
        self._app = SimApp(self._settings, self.stats)
        runner = web.AppRunner(
            self._app.build(),
            handler_cancellation=True,
            access_log=None,
            shutdown_timeout=RUNNER_SHUTDOWN_S,
        )
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._requested_port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._site = site
        self._port = _bound_port(runner)

    async def stop(self, grace_s: float | None = None) -> None:
        """Stop listening, give in-flight responses `grace_s`, then cancel the rest."""
        runner, site, app = self._runner, self._site, self._app
        if runner is None or site is None or app is None:
            return
        self._runner = self._site = None
        grace = self._shutdown_grace_s if grace_s is None else grace_s
        await site.stop()
        if grace > 0 and self.stats.in_flight:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace):
                    await self.stats.wait_idle()
        app.cancel_in_flight()
        await runner.cleanup()

    async def __aenter__(self) -> SimServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()


def _bound_port(runner: web.AppRunner) -> int:
    address = runner.addresses[0]
    port = address[1]
    if not isinstance(port, int):
        raise RuntimeError(f"unexpected listening address {address!r}")
    return port


def parse_listen(listen: str) -> tuple[str, int]:
    """`HOST:PORT` or `[V6HOST]:PORT` to (host, port); port 0 means any free port."""
    host, sep, port_text = listen.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"listen address must be HOST:PORT, got {listen!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    port = int(port_text)
    if port > 65535:
        raise ValueError(f"port out of range in {listen!r}")
    return host, port


def run(
    listen: str,
    profile: str,
    profiles_file: str | None = None,
    *,
    allow_fault_headers: bool = False,
) -> None:
    """Serve the simulator until SIGINT or SIGTERM; the body of `switchboard sim`.

    Profiles from `profiles_file` are added to (and may replace) the built-in ones;
    `profile` answers requests whose model names no profile. Raises ValueError (or
    `ProfileConfigError`, a ValueError) before listening when the arguments are wrong.
    """
    host, port = parse_listen(listen)
    profiles = builtin_profiles()
    if profiles_file is not None:
        profiles.update(load_profiles(profiles_file))
    server = SimServer(
        profiles,
        default_profile=profile,
        host=host,
        port=port,
        allow_fault_headers=allow_fault_headers,
        shutdown_grace_s=CLI_SHUTDOWN_GRACE_S,
    )
    asyncio.run(_serve_until_signalled(server))


async def _serve_until_signalled(server: SimServer) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # not on Windows' event loop
            loop.add_signal_handler(signum, stop.set)
    async with server:
        names = ", ".join(server.profiles)
        print(
            f"switchboard sim: listening on {server.base_url} (profiles: {names})",
            file=sys.stderr,
            flush=True,
        )
        await stop.wait()
        print("switchboard sim: stopping", file=sys.stderr, flush=True)
