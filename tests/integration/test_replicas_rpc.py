"""Several gateway processes on one real redis-server: limits exact across all of them.

The witness is the simulator: it records when each request arrived and the
tokens of each answer, so every window is counted as the provider saw it.
Its clock sees a request a transport delay after the gateway admitted it,
and those delays differ from call to call; the windows counted here are
`SLACK_S` shorter than the limiter's (5 s) so that jitter is not mistaken for
over-admission (a limit enforced per replica instead of shared would exceed
them threefold).
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import grpc
import pytest
import redis.asyncio

from switchboard.api.pb import gateway_pb2 as pb
from switchboard.api.pb import gateway_pb2_grpc as pb_grpc
from switchboard.limits.shared import SharedLimiter
from switchboard.sim import FaultRates, SimProfile, SimServer
from tests.redis_server import RedisServer

from .procs import Proc, gateway_config, start_gateway

pytestmark = pytest.mark.integration

WINDOW_S = 5.0
SLACK_S = 0.5
RPM = 30
# Every call is 17 tokens: a 9-token prompt (estimated exactly) and 8 out.
CALL_TOKENS = 17
TPM = RPM * CALL_TOKENS
SAY_HI = pb.CompleteRequest(
    model="capped", messages=[pb.Message(role=pb.ROLE_USER, content="Say hi")], max_tokens=8
)
UNREACHABLE = re.compile(r"shared limits: Redis is unreachable")


@pytest.fixture
async def sim() -> AsyncIterator[SimServer]:
    profiles = {"capped": SimProfile(min_output_tokens=8, max_output_tokens=8)}
    async with SimServer(profiles, default_profile="capped", rng=random.Random(5)) as server:
        yield server


def config(
    sim: SimServer, redis_url: str, *, replicas: int, window_s: float = WINDOW_S, **limits: int
) -> dict[str, object]:
    built = gateway_config(
        sim.base_url,
        {"capped": ["capped"]},
        router_settings={"max_queue_wait": 15, "num_retries": 0},
        switchboard={
            # A generous bound: on a busy 2-core machine a slow reply is not an outage.
            "redis": {"url": redis_url, "replicas": replicas, "timeout_seconds": 1.0},
            "limits": {"window_seconds": window_s},
            "server": {"drain_seconds": 0},
        },
        provider_path="fast-path",
    )
    built["model_list"][0]["litellm_params"].update(limits)  # type: ignore[index]
    return built


async def start_all(
    configs: Sequence[dict[str, object]], tmp_path: Path, args: Sequence[str] = ()
) -> list[tuple[Proc, str]]:
    async def one(i: int, cfg: dict[str, object]) -> tuple[Proc, str]:
        directory = tmp_path / f"replica-{i}"
        directory.mkdir()
        return await asyncio.to_thread(start_gateway, cfg, directory, None, args)

    return list(await asyncio.gather(*(one(i, c) for i, c in enumerate(configs))))


async def drive(
    addresses: Sequence[str],
    calls: int,
    *,
    fresh: bool = False,
    request: pb.CompleteRequest = SAY_HI,
) -> list[str]:
    """`calls` concurrent Completes spread over the addresses; their status names."""
    channels = [grpc.aio.insecure_channel(a) for a in addresses]

    async def call(i: int) -> str:
        channel = grpc.aio.insecure_channel(addresses[i % len(addresses)]) if fresh else None
        stub = pb_grpc.GatewayStub(channel or channels[i % len(channels)])
        try:
            await stub.Complete(request, timeout=40)
            return "OK"
        except grpc.aio.AioRpcError as err:
            return f"{err.code().name}: {err.details()}"
        finally:
            if channel is not None:
                await channel.close()

    try:
        return list(await asyncio.gather(*(call(i) for i in range(calls))))
    finally:
        for channel in channels:
            await channel.close()


def busiest_window(times: Sequence[float], weights: Sequence[int], span: float) -> int:
    """The largest total weight of arrivals inside any interval [t, t + span)."""
    order = sorted(range(len(times)), key=lambda i: times[i])
    best = total = start = 0
    for end in order:
        total += weights[end]
        while times[order[start]] <= times[end] - span:
            total -= weights[order[start]]
            start += 1
        best = max(best, total)
    return best


def assert_exact(sim: SimServer, *, calls: int) -> None:
    """No window saw more than RPM requests or TPM tokens; the first was (nearly) filled."""
    served = list(sim.stats.served)
    assert len(served) == calls
    times = [t for t, _, _ in served]
    tokens = [p + c for _, p, c in served]
    assert set(tokens) == {CALL_TOKENS}, set(tokens)
    span = WINDOW_S - SLACK_S
    arrivals = sorted(t - min(times) for t in times)
    assert busiest_window(times, [1] * len(times), span) <= RPM, arrivals
    assert busiest_window(times, tokens, span) <= TPM, arrivals
    first = min(times)
    in_first = [t for t in times if t < first + span]
    # At least 95% of the capacity used: the first window's calls.
    assert len(in_first) >= 0.95 * RPM, arrivals


def assert_no_fallback(procs: Sequence[Proc]) -> None:
    for proc in procs:
        assert not UNREACHABLE.search(proc.output()), proc.output()


async def test_three_replicas_never_admit_more_than_the_limits_together(
    sim: SimServer, redis_url: str, tmp_path: Path
) -> None:
    started = await start_all([config(sim, redis_url, replicas=3, rpm=RPM, tpm=TPM)] * 3, tmp_path)
    procs = [proc for proc, _ in started]
    try:
        codes = await drive([address for _, address in started], 2 * RPM)
    finally:
        for proc in procs:
            assert proc.terminate() == 0, proc.output()
    assert codes == ["OK"] * (2 * RPM), codes
    assert_exact(sim, calls=2 * RPM)
    assert_no_fallback(procs)


async def test_two_workers_share_the_full_limits_through_redis(
    sim: SimServer, redis_url: str, tmp_path: Path
) -> None:
    ((proc, address),) = await start_all(
        [config(sim, redis_url, replicas=2, rpm=RPM, tpm=TPM)], tmp_path, ["--workers", "2"]
    )
    try:
        # A connection per call, so the kernel spreads them over both workers.
        codes = await drive([address], 2 * RPM, fresh=True)
    finally:
        assert proc.terminate() == 0, proc.output()
    assert codes == ["OK"] * (2 * RPM), codes
    assert_exact(sim, calls=2 * RPM)
    assert "limits are shared through Redis: every worker enforces the full rpm/tpm" in (
        proc.output()
    )
    assert_no_fallback([proc])


async def redis_counts(url: str) -> tuple[int, int]:
    """What Redis counts on the deployment's key in a 60 s window: (requests, tokens)."""
    client = redis.asyncio.Redis.from_url(url, socket_timeout=2.0)
    try:
        reader = SharedLimiter(client, window_seconds=60.0, prefix="switchboard:limits:")
        reader.configure("deployment:capped-capped", 10**9, 10**12)
        requests, tokens = await reader.headroom("deployment:capped-capped")
        assert requests is not None
        assert tokens is not None
        return 10**9 - requests, 10**12 - tokens
    finally:
        await client.aclose()


async def until(condition: object, timeout_s: float = 20.0) -> None:
    """Polls an async predicate against a deadline (state in other processes has no event)."""
    assert callable(condition)
    async with asyncio.timeout(timeout_s):
        while not await condition():  # noqa: ASYNC110
            await asyncio.sleep(0.1)


async def test_redis_killed_and_restarted_mid_run(
    sim: SimServer,
    redis_server_factory: object,
    restart_on_same_port: object,
    tmp_path: Path,
) -> None:
    """Calls go on within the local shares; once Redis is back it counts every call."""
    assert callable(redis_server_factory)
    assert callable(restart_on_same_port)
    server: RedisServer = redis_server_factory()
    # Limits that do not bind: this is about serving through the outage and recounting.
    started = await start_all(
        [config(sim, server.url, replicas=3, window_s=60.0, rpm=600, tpm=600 * CALL_TOKENS)] * 3,
        tmp_path,
    )
    procs = [proc for proc, _ in started]
    addresses = [address for _, address in started]

    async def counted() -> bool:
        stats = sim.stats
        return await redis_counts(server.url) == (
            len(stats.served),
            stats.prompt_tokens + stats.completion_tokens,
        )

    try:
        assert await drive(addresses, 15) == ["OK"] * 15
        await until(counted)
        server.popen.kill()
        server.popen.wait()
        # No call fails for lack of Redis: each replica decides within its share.
        assert await drive(addresses, 15) == ["OK"] * 15
        server = restart_on_same_port(server)
        # The new server starts empty; every replica charges it with its calls in the window.
        await until(counted)
        assert await drive(addresses, 15) == ["OK"] * 15
        await until(counted)
        assert await redis_counts(server.url) == (45, 45 * CALL_TOKENS)
    finally:
        for proc in procs:
            assert proc.terminate() == 0, proc.output()
    for proc in procs:
        output = proc.output()
        assert len(UNREACHABLE.findall(output)) + output.count("Redis restarted") == 1, output
        assert "Redis answers again" in output, output


async def test_a_429_at_one_replica_stops_the_others_sending_there(
    redis_url: str, tmp_path: Path
) -> None:
    profiles = {
        "ok": SimProfile(),
        "limited": SimProfile(faults=FaultRates(rate_limit=1.0, retry_after_s=30.0)),
    }
    async with SimServer(profiles, default_profile="ok", rng=random.Random(3)) as sim:
        cfg = gateway_config(
            sim.base_url,
            {"chat": ["ok", "limited"]},
            router_settings={"num_retries": 1, "routing_strategy": "simple-shuffle"},
            switchboard={"redis": {"url": redis_url, "timeout_seconds": 1.0}},
            provider_path="fast-path",
        )
        started = await start_all([cfg] * 3, tmp_path)
        procs = [proc for proc, _ in started]
        first, *others = [address for _, address in started]
        request = pb.CompleteRequest(
            model="chat", messages=[pb.Message(role=pb.ROLE_USER, content="hi")], max_tokens=8
        )
        try:
            async with grpc.aio.insecure_channel(first) as channel:
                stub = pb_grpc.GatewayStub(channel)
                for _ in range(40):  # shuffled: the limited one is drawn soon enough
                    await stub.Complete(request, timeout=20)  # served by `ok` all the same
                    if sim.stats.faults["rate_limit"]:
                        break
            assert sim.stats.faults["rate_limit"] == 1

            async def cooling(address: str) -> bool:
                async with grpc.aio.insecure_channel(address) as channel:
                    listing = await pb_grpc.GatewayStub(channel).ListModels(
                        pb.ListModelsRequest(), timeout=10
                    )
                (group,) = listing.groups
                states = {d.id: d.state for d in group.deployments}
                return states["chat-limited"] == pb.DEPLOYMENT_STATE_COOLING_DOWN

            for address in others:
                await until(lambda address=address: cooling(address))
            # The others send nothing to the limited deployment while it cools.
            codes = await drive(others, 30, request=request)
            assert codes == ["OK"] * 30, codes
            assert sim.stats.faults["rate_limit"] == 1
        finally:
            for proc in procs:
                assert proc.terminate() == 0, proc.output()
