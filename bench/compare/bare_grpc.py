"""A bare grpc.aio server answering Gateway/Complete with a fixed response.

The ceiling for a Python gRPC server on this machine: the same stubs, loop
(uvloop), grpc I/O engine, reflection and message sizes as Switchboard, and
no work at all between the request and the response. Switchboard's sustained
rate divided by this one says how much of the machine the gateway's own work
takes.

With `--upstream URL` it is the relay: each call makes the one upstream call
Switchboard would, with Switchboard's own HTTP client, and answers with what
came back, but validates, routes, limits and records nothing. That is the
floor under any gateway built on grpc.aio here: what the relay adds to the
upstream's latency is the stack's share, and what Switchboard adds on top of
the relay is its own.

    python -m bench.compare.bare_grpc [--listen 127.0.0.1:0] [--upstream URL]

Prints `bare_grpc: serving on HOST:PORT` once it accepts calls.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator

import grpc
import uvloop
from google.protobuf.duration_pb2 import Duration
from grpc_reflection.v1alpha import reflection

from switchboard.api.pb import gateway_pb2 as pb
from switchboard.api.pb import gateway_pb2_grpc as pb_grpc
from switchboard.api.polling import prefer_poller_io
from switchboard.providers.http1 import HttpClient, Request

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


class Relay(FixedGateway):
    """Each call is one upstream call, relayed as it is: the fast path without the gateway."""

    def __init__(self, client: HttpClient, upstream: str) -> None:
        self._client = client
        self._request = Request.post(
            f"{upstream}/chat/completions",
            {"Content-Type": "application/json", "Authorization": "Bearer bench"},
        )

    def _body(self, request: pb.CompleteRequest, *, stream: bool) -> bytes:
        messages = [{"role": "user", "content": m.content} for m in request.messages]
        return json.dumps({"model": "bench-a", "messages": messages, "stream": stream}).encode()

    async def Complete(  # noqa: N802
        self, request: pb.CompleteRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.CompleteResponse:
        response = await self._client.post(self._request, self._body(request, stream=False))
        answer = json.loads(await response.read())
        reply = pb.CompleteResponse()
        reply.CopyFrom(RESPONSE)
        reply.message.content = answer["choices"][0]["message"]["content"]
        return reply

    async def StreamComplete(  # noqa: N802
        self, request: pb.CompleteRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> AsyncIterator[pb.StreamCompleteResponse]:
        response = await self._client.post(self._request, self._body(request, stream=True))
        async for data in response.iter_chunks():
            # The events of one read leave as one message, as Switchboard sends them.
            pieces = [
                choice["delta"].get("content") or ""
                for line in data.split(b"\n")
                if line.startswith(b"data: {")
                for choice in json.loads(line[6:])["choices"]
            ]
            if any(pieces):
                yield pb.StreamCompleteResponse(delta=pb.Delta(content="".join(pieces)))
        yield EVENTS[-1]


async def serve(listen: str, upstream: str | None) -> None:
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    client = HttpClient() if upstream else None
    servicer = Relay(client, upstream) if client and upstream else FixedGateway()
    pb_grpc.add_GatewayServicer_to_server(servicer, server)
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
        if client is not None:
            await client.aclose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:0")
    parser.add_argument("--upstream", help="relay each call to this base URL (.../v1)")
    args = parser.parse_args()
    prefer_poller_io(os.environ)  # Switchboard's grpc I/O engine too
    with contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError):
        uvloop.run(serve(args.listen, args.upstream))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
