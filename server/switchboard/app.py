"""The composition root: builds every concrete piece from the settings and serves.

Nothing else in the package constructs adapters, clocks or random sources;
each module receives its collaborators as arguments from here.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import random
import signal
import socket
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from switchboard.accounting import BudgetWindow, Dimension, Ledger
from switchboard.api.server import GatewayServer, is_loopback
from switchboard.cache.matcher import SemanticMatcher, local_model, usearch_index
from switchboard.cache.memory import MemoryStore
from switchboard.cache.service import ResponseCache
from switchboard.cache.store import CacheStore
from switchboard.config import (
    Address,
    Budget,
    CacheSettings,
    Deployment,
    RedisSettings,
    Settings,
    SimulatorSettings,
)
from switchboard.domain import Usage
from switchboard.gateway import Gateway, Sleep
from switchboard.limits import RateLimiter
from switchboard.limits.admission import Admission, caller_key, deployment_key
from switchboard.limits.budgets import BudgetGuard, budget_entities
from switchboard.providers import Provider
from switchboard.providers.base import configured_price
from switchboard.providers.openai_http import DEFAULT_API_BASE, OpenAIHttpProvider
from switchboard.providers.router import ProviderRouter
from switchboard.routing import DeploymentHealth, InFlight, Planner, Router
from switchboard.routing.strategies import build_strategy, latency_tracker_from_args
from switchboard.telemetry import (
    Recorder,
    ServerSpans,
    Telemetry,
    build_telemetry,
    plan_export,
)
from switchboard.workers import Supervisor, reserve

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from switchboard.providers.prices import PriceTable
    from switchboard.replicas import ReplicaSync
    from switchboard.routing.latency import LatencyTracker

log = logging.getLogger(__name__)

# NOT_SERVING this long before new calls are refused, unless the config says.
DEFAULT_DRAIN_S = 5.0


def build_gateway(
    settings: Settings,
    *,
    clock: Callable[[], float] = time.monotonic,
    rng: random.Random | None = None,
    provider: Provider | None = None,
    sleep: Sleep = asyncio.sleep,
    telemetry: Telemetry | None = None,
    wall: Callable[[], float] = time.time,
    ledger: Ledger | None = None,
) -> Gateway:
    """`ledger`: where spend is added up; one in process (or on `state_redis`) when None."""
    from switchboard.providers.prices import PriceTable

    # One price map for the adapters and for vision (parsed once, on first use).
    prices = PriceTable.bundled()
    if provider is None:
        provider = build_provider(settings, prices)
    rng = rng or random.Random()
    entities = budget_entities(settings)
    if ledger is None:
        ledger = build_ledger(settings, entities, wall)
    budgets = None
    if entities:
        budgets = BudgetGuard(entities, spend=ledger, wall=wall, clock=clock)
    admission = build_admission(settings, clock, rng)
    for key in settings.keys:
        if key.rpm or key.tpm:
            admission.configure(caller_key(key.name), key.rpm, key.tpm)
    load = InFlight()
    router_settings = settings.router
    latency = latency_tracker_from_args(
        router_settings.routing_strategy, router_settings.routing_strategy_args, clock
    )
    strategy = build_strategy(
        router_settings.routing_strategy,
        router_settings.routing_strategy_args,
        rng=rng,
        clock=clock,
        load=load,
        latency=latency,
        headroom=lambda d: admission.headroom(deployment_key(d.id)),
    )
    health = DeploymentHealth(
        clock,
        rng,
        allowed_fails=router_settings.allowed_fails,
        cooldown_s=router_settings.cooldown_time_s,
        fail_window_s=settings.routing.fail_window_s,
        ramp_s=settings.routing.ramp_s,
        ramp_floor=settings.routing.ramp_floor,
    )
    sync = None
    if settings.state_redis is not None:
        sync = build_replica_sync(settings, settings.state_redis, health, latency, clock, rng)
    router = Router(
        groups=settings.groups,
        strategy=strategy,
        health=health,
        load=load,
        latency=latency,
        pre_call_checks=router_settings.pre_call_checks,
        paused=None if budgets is None else budgets.deployment_paused_until,
        observer=sync,
        vision=vision_of(prices),
    )
    recorder = Recorder(telemetry or Telemetry(), clock)
    cache = None
    if settings.cache is not None:
        cache = ResponseCache(
            settings.cache,
            build_cache_store(settings.cache, clock),
            wall=wall,
            semantic=SemanticMatcher(
                load_embedder=local_model(settings.cache.semantic.model_dir),
                make_index=usearch_index(settings.cache.semantic.max_entries),
            ),
            observer=recorder,
        )
    gateway = Gateway(
        settings=settings,
        provider=provider,
        planner=Planner(router_settings),
        router=router,
        admission=admission,
        clock=clock,
        sleep=sleep,
        recorder=recorder,
        cache=cache,
        wall=wall,
        ledger=ledger,
        budgets=budgets,
        services=() if sync is None else (sync,),
    )
    recorder.observe(settings.deployments, gateway.status)
    if settings.state_redis is not None:
        from switchboard.limits.shared_admission import SharedAdmission

        assert isinstance(admission, SharedAdmission)
        stats = admission.stats
        recorder.observe_sharing(stats.decisions, lambda: stats.fallbacks)
    return gateway


def vision_of(prices: PriceTable) -> Callable[[Deployment], bool]:
    """Whether a deployment takes images: `model_info.supports_vision`, else litellm's
    model map (read without importing litellm, on the first image), else yes."""
    known: dict[str, bool] = {}

    def vision(deployment: Deployment) -> bool:
        if deployment.supports_vision is not None:
            return deployment.supports_vision
        found = known.get(deployment.id)
        if found is None:
            entry = prices.lookup(deployment.model)
            found = (
                True if entry is None or entry.supports_vision is None else entry.supports_vision
            )
            known[deployment.id] = found
        return found

    return vision


def build_replica_sync(
    settings: Settings,
    options: RedisSettings,
    health: DeploymentHealth,
    latency: LatencyTracker,
    clock: Callable[[], float],
    rng: random.Random,
) -> ReplicaSync:
    """Cooldowns and latency samples shared with the other replicas on `options`."""
    from switchboard.replicas import ReplicaSync

    return ReplicaSync(
        redis_client(options),
        prefix=f"{options.prefix}replicas:",
        replica_id=f"{socket.gethostname()}:{os.getpid()}",
        health=health,
        latency=latency,
        deployments=[d.id for d in settings.deployments],
        clock=clock,
        rng=rng,
        # cooldown_time has no upper bound: a failure cooldown must not be cut short elsewhere.
        max_cooldown_s=max(settings.routing.max_cooldown_s, settings.router.cooldown_time_s),
        timeout_s=options.timeout_s,
        owns_redis=True,
    )


def build_admission(
    settings: Settings, clock: Callable[[], float], rng: random.Random
) -> Admission:
    """Limits in this process, or shared by every replica through `state_redis`."""
    local = RateLimiter(window_seconds=settings.limits.window_s)
    options = settings.state_redis
    if options is None:
        return Admission(local, settings.deployments, clock)
    from switchboard.limits.shared import SharedLimiter
    from switchboard.limits.shared_admission import SharedAdmission

    shared = SharedLimiter(
        # A resent acquire that had run would be counted twice.
        redis_client(options, retry_timeouts=False),
        window_seconds=settings.limits.window_s,
        prefix=f"{options.prefix}limits:",
        timeout_s=options.timeout_s,
    )
    return SharedAdmission(
        local,
        shared,
        settings.deployments,
        clock,
        local_share=options.local_share,
        replica_id=f"{socket.gethostname()}:{os.getpid()}:{rng.getrandbits(32):08x}",
        rng=rng,
    )


# A budget without a duration never resets: its window is the longest one there is.
ALL_TIME = "1200mo"


def build_ledger(
    settings: Settings, budgets: Mapping[tuple[Dimension, str], Budget], wall: Callable[[], float]
) -> Ledger:
    """The spend ledger, with a window per budget; shared through `state_redis` when set."""
    windows = {entity: BudgetWindow(b.duration or ALL_TIME) for entity, b in budgets.items()}
    redis = settings.state_redis
    return Ledger(
        windows=windows,
        redis=None if redis is None else redis_client(redis),
        prefix=f"{redis.prefix if redis is not None else ''}accounting:",
        wall=wall,
        owns_redis=True,
    )


def redis_client(options: RedisSettings, *, retry_timeouts: bool = True) -> Redis:
    """A client that gives up at once: a slow Redis is a miss (cache) or a later flush (spend).

    A command that failed on its connection is sent once more at once, on a
    new one (a pooled connection to a server that restarted fails that way).
    `retry_timeouts` False: not one that timed out, which may have run.
    """
    from redis.asyncio import Redis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import ConnectionError, TimeoutError

    timeout = options.timeout_s
    errors = (ConnectionError, TimeoutError) if retry_timeouts else (ConnectionError,)
    retry = Retry(NoBackoff(), 1, supported_errors=errors)
    if options.url:
        return Redis.from_url(
            options.url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=retry
        )
    return Redis(
        host=options.host,
        port=options.port,
        password=options.password,
        db=options.db,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=retry,
    )


def build_cache_store(settings: CacheSettings, clock: Callable[[], float]) -> CacheStore:
    if settings.backend == "redis":
        from switchboard.cache.redis_store import RedisStore

        return RedisStore(redis_client(settings.redis), prefix=settings.redis.prefix)
    return MemoryStore(max_entries=settings.max_entries, max_bytes=settings.max_bytes, clock=clock)


def build_provider(settings: Settings, prices: PriceTable) -> Provider:
    """The adapters the deployments need: litellm is imported only if one of them needs it.

    The prompt estimator and the price table come from litellm's package data,
    read without importing litellm (seconds of start-up and over 100 MB), so a
    config whose deployments all take the fast path never loads it.
    """
    from switchboard.providers.tokens import PromptEstimator

    estimator = PromptEstimator.bundled()
    for deployment in settings.deployments:
        if configured_price(deployment, Usage()) is None:
            # Resolved now, so the map is parsed at start rather than on a call.
            prices.lookup(deployment.model)
    fast: OpenAIHttpProvider | None = None
    served: list[str] = []
    if settings.providers.fast_path:
        # The fast path reads the environment litellm would read for `openai/...`.
        fast = OpenAIHttpProvider(
            fallback_price=lambda d, usage: prices.price(d.model, usage) or 0.0,
            estimate=estimator.prompt_tokens,
            default_api_base=os.environ.get("OPENAI_BASE_URL")
            or os.environ.get("OPENAI_API_BASE")
            or DEFAULT_API_BASE,
            default_api_key=os.environ.get("OPENAI_API_KEY"),
        )
        served = [d.id for d in settings.deployments if fast.serves(d)]
        log.info("provider fast path: %s", ", ".join(served) or "no deployment is eligible")
    general: Provider | None = None
    if fast is None or len(served) < len(settings.deployments):
        # Imported here, once per process, because importing litellm takes seconds.
        from switchboard.providers.litellm_adapter import LitellmProvider

        general = LitellmProvider(
            drop_params=settings.router.drop_params, estimator=estimator, prices=prices
        )
    if fast is None:
        assert general is not None
        return general
    return ProviderRouter(fast=fast, general=general)


def announce_keys(settings: Settings) -> None:
    """Say at start who may call: an open gateway should never be a surprise."""
    if settings.keys:
        log.info("caller keys: %s", ", ".join(k.name for k in settings.keys))
    else:
        log.warning("no caller keys configured: every caller is admitted")


@contextlib.asynccontextmanager
async def simulator(sim: SimulatorSettings | None) -> AsyncIterator[None]:
    """Run the built-in simulator in this process when the config asks for it."""
    if sim is None:
        yield
        return
    from switchboard.sim import SimServer

    server = SimServer(
        dict(sim.profiles),
        default_profile=sim.default_profile,
        host=sim.listen.host,
        port=sim.listen.port,
        rng=random.Random(sim.seed),
    )
    await server.start()
    log.info("simulator serving on %s", server.base_url)
    try:
        yield
    finally:
        await server.stop()


def _announce(settings: Settings) -> None:
    for path in settings.ignored:
        log.warning("config: %s is not applied by Switchboard", path)
    for warning in settings.warnings:
        log.warning("config: %s", warning)
    announce_keys(settings)


def drain_seconds(settings: Settings, listen: Address) -> float:
    """The configured drain, else none on loopback (no load balancer there) and 5 s elsewhere."""
    if settings.drain_s is not None:
        return settings.drain_s
    return 0.0 if is_loopback(listen.host) else DEFAULT_DRAIN_S


def _stop_on_signals(stop: asyncio.Event, hurry: asyncio.Event | None = None) -> Callable[[], None]:
    """SIGTERM and SIGINT set `stop`, and once it is set, `hurry`; returns the undo."""
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if stop.is_set() and hurry is not None:
            hurry.set()
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal)

    def undo() -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)

    return undo


async def supervise(
    settings: Settings,
    *,
    count: int,
    listen: Address,
    command: Callable[[int, Address], Sequence[str]],
    on_ready: Callable[[int], None] | None = None,
) -> int:
    """Serve with `count` worker processes on one port (workers.py); the exit code."""
    _announce(settings)
    stop, hurry = asyncio.Event(), asyncio.Event()
    undo = _stop_on_signals(stop, hurry)
    held = reserve(listen)
    try:
        address = Address(listen.host, held.getsockname()[1])
        if settings.state_redis is None:
            log.info(
                "%d workers on %s:%d; limits are not shared between processes: each worker "
                "enforces 1/%d of every deployment and key rpm/tpm",
                count, address.host, address.port, count,
            )  # fmt: skip
        else:
            log.info(
                "%d workers on %s:%d; limits are shared through Redis: every worker enforces "
                "the full rpm/tpm, and %.3g of them while Redis is unreachable",
                count, address.host, address.port, settings.state_redis.local_share / count,
            )  # fmt: skip
        async with simulator(settings.simulator):
            # Each worker drains, then finishes its calls: it may take both.
            supervisor = Supervisor(
                command=command,
                count=count,
                address=address,
                grace_s=drain_seconds(settings, address) + settings.shutdown_grace_s,
            )
            await supervisor.start()
            log.info("serving switchboard.v1.Gateway on %s:%d", address.host, address.port)
            if on_ready is not None:
                on_ready(address.port)
            code = await supervisor.run(stop, hurry)
    finally:
        held.close()
        undo()
    log.info("stopped")
    return code


async def serve(
    settings: Settings,
    *,
    listen: Address | None = None,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[int], None] | None = None,
    telemetry: Telemetry | None = None,
    worker: tuple[int, int] | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT (or `stop` is set), then shut down gracefully.

    Shutdown: health NOT_SERVING, the drain (calls still served), then new
    calls refused and those in flight given the grace period. A second
    signal skips what is left of both.

    Telemetry comes from the config and the OTEL_* variables unless given.
    `worker` (index, count): this process is one of a supervisor's workers,
    sharing the port; its settings already hold its share of the limits.
    """
    if worker is None:
        _announce(settings)
    stop = stop or asyncio.Event()
    hurry = asyncio.Event()
    undo = _stop_on_signals(stop, hurry)
    clock = time.monotonic
    if telemetry is None:
        telemetry = build_telemetry(plan_export(settings.telemetry, os.environ))
    if telemetry.enabled:
        log.info("telemetry on (content capture %s)", "on" if telemetry.capture_content else "off")
    async with simulator(settings.simulator):
        gateway = build_gateway(settings, clock=clock, telemetry=telemetry)
        await gateway.start()
        if settings.state_redis is not None:
            log.info("spend and call statistics shared through Redis")
        cache = gateway.cache
        if cache is not None and settings.cache is not None:
            log.info(
                "response cache on: %s, scope %s, ttl %gs",
                cache.store_backend,
                settings.cache.scope,
                settings.cache.ttl_s,
            )
            if settings.cache.semantic.configured:
                # Loaded before the port opens: the first call does not pay for it.
                await cache.warm()
        server = GatewayServer(
            gateway,
            clock=clock,
            max_concurrent_calls=settings.max_concurrent_calls,
            transport=settings.transport,
            interceptors=[ServerSpans(telemetry.tracer)] if telemetry.tracer else [],
            reuse_port=worker is not None,
        )
        # Everything built so far (litellm's tables above all) lives as long as the
        # process: moved out of the collector's reach, full collections stop
        # walking millions of objects that can never be garbage.
        gc.freeze()
        port = await server.start(listen or settings.listen)
        address = listen or settings.listen
        if worker is None:
            log.info("serving switchboard.v1.Gateway on %s:%d", address.host, port)
        else:
            log.info("worker %d/%d serving on %s:%d", worker[0], worker[1], address.host, port)
        if on_ready is not None:
            on_ready(port)
        await stop.wait()
        drain_s = drain_seconds(settings, address)
        log.info(
            "shutting down: health NOT_SERVING, drain %.1fs, then finishing calls in flight "
            "(grace %.1fs); a second signal skips both",
            drain_s,
            settings.shutdown_grace_s,
        )
        await server.stop(settings.shutdown_grace_s, drain_s=drain_s, hurry=hurry)
        await gateway.aclose()
    # Flushes the spans and metrics of the last calls before the process ends.
    await asyncio.to_thread(telemetry.shutdown)
    undo()
    log.info("stopped")
