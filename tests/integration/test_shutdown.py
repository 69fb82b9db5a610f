"""Graceful shutdown: SIGTERM drains, lets a stream in flight finish, refuses new calls, exits 0.

The drain (health NOT_SERVING while calls are still served) is observed
through a health Watch stream, which tells the test the moment it starts.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from switchboard.api.pb import gateway_pb2 as pb
from switchboard.api.pb import gateway_pb2_grpc as pb_grpc

from .procs import gateway_config, start_gateway, start_sim

pytestmark = pytest.mark.integration

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
DRAIN_S = 2.0


def _hi(model: str) -> pb.CompleteRequest:
    return pb.CompleteRequest(model=model, messages=[pb.Message(role=pb.ROLE_USER, content="hi")])


@pytest.fixture(scope="module")
def hold_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A simulator whose `hold` profile answers after a minute: a call that stays in flight."""
    path = tmp_path_factory.mktemp("hold") / "profiles.yaml"
    path.write_text(yaml.safe_dump({"hold": {"ttft_ms": 60_000}}))
    proc, url = start_sim(path)
    yield url
    proc.terminate()


def _wait_in_flight(sim_url: str, count: int, timeout_s: float = 20.0) -> None:
    """Until the simulator holds `count` requests (its /sim/stats)."""
    stats_url = sim_url.removesuffix("/v1") + "/sim/stats"
    give_up = time.monotonic() + timeout_s
    while httpx.get(stats_url).json()["in_flight"] != count:
        assert time.monotonic() < give_up, f"the simulator never held {count} requests"
        time.sleep(0.02)


def _wait_refused(address: str, timeout_s: float = 20.0) -> None:
    """Until a new call on a new connection is refused: the server stopped accepting."""
    give_up = time.monotonic() + timeout_s
    while time.monotonic() < give_up:
        with grpc.insecure_channel(address) as fresh:
            try:
                pb_grpc.GatewayStub(fresh).ListModels(pb.ListModelsRequest(), timeout=1)
            except grpc.RpcError:
                return
    raise AssertionError("the server kept accepting new calls")


def test_the_drain_says_not_serving_while_still_serving_then_exits(
    sim: str, tmp_path: Path
) -> None:
    config = gateway_config(
        sim,
        {"chat": ["instant"]},
        switchboard={"server": {"drain_seconds": DRAIN_S}},
        provider_path="fast-path",
    )
    proc, address = start_gateway(config, tmp_path)
    try:
        with grpc.insecure_channel(address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            pb_grpc.GatewayStub(channel).Complete(_hi("chat"), timeout=30)
            watch = health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=60)
            assert next(watch).status == SERVING

            signalled = time.monotonic()
            proc.popen.send_signal(signal.SIGTERM)
            assert next(watch).status == NOT_SERVING
            # Draining: a new connection's new call is still answered.
            with grpc.insecure_channel(address) as fresh:
                answer = pb_grpc.GatewayStub(fresh).Complete(_hi("chat"), timeout=DRAIN_S)
                assert answer.deployment == "chat-instant"
                checked = health_pb2_grpc.HealthStub(fresh).Check(
                    health_pb2.HealthCheckRequest(service="switchboard.v1.Gateway"), timeout=5
                )
                assert checked.status == NOT_SERVING
            # The Watch ends when the drain does, rather than holding the grace period.
            assert list(watch) == []
            assert proc.popen.wait(30) == 0
            assert time.monotonic() - signalled >= DRAIN_S
    finally:
        proc.kill()
    log = proc.output()
    assert "drain 2.0s" in log
    assert "Traceback" not in log


def test_a_second_signal_cuts_the_drain_short(sim: str, tmp_path: Path) -> None:
    config = gateway_config(
        sim,
        {"chat": ["instant"]},
        switchboard={"server": {"drain_seconds": 600}},
        provider_path="fast-path",
    )
    proc, address = start_gateway(config, tmp_path)
    try:
        with grpc.insecure_channel(address) as channel:
            watch = health_pb2_grpc.HealthStub(channel).Watch(
                health_pb2.HealthCheckRequest(service=""), timeout=60
            )
            assert next(watch).status == SERVING
            proc.popen.send_signal(signal.SIGTERM)
            assert next(watch).status == NOT_SERVING
            proc.popen.send_signal(signal.SIGTERM)
            assert proc.popen.wait(30) == 0
    finally:
        proc.kill()
    assert "Traceback" not in proc.output()


def test_a_second_signal_cuts_the_grace_short(hold_sim: str, tmp_path: Path) -> None:
    config = gateway_config(
        hold_sim,
        {"hold": ["hold"]},
        switchboard={"server": {"shutdown_grace_seconds": 600}},
        provider_path="fast-path",
    )
    config["model_list"][0]["litellm_params"]["timeout"] = 120  # type: ignore[index]
    proc, address = start_gateway(config, tmp_path)
    try:
        with grpc.insecure_channel(address) as channel:
            held = pb_grpc.GatewayStub(channel).Complete.future(_hi("hold"), timeout=120)
            _wait_in_flight(hold_sim, 1)
            proc.popen.send_signal(signal.SIGTERM)
            _wait_refused(address)
            # New calls are refused, yet the call in flight keeps the process in its grace.
            assert proc.popen.poll() is None
            assert not held.done()
            proc.popen.send_signal(signal.SIGTERM)
            assert proc.popen.wait(30) == 0
            assert held.exception(10) is not None
            _wait_in_flight(hold_sim, 0)
    finally:
        proc.kill()
    assert "Traceback" not in proc.output()


def test_sigterm_finishes_the_stream_in_flight_then_exits_zero(sim: str, tmp_path: Path) -> None:
    config = gateway_config(sim, {"trickle": ["trickle"]})
    proc, address = start_gateway(config, tmp_path)
    try:
        with grpc.insecure_channel(address) as channel:
            stub = pb_grpc.GatewayStub(channel)
            request = pb.CompleteRequest(
                model="trickle", messages=[pb.Message(role=pb.ROLE_USER, content="go")]
            )
            stream = stub.StreamComplete(request, timeout=60)
            first = next(stream)
            assert first.WhichOneof("event") == "delta"

            proc.popen.send_signal(signal.SIGTERM)
            rest = list(stream)  # the stream keeps flowing through the shutdown
            assert rest[-1].WhichOneof("event") == "final"
            assert rest[-1].final.usage.output_tokens == 40
            assert len(rest) == 40  # 39 more deltas and the final

            assert proc.popen.wait(30) == 0
    finally:
        proc.kill()
    log = proc.output()
    assert "shutting down" in log
    assert "Traceback" not in log


def test_new_calls_are_refused_once_the_drain_is_over(sim: str, tmp_path: Path) -> None:
    # On loopback with no drain configured there is none: refusal follows the signal.
    config = gateway_config(sim, {"trickle": ["trickle"]})
    proc, address = start_gateway(config, tmp_path)
    try:
        with grpc.insecure_channel(address) as channel:
            stub = pb_grpc.GatewayStub(channel)
            request = pb.CompleteRequest(
                model="trickle", messages=[pb.Message(role=pb.ROLE_USER, content="go")]
            )
            stream = stub.StreamComplete(request, timeout=60)
            next(stream)
            draining = threading.Event()

            def finish() -> None:
                list(stream)
                draining.set()

            reader = threading.Thread(target=finish)
            reader.start()
            proc.popen.send_signal(signal.SIGTERM)
            # Wait for the server to stop accepting: a fresh channel cannot call it.
            refused: grpc.StatusCode | None = None
            for _ in range(200):
                with grpc.insecure_channel(address) as fresh:
                    try:
                        pb_grpc.GatewayStub(fresh).ListModels(pb.ListModelsRequest(), timeout=1)
                    except grpc.RpcError as error:
                        refused = error.code()
                        break
                if draining.is_set():
                    break
            reader.join(30)
            # grpc core refuses a call that arrives mid-shutdown with UNAVAILABLE or
            # CANCELLED, depending on how far the shutdown has gone.
            refusals = (
                grpc.StatusCode.UNAVAILABLE,
                grpc.StatusCode.CANCELLED,
                grpc.StatusCode.DEADLINE_EXCEEDED,
            )
            assert refused in refusals, "the server kept accepting new calls after SIGTERM"
            assert draining.is_set()
            assert proc.popen.wait(30) == 0
    finally:
        proc.kill()
