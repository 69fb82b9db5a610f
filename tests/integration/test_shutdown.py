"""Graceful shutdown: SIGTERM lets a stream in flight finish, refuses new calls, exits 0."""

from __future__ import annotations

import threading
from pathlib import Path

import grpc
import pytest

from switchboard.api.pb import gateway_pb2 as pb
from switchboard.api.pb import gateway_pb2_grpc as pb_grpc

from .procs import gateway_config, start_gateway

pytestmark = pytest.mark.integration


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

            proc.popen.send_signal(15)
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


def test_new_calls_are_refused_while_draining(sim: str, tmp_path: Path) -> None:
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
            proc.popen.send_signal(15)
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
