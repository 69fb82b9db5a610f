"""The gRPC server: the gateway service, health and reflection on one port.

Shutdown is graceful: health turns NOT_SERVING first (so load balancers stop
sending), then the server refuses new calls and gives calls and streams in
flight `grace` seconds to finish.

The gateway's methods take raw bytes and parse them here rather than in
grpc: grpc answers a payload its deserializer cannot parse with UNKNOWN and
the parser's exception text, while a payload that is not a request is the
caller's mistake, INVALID_ARGUMENT with a BadRequest naming the problem.

The port is TLS (mutual when a client CA is configured) unless the config
has no `tls` section; plaintext anywhere but loopback is logged as a warning.
Keepalive pings idle connections and drops those whose peer stopped
answering, so dead clients do not hold connections and stream slots.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, cast

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from switchboard.api import convert
from switchboard.api.auth import Authenticator
from switchboard.api.pb import gateway_pb2 as pb
from switchboard.api.servicer import Context, GatewayServicer
from switchboard.api.status import abort
from switchboard.config import Address, TransportSettings
from switchboard.domain import Caller
from switchboard.errors import InvalidRequest, Unauthenticated
from switchboard.gateway import Gateway

log = logging.getLogger(__name__)

GATEWAY_SERVICE = pb.DESCRIPTOR.services_by_name["Gateway"].full_name


class GatewayServer:
    def __init__(
        self,
        gateway: Gateway,
        *,
        clock: Callable[[], float],
        max_concurrent_calls: int,
        transport: TransportSettings | None = None,
        interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
        reuse_port: bool = False,
    ) -> None:
        """`reuse_port`: share the port with other processes (workers) through SO_REUSEPORT."""
        self._transport = transport or TransportSettings()
        self._server = grpc.aio.server(
            maximum_concurrent_rpcs=max_concurrent_calls,
            options=_options(self._transport, reuse_port),
            interceptors=list(interceptors),
        )
        self._health = health.aio.HealthServicer()
        handlers = _gateway_handlers(GatewayServicer(gateway, clock))
        self._server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(GATEWAY_SERVICE, handlers),)
        )
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        reflection.enable_server_reflection(
            (GATEWAY_SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME), self._server
        )
        self.port = 0

    async def start(self, listen: Address) -> int:
        """Bind and serve; returns the bound port (useful when `listen` asks for 0)."""
        tls = self._transport.tls
        if tls is None:
            self.port = self._server.add_insecure_port(str(listen))
            if not _loopback(listen.host):
                log.warning(
                    "serving PLAINTEXT on %s: calls, keys and prompts cross the network "
                    "unencrypted; add switchboard.server.tls to the config",
                    listen,
                )
        else:
            client_ca = tls.client_ca_file.read_bytes() if tls.client_ca_file else None
            credentials = grpc.ssl_server_credentials(
                [(tls.key_file.read_bytes(), tls.cert_file.read_bytes())],
                root_certificates=client_ca,
                require_client_auth=client_ca is not None,
            )
            self.port = self._server.add_secure_port(str(listen), credentials)
            log.info("TLS on; client certificates %s", "required" if client_ca else "not asked")
        if self.port == 0:
            raise OSError(f"cannot listen on {listen}")
        await self._server.start()
        for service in ("", GATEWAY_SERVICE):
            await self._health.set(service, health_pb2.HealthCheckResponse.SERVING)
        return self.port

    async def stop(self, grace_s: float) -> None:
        for service in ("", GATEWAY_SERVICE):
            await self._health.set(service, health_pb2.HealthCheckResponse.NOT_SERVING)
        await self._server.stop(grace_s)

    async def wait(self) -> None:
        await self._server.wait_for_termination()


def _options(transport: TransportSettings, reuse_port: bool) -> list[tuple[str, Any]]:
    return [
        ("grpc.max_receive_message_length", transport.max_message_bytes),
        # Off unless asked: a second server on the same port is otherwise a mistake.
        ("grpc.so_reuseport", 1 if reuse_port else 0),
        ("grpc.keepalive_time_ms", round(transport.keepalive_time_s * 1000)),
        ("grpc.keepalive_timeout_ms", round(transport.keepalive_timeout_s * 1000)),
        # Ping idle connections too (a dead idle client is still a held socket),
        # and keep pinging however long the connection stays quiet.
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        # Accept client keepalive pings every 10 s or more (grpc's default
        # minimum is 5 minutes, which drops clients with sane keepalives).
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ]


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


Unary = Callable[[Any, Context], Awaitable[Any]]
Streaming = Callable[[Any, Context], AsyncIterator[Any]]
# A servicer method: the parsed request, the context, and the authenticated caller.
Method = Callable[[Any, Context, Caller | None], Awaitable[Any]]
StreamingMethod = Callable[[Any, Context, Caller | None], AsyncIterator[Any]]


def _gateway_handlers(servicer: GatewayServicer) -> dict[str, grpc.RpcMethodHandler[Any, Any]]:
    """The Gateway service's handlers, each parsing its own request bytes."""
    auth = servicer.authenticator
    return {
        "Complete": grpc.unary_unary_rpc_method_handler(
            _unary(pb.CompleteRequest, servicer.complete, auth),
            response_serializer=pb.CompleteResponse.SerializeToString,
        ),
        "StreamComplete": grpc.unary_stream_rpc_method_handler(
            _streaming(pb.CompleteRequest, servicer.stream_complete, auth),
            response_serializer=pb.StreamCompleteResponse.SerializeToString,
        ),
        "ListModels": grpc.unary_unary_rpc_method_handler(
            _unary(pb.ListModelsRequest, servicer.list_models, auth),
            response_serializer=pb.ListModelsResponse.SerializeToString,
        ),
    }


async def _parse(
    message_type: type[convert.P], data: bytes, context: Context, auth: Authenticator
) -> tuple[convert.P, Caller | None]:
    """The request, once the caller is known: a stranger learns nothing, not even parse errors."""
    try:
        caller = auth.authenticate(context.invocation_metadata())
        return convert.decode(message_type, data), caller
    except Unauthenticated as err:
        log.info("refused -> UNAUTHENTICATED: %s", err.message)
        await abort(context, err)
    except InvalidRequest as err:
        log.info("undecodable %s: %s", message_type.DESCRIPTOR.name, err.message)
        await abort(context, err)
    raise AssertionError("abort returned")  # pragma: no cover


def _unary(message_type: type[convert.P], method: Method, auth: Authenticator) -> Unary:
    async def handle(data: bytes, context: Context) -> Any:
        request, caller = await _parse(message_type, data, context, auth)
        return await method(request, context, caller)

    return handle


def _streaming(
    message_type: type[convert.P], method: StreamingMethod, auth: Authenticator
) -> Streaming:
    async def handle(data: bytes, context: Context) -> AsyncGenerator[Any, None]:
        request, caller = await _parse(message_type, data, context, auth)
        # Closed here, at once, when the caller goes away mid-stream; the
        # servicer's streaming methods are async generators.
        events = cast(AsyncGenerator[Any, None], method(request, context, caller))
        async with contextlib.aclosing(events):
            async for event in events:
                yield event

    return handle
