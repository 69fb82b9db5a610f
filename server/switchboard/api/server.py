"""The gRPC server: the gateway service, health and reflection on one port.

Shutdown is graceful: health turns NOT_SERVING first (so load balancers stop
sending), then the server refuses new calls and gives calls and streams in
flight `grace` seconds to finish.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from switchboard.api.pb import gateway_pb2 as pb
from switchboard.api.pb import gateway_pb2_grpc as pb_grpc
from switchboard.api.servicer import GatewayServicer
from switchboard.config import Address
from switchboard.gateway import Gateway

log = logging.getLogger(__name__)

GATEWAY_SERVICE = pb.DESCRIPTOR.services_by_name["Gateway"].full_name
# Refuse a message before parsing it when it is larger than this.
MAX_MESSAGE_BYTES = 8 * 1024 * 1024


class GatewayServer:
    def __init__(
        self,
        gateway: Gateway,
        *,
        clock: Callable[[], float],
        max_concurrent_calls: int,
    ) -> None:
        self._server = grpc.aio.server(
            maximum_concurrent_rpcs=max_concurrent_calls,
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.so_reuseport", 0),
            ],
        )
        self._health = health.aio.HealthServicer()
        pb_grpc.add_GatewayServicer_to_server(GatewayServicer(gateway, clock), self._server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        reflection.enable_server_reflection(
            (GATEWAY_SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME), self._server
        )
        self.port = 0

    async def start(self, listen: Address) -> int:
        """Bind and serve; returns the bound port (useful when `listen` asks for 0)."""
        self.port = self._server.add_insecure_port(str(listen))
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
