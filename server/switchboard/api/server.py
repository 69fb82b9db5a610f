"""The gRPC server: the gateway service, health and reflection on one port.

Shutdown is graceful: health turns NOT_SERVING first and the server keeps
serving for the drain time (so load balancers notice and stop sending), then
it refuses new calls and gives calls and streams in flight `grace` seconds
to finish. A second signal cuts both short.

Slots: health and reflection need no key, so they must not be able to take
the Gateway's call slots. Each has its own budget, counted here rather than
by grpc's server-wide `maximum_concurrent_rpcs`, and a full budget is
answered RESOURCE_EXHAUSTED at once, never queued. HTTP/2 streams per
connection are bounded too, so one connection cannot open them all.

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

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, cast

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc

from switchboard.api import convert
from switchboard.api.auth import Authenticator
from switchboard.api.pb import gateway_pb2 as pb
from switchboard.api.servicer import Context, GatewayServicer
from switchboard.api.status import abort
from switchboard.config import Address, TransportSettings
from switchboard.domain import Caller
from switchboard.errors import CapacityExhausted, InvalidRequest, Unauthenticated
from switchboard.gateway import Gateway

log = logging.getLogger(__name__)

GATEWAY_SERVICE = pb.DESCRIPTOR.services_by_name["Gateway"].full_name

# Health Watch streams open at once: a load balancer holds one per backend it watches.
WATCH_STREAMS = 64
# Other health and reflection calls in flight at once (reflection streams are long-lived).
CONTROL_CALLS = 64
# HTTP/2 streams one connection may have open; a client past it queues its own calls.
STREAMS_PER_CONNECTION = 100


class Slots:
    """A ceiling on calls in flight; a full budget is an answer, not a queue."""

    __slots__ = ("in_use", "limit", "name")

    def __init__(self, name: str, limit: int) -> None:
        """`name` is the budget's name in the QuotaFailure a refused caller gets."""
        if limit <= 0:
            raise ValueError(f"{name}: a budget needs at least one slot")
        self.name = name
        self.limit = limit
        self.in_use = 0

    def take(self) -> bool:
        if self.in_use >= self.limit:
            return False
        self.in_use += 1
        return True

    def give(self) -> None:
        self.in_use -= 1

    def full(self) -> CapacityExhausted:
        return CapacityExhausted(
            f"the server is at its limit of {self.limit} concurrent calls of this kind",
            limit_key=self.name,
            wait_s=None,
        )

    async def refuse(self, context: Context) -> None:
        log.debug("%s full (%d): RESOURCE_EXHAUSTED", self.name, self.limit)
        await abort(context, self.full())


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
        watch_streams: int = WATCH_STREAMS,
        control_calls: int = CONTROL_CALLS,
    ) -> None:
        """`reuse_port`: share the port with other processes (workers) through SO_REUSEPORT.

        `max_concurrent_calls` bounds Gateway calls only; health Watch streams
        and the other health and reflection calls have budgets of their own.
        """
        self._transport = transport or TransportSettings()
        self._server = grpc.aio.server(
            options=_options(self._transport, reuse_port),
            interceptors=list(interceptors),
        )
        self.slots = Slots("server.max_concurrent_calls", max_concurrent_calls)
        self.watches = Slots("server.health_watch_streams", watch_streams)
        self.control = Slots("server.health_and_reflection_calls", control_calls)
        self._health = _Health(self.control, self.watches)
        handlers = _gateway_handlers(GatewayServicer(gateway, clock), self.slots)
        self._server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(GATEWAY_SERVICE, handlers),)
        )
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        names = (GATEWAY_SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME)
        reflection_pb2_grpc.add_ServerReflectionServicer_to_server(
            _Reflection(reflection.aio.ReflectionServicer(names), self.control), self._server
        )
        self.port = 0

    async def start(self, listen: Address) -> int:
        """Bind and serve; returns the bound port (useful when `listen` asks for 0)."""
        tls = self._transport.tls
        if tls is None:
            self.port = self._server.add_insecure_port(str(listen))
            if not is_loopback(listen.host):
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
            self._health.set(service, health_pb2.HealthCheckResponse.SERVING)
        return self.port

    async def stop(
        self, grace_s: float, *, drain_s: float = 0.0, hurry: asyncio.Event | None = None
    ) -> None:
        """NOT_SERVING, `drain_s` more of serving as usual, then refuse new calls and
        give those in flight `grace_s`. `hurry`, once set, ends the drain and the grace.
        """
        self._health.drain()
        hurry = hurry or asyncio.Event()
        if drain_s > 0 and not hurry.is_set():
            log.info("draining: health NOT_SERVING, still serving for %.1fs", drain_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(hurry.wait(), drain_s)
        # Watch streams would otherwise hold the whole grace period.
        self._health.close()
        if hurry.is_set():
            await self._server.stop(0)
            return
        stopping = asyncio.ensure_future(self._server.stop(grace_s))
        hurried = asyncio.ensure_future(hurry.wait())
        try:
            await asyncio.wait((stopping, hurried), return_when=asyncio.FIRST_COMPLETED)
            if hurry.is_set() and not stopping.done():
                log.info("second signal: cancelling the calls still in flight")
                # grpc lets a later stop shorten the grace of one in progress.
                await self._server.stop(0)
            await stopping
        finally:
            hurried.cancel()

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
        # One connection cannot hold every stream the process can serve.
        ("grpc.max_concurrent_streams", STREAMS_PER_CONNECTION),
    ]


class _Health:
    """grpc.health.v1 whose Watch streams are bounded and end once the server stops.

    grpc's reference servicer keeps a Watch open until the process dies (so
    a watched server always spent its whole grace period stopping), keeps a
    condition per service name a caller sends, and has no bound on watchers.
    """

    def __init__(self, control: Slots, watches: Slots) -> None:
        self._control = control
        self._watches = watches
        self._status: dict[str, int] = {}
        self._changed = asyncio.Event()
        self._draining = False
        self._closed = False

    def set(self, service: str, status: int) -> None:
        if not self._draining:
            self._status[service] = status
            self._notify()

    def drain(self) -> None:
        """NOT_SERVING for every service, for good."""
        for service in self._status:
            self._status[service] = health_pb2.HealthCheckResponse.NOT_SERVING
        self._draining = True
        self._notify()

    def close(self) -> None:
        """End every Watch once it has told its caller the latest status."""
        self._closed = True
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def Check(  # noqa: N802 (grpc's method name)
        self, request: health_pb2.HealthCheckRequest, context: Context
    ) -> health_pb2.HealthCheckResponse:
        status = self._status.get(request.service)
        if status is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "unknown service")
        return health_pb2.HealthCheckResponse(status=status)

    async def List(  # noqa: N802 (grpc's method name)
        self, request: health_pb2.HealthListRequest, context: Context
    ) -> health_pb2.HealthListResponse:
        response = health_pb2.HealthListResponse()
        for service, status in self._status.items():
            response.statuses[service].status = status
        return response

    async def Watch(  # noqa: N802 (grpc's method name)
        self, request: health_pb2.HealthCheckRequest, context: Context
    ) -> None:
        if not self._watches.take():
            await self._watches.refuse(context)
        try:
            last: int | None = None
            while True:
                # Taken before reading, so a change made during the write is not missed.
                changed = self._changed
                status = self._status.get(
                    request.service, health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
                )
                if status != last:
                    await context.write(health_pb2.HealthCheckResponse(status=status))
                    last = status
                if self._closed:
                    return
                await changed.wait()
        finally:
            self._watches.give()


class _Reflection:
    """grpc's reflection servicer, within the health and reflection budget."""

    def __init__(self, inner: Any, control: Slots) -> None:
        self._inner = inner
        self._control = control

    async def ServerReflectionInfo(  # noqa: N802 (grpc's method name)
        self, requests: AsyncIterator[Any], context: Context
    ) -> AsyncGenerator[Any, None]:
        if not self._control.take():
            await self._control.refuse(context)
        try:
            replies = cast(
                AsyncGenerator[Any, None], self._inner.ServerReflectionInfo(requests, context)
            )
            async with contextlib.aclosing(replies):
                async for reply in replies:
                    yield reply
        finally:
            self._control.give()


def is_loopback(host: str) -> bool:
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


def _gateway_handlers(
    servicer: GatewayServicer, slots: Slots
) -> dict[str, grpc.RpcMethodHandler[Any, Any]]:
    """The Gateway service's handlers, each parsing its own request bytes within `slots`."""
    auth = servicer.authenticator
    return {
        "Complete": grpc.unary_unary_rpc_method_handler(
            _unary(pb.CompleteRequest, servicer.complete, auth, slots),
            response_serializer=pb.CompleteResponse.SerializeToString,
        ),
        "StreamComplete": grpc.unary_stream_rpc_method_handler(
            _streaming(pb.CompleteRequest, servicer.stream_complete, auth, slots),
            response_serializer=pb.StreamCompleteResponse.SerializeToString,
        ),
        "ListModels": grpc.unary_unary_rpc_method_handler(
            _unary(pb.ListModelsRequest, servicer.list_models, auth, slots),
            response_serializer=pb.ListModelsResponse.SerializeToString,
        ),
        "InvalidateCache": grpc.unary_unary_rpc_method_handler(
            _unary(pb.InvalidateCacheRequest, servicer.invalidate_cache, auth, slots),
            response_serializer=pb.InvalidateCacheResponse.SerializeToString,
        ),
        "GetStats": grpc.unary_unary_rpc_method_handler(
            _unary(pb.GetStatsRequest, servicer.get_stats, auth, slots),
            response_serializer=pb.GetStatsResponse.SerializeToString,
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


def _unary(
    message_type: type[convert.P], method: Method, auth: Authenticator, slots: Slots
) -> Unary:
    async def handle(data: bytes, context: Context) -> Any:
        # Before parsing: a full server spends nothing on the calls it refuses.
        if not slots.take():
            await slots.refuse(context)
        try:
            request, caller = await _parse(message_type, data, context, auth)
            return await method(request, context, caller)
        finally:
            slots.give()

    return handle


def _streaming(
    message_type: type[convert.P], method: StreamingMethod, auth: Authenticator, slots: Slots
) -> Streaming:
    async def handle(data: bytes, context: Context) -> AsyncGenerator[Any, None]:
        if not slots.take():
            await slots.refuse(context)
        try:
            request, caller = await _parse(message_type, data, context, auth)
            # Closed here, at once, when the caller goes away mid-stream; the
            # servicer's streaming methods are async generators.
            events = cast(AsyncGenerator[Any, None], method(request, context, caller))
            async with contextlib.aclosing(events):
                async for event in events:
                    yield event
        finally:
            slots.give()

    return handle
