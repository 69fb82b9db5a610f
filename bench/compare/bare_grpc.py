"""A bare grpc.aio server answering Gateway/Complete with a fixed response.

The ceiling for a Python gRPC server on this machine: the same stubs, loop
(uvloop), reflection and message sizes as Switchboard, and no work at all
between the request and the response. Switchboard's sustained rate divided by
this one says how much of the machine the gateway's own work takes.

    python -m bench.compare.bare_grpc [--listen 127.0.0.1:0]

Prints `bare_grpc: serving on HOST:PORT` once it accepts calls.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import AsyncIterator

import grpc
import uvloop
from google.protobuf.duration_pb2 import Duration
from grpc_reflection.v1alpha import reflection

from switchboard.api.pb import gateway_pb2 as pb
from switchboard.api.pb import gateway_pb2_grpc as pb_grpc

REPLY = "Hi there! This is the benchmark upstream answering with a fixed short reply."
USAGE = pb.Usage(input_tokens=9, output_tokens=20, total_tokens=29)
ATTEMPT = pb.Attempt(
    deployment="bench-a",
    model_group="chat",
    outcome=pb.ATTEMPT_OUTCOME_SUCCESS,
    latency=Duration(nanos=1_000_000),
)
RESPONSE = pb.CompleteResponse(
    id="chatcmpl-bench",
    model="bench-a",
    deployment="bench-a",
    message=pb.Message(role=pb.ROLE_ASSISTANT, content=REPLY),
    finish_reason=pb.FINISH_REASON_STOP,
    usage=USAGE,
    attempts=[ATTEMPT],
    model_group="chat",
    routing=pb.RoutingDecision(strategy="simple-shuffle", candidates=["bench-a", "bench-b"]),
)
EVENTS = [
    *(
        pb.StreamCompleteResponse(delta=pb.Delta(content=piece))
        for piece in ("Hi there!", " This is the benchmark", " upstream", " answering.")
    ),
    pb.StreamCompleteResponse(
        final=pb.Final(
            id="chatcmpl-bench",
            model="bench-a",
            deployment="bench-a",
            finish_reason=pb.FINISH_REASON_STOP,
            usage=USAGE,
            attempts=[ATTEMPT],
            model_group="chat",
        )
    ),
]


class FixedGateway(pb_grpc.GatewayServicer):
    """Answers without looking at the request (it is still parsed by the stubs)."""

    async def Complete(  # noqa: N802 (the proto's method name)
        self, request: pb.CompleteRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.CompleteResponse:
        return RESPONSE

    async def StreamComplete(  # noqa: N802
        self, request: pb.CompleteRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> AsyncIterator[pb.StreamCompleteResponse]:
        for event in EVENTS:
            yield event

    async def ListModels(  # noqa: N802
        self, request: pb.ListModelsRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.ListModelsResponse:
        return pb.ListModelsResponse()


async def serve(listen: str) -> None:
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    pb_grpc.add_GatewayServicer_to_server(FixedGateway(), server)
    service = pb.DESCRIPTOR.services_by_name["Gateway"].full_name
    reflection.enable_server_reflection((service, reflection.SERVICE_NAME), server)
    port = server.add_insecure_port(listen)
    await server.start()
    host = listen.rpartition(":")[0]
    print(f"bare_grpc: serving on {host}:{port}", flush=True)
    try:
        await server.wait_for_termination()
    finally:
        await server.stop(1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:0")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError):
        uvloop.run(serve(args.listen))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
