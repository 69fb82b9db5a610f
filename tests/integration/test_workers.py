"""`switchboard serve --workers N`: one port, N processes, limits that still hold.

Until limits are shared through Redis, each worker enforces its share of
every limit; the kernel spreads connections among the workers, so a test
that opens a fresh connection per call reaches both, and together they
must never admit more than the limit. The supervisor restarts a worker
that dies and stops every worker gracefully on SIGTERM.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from switchboard.api.pb import gateway_pb2 as pb
from switchboard.api.pb import gateway_pb2_grpc as pb_grpc
from switchboard.sim import SimProfile, SimServer
from switchboard.workers import share

from .procs import Proc, gateway_config, start_gateway

pytestmark = pytest.mark.integration

RPM = 5
WORKERS = 2
SAY_HI = pb.CompleteRequest(
    model="capped", messages=[pb.Message(role=pb.ROLE_USER, content="Say hi")], max_tokens=8
)


@pytest.fixture
async def sim() -> AsyncIterator[SimServer]:
    profiles = {"capped": SimProfile(), "trickle": SimProfile(ttft_ms=10, tokens_per_second=20)}
    async with SimServer(profiles, default_profile="capped", rng=random.Random(5)) as server:
        yield server


def _start(
    sim: SimServer, directory: Path, workers: int = WORKERS, drain_s: float = 0
) -> tuple[Proc, str]:
    config = gateway_config(
        sim.base_url,
        {"capped": ["capped"], "trickle": ["trickle"]},
        router_settings={"max_queue_wait": 0, "num_retries": 0},
        switchboard={"server": {"drain_seconds": drain_s}},
        provider_path="fast-path",
    )
    config["model_list"][0]["litellm_params"]["rpm"] = RPM  # type: ignore[index]
    return start_gateway(config, directory, args=["--workers", str(workers)])


def _workers(proc: Proc) -> list[int]:
    pid = proc.popen.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return sorted(int(c) for c in children)


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


async def _call(address: str) -> grpc.StatusCode:
    """One Complete on a connection of its own, so the kernel picks a worker for it."""
    async with grpc.aio.insecure_channel(address) as channel:
        try:
            await pb_grpc.GatewayStub(channel).Complete(SAY_HI, timeout=10)
        except grpc.aio.AioRpcError as err:
            return err.code()
    return grpc.StatusCode.OK


async def test_workers_together_never_admit_more_than_the_limit(
    sim: SimServer, tmp_path: Path
) -> None:
    proc, address = _start(sim, tmp_path)
    try:
        assert len(_workers(proc)) == WORKERS
        codes = [await _call(address) for _ in range(4 * RPM)]
    finally:
        assert proc.terminate() == 0, proc.output()
    served = codes.count(grpc.StatusCode.OK)
    refused = codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert served + refused == len(codes), codes
    # Never more than the limit, and at least one worker's whole share.
    assert share(RPM, 1, WORKERS) <= served <= RPM  # type: ignore[operator]
    assert sim.stats.requests == served
    assert "each worker enforces 1/2 of every deployment and key rpm/tpm" in proc.output()


async def test_a_worker_that_dies_is_started_again(sim: SimServer, tmp_path: Path) -> None:
    proc, address = _start(sim, tmp_path)
    try:
        before = _workers(proc)
        os.kill(before[0], signal.SIGKILL)
        async with asyncio.timeout(60):
            while True:
                now = _workers(proc)
                if len(now) == WORKERS and before[0] not in now:
                    break
                await asyncio.sleep(0.05)
        assert await _call(address) in (grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED)
    finally:
        assert proc.terminate() == 0, proc.output()
    assert f"worker 0 exited with {-signal.SIGKILL}" in proc.output() or (
        f"exited with {-signal.SIGKILL}" in proc.output()
    )


async def test_sigterm_lets_streams_in_flight_finish_on_every_worker(
    sim: SimServer, tmp_path: Path
) -> None:
    proc, address = _start(sim, tmp_path)
    workers = _workers(proc)
    request = pb.CompleteRequest(
        model="trickle", messages=[pb.Message(role=pb.ROLE_USER, content="hi")], max_tokens=20
    )
    channels = [grpc.aio.insecure_channel(address) for _ in range(6)]
    try:
        streams = [pb_grpc.GatewayStub(c).StreamComplete(request, timeout=30) for c in channels]
        firsts = [await s.read() for s in streams]
        assert all(f.HasField("delta") for f in firsts)
        proc.popen.send_signal(signal.SIGTERM)
        for stream in streams:
            last = first = await stream.read()
            while (event := await stream.read()) is not grpc.aio.EOF:
                last = event
            assert last is not first
            assert last.HasField("final")
    finally:
        for channel in channels:
            await channel.close()
    assert proc.terminate() == 0, proc.output()
    assert not any(_alive(pid) for pid in workers)


def test_too_small_a_limit_is_refused_at_start(sim: SimServer, tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="cannot serve with 8 workers"):
        _start(sim, tmp_path, workers=8)


def test_a_second_signal_reaches_every_worker(sim: SimServer, tmp_path: Path) -> None:
    """The workers drain for 10 minutes after one SIGTERM; a second one ends them all now."""
    proc, address = _start(sim, tmp_path, drain_s=600)
    try:
        workers = _workers(proc)
        assert len(workers) == WORKERS
        with grpc.insecure_channel(address) as channel:
            watch = health_pb2_grpc.HealthStub(channel).Watch(
                health_pb2.HealthCheckRequest(service=""), timeout=60
            )
            assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
            proc.popen.send_signal(signal.SIGTERM)
            # Draining (a signal is handled before the next one is sent: two at once are one).
            assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
        assert proc.popen.poll() is None
        proc.popen.send_signal(signal.SIGTERM)
        assert proc.popen.wait(30) == 0
        assert not any(_alive(pid) for pid in workers)
    finally:
        proc.kill()
