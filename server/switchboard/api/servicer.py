"""The `switchboard.v1.Gateway` servicer: the RPC edge of the gateway.

The server (api/server.py) authenticates the caller's key and parses the
request bytes, once, before any method here runs; each method receives the
caller. It converts, checks the caller may use the model, reads the deadline,
delegates to the Gateway and maps every failure to a status. Nothing below it
ever reaches a client as a stack trace: unexpected exceptions are logged here
and answered as INTERNAL.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable

import grpc

from switchboard import faults
from switchboard.api import convert
from switchboard.api.auth import Authenticator
from switchboard.api.pb import gateway_pb2 as pb
from switchboard.api.status import abort, clip_utf8
from switchboard.domain import Caller, CompletionRequest, StreamDelta
from switchboard.errors import (
    CacheDisabled,
    FieldViolation,
    InvalidRequest,
    SwitchboardError,
)
from switchboard.gateway import Gateway

log = logging.getLogger(__name__)

Context = grpc.aio.ServicerContext[object, object]
# A failed call's log line carries at most this much of its message.
MAX_LOGGED_MESSAGE_BYTES = 1024
# grpc reports "no deadline" as a very large remaining time.
_NO_DEADLINE_S = 1e8


class GatewayServicer:
    def __init__(self, gateway: Gateway, clock: Callable[[], float]) -> None:
        self._gateway = gateway
        self._clock = clock
        # Built here from the settings, so the server needs no part in it.
        self._auth = Authenticator.from_settings(gateway.settings)

    @property
    def authenticator(self) -> Authenticator:
        return self._auth

    async def complete(
        self, request: pb.CompleteRequest, context: Context, caller: Caller | None
    ) -> pb.CompleteResponse:
        failure: SwitchboardError
        try:
            domain_request = self._admit(request, caller, context)
            completion = await self._gateway.complete(
                domain_request, deadline=self._deadline(context)
            )
            return convert.complete_response(completion)
        except SwitchboardError as err:
            _log(err, "Complete", caller)
            failure = err
        except Exception:
            failure = _unexpected("Complete")
        await abort(context, failure)
        raise AssertionError("abort returned")  # pragma: no cover

    async def stream_complete(
        self, request: pb.CompleteRequest, context: Context, caller: Caller | None
    ) -> AsyncIterator[pb.StreamCompleteResponse]:
        failure: SwitchboardError
        try:
            domain_request = self._admit(request, caller, context)
            events = self._gateway.stream(domain_request, deadline=self._deadline(context))
            async with contextlib.aclosing(events):
                async for event in events:
                    if isinstance(event, StreamDelta):
                        yield convert.stream_delta(event)
                    else:
                        yield convert.stream_final(event)
            return
        except SwitchboardError as err:
            _log(err, "StreamComplete", caller)
            failure = err
        except Exception:
            failure = _unexpected("StreamComplete")
        await abort(context, failure)

    async def list_models(
        self, request: pb.ListModelsRequest, context: Context, caller: Caller | None
    ) -> pb.ListModelsResponse:
        try:
            response = self._models(caller)
            cache = self._gateway.cache
            if cache is not None:
                try:
                    stats = await cache.stats()
                except Exception as exc:  # a cache backend that is down must not hide the models
                    log.warning("ListModels: cache size unavailable: %s", type(exc).__name__)
                else:
                    response.caches.extend(convert.cache_stats(stats))
            return response
        except Exception:
            # Deployment state is fed by providers' headers: never let it break the listing.
            failure = _unexpected("ListModels")
        await abort(context, failure)
        raise AssertionError("abort returned")  # pragma: no cover

    async def invalidate_cache(
        self, request: pb.InvalidateCacheRequest, context: Context, caller: Caller | None
    ) -> pb.InvalidateCacheResponse:
        failure: SwitchboardError
        try:
            self._auth.require_admin(caller, "InvalidateCache")
            namespace, tags = convert.invalidate_request(request)
            cache = self._gateway.cache
            if cache is None:
                raise CacheDisabled("this gateway has no response cache (switchboard.cache)")
            removed = await cache.invalidate(namespace, tags)
            return pb.InvalidateCacheResponse(removed=removed)
        except SwitchboardError as err:
            _log(err, "InvalidateCache", caller)
            failure = err
        except Exception:
            failure = _unexpected("InvalidateCache")
        await abort(context, failure)
        raise AssertionError("abort returned")  # pragma: no cover

    def _models(self, caller: Caller | None) -> pb.ListModelsResponse:
        settings = self._gateway.settings
        wall_offset = time.time() - self._clock()
        groups = [
            pb.ModelGroup(
                name=name,
                deployments=[
                    convert.deployment_status(self._gateway.status(d), wall_offset)
                    for d in deployments
                ],
                fallbacks=settings.router.fallbacks.get(name, ()),
            )
            for name, deployments in settings.groups.items()
            if self._auth.allows_group(caller, name)
        ]
        aliases = [
            pb.Alias(name=a, target=t)
            for a, t in settings.aliases.items()
            if self._auth.allows_group(caller, t)
        ]
        return pb.ListModelsResponse(groups=groups, aliases=aliases)

    def _admit(
        self, request: pb.CompleteRequest, caller: Caller | None, context: Context
    ) -> CompletionRequest:
        """The domain request, once the caller is known to be allowed its model."""
        domain_request = convert.request_from_proto(request, caller)
        self._auth.authorize(caller, domain_request.model)
        return self._with_fault(domain_request, context)

    def _with_fault(self, request: CompletionRequest, context: Context) -> CompletionRequest:
        """Honour `x-switchboard-fault` only where the config allows it; ignore it elsewhere."""
        if not self._gateway.settings.routing.allow_fault_injection:
            return request
        values = [v for k, v in context.invocation_metadata() or () if k == faults.HEADER]
        if not values:
            return request
        try:
            fault = faults.parse_fault(str(values[-1]))
        except ValueError as exc:
            raise InvalidRequest([FieldViolation(f"metadata.{faults.HEADER}", str(exc))]) from None
        return dataclasses.replace(request, fault=fault)

    def _deadline(self, context: Context) -> float | None:
        remaining = context.time_remaining()
        if remaining is None or remaining > _NO_DEADLINE_S:
            return None
        return self._clock() + remaining


def _unexpected(rpc: str) -> SwitchboardError:
    """Log the exception being handled; the caller gets INTERNAL without its text."""
    log.exception("%s failed unexpectedly", rpc)
    return SwitchboardError("internal error; the server log has the details")


def _log(err: SwitchboardError, rpc: str, caller: Caller | None) -> None:
    """One line per failed call; names the caller's key, never its value."""
    who = f" (key {caller.name})" if caller is not None else ""
    message = clip_utf8(err.message, MAX_LOGGED_MESSAGE_BYTES)
    log.log(err.log_level, "%s%s -> %s %s: %s", rpc, who, err.status.name, err.reason, message)
