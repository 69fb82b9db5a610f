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
from collections.abc import AsyncIterator, Callable, Iterable

import grpc

from switchboard import faults
from switchboard.accounting import Dimension, Snapshot
from switchboard.api import convert
from switchboard.api.auth import Authenticator
from switchboard.api.pb import gateway_pb2 as pb
from switchboard.api.status import abort, clip_utf8
from switchboard.domain import Caller, CompletionRequest, StreamDelta
from switchboard.errors import (
    CacheDisabled,
    FieldViolation,
    InvalidRequest,
    StatsDisabled,
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

    async def get_stats(
        self, request: pb.GetStatsRequest, context: Context, caller: Caller | None
    ) -> pb.GetStatsResponse:
        failure: SwitchboardError
        try:
            period = convert.stats_period(request)
            ledger = self._gateway.ledger
            if ledger is None:
                raise StatsDisabled("this gateway keeps no statistics")
            snapshot = await ledger.snapshot(period)
            return self._stats(snapshot, caller)
        except SwitchboardError as err:
            _log(err, "GetStats", caller)
            failure = err
        except Exception:
            # Figures come from providers' numbers and from Redis: never a stack trace.
            failure = _unexpected("GetStats")
        await abort(context, failure)
        raise AssertionError("abort returned")  # pragma: no cover

    def _stats(self, snapshot: Snapshot, caller: Caller | None) -> pb.GetStatsResponse:
        """Everyone's lines for an admin (or an open gateway); a key's own lines otherwise."""
        gateway = self._gateway
        settings = gateway.settings
        budgets = gateway.budgets
        everything = caller is None or caller.admin
        response = pb.GetStatsResponse(
            period=convert.stats_period_pb(snapshot.period), shared=snapshot.shared
        )
        if snapshot.start is not None:
            convert.timestamp(response.period_start, snapshot.start)

        def names(dimension: Dimension, configured: Iterable[str]) -> list[str]:
            seen = dict.fromkeys(configured)
            if everything:
                seen.update(dict.fromkeys(snapshot.stats[dimension]))
            return list(seen)

        def line(dimension: Dimension, name: str) -> pb.BudgetStatus | None:
            return convert.budget_status(budgets.line(dimension, name) if budgets else None)

        for group in names(Dimension.GROUP, settings.groups):
            if self._auth.allows_group(caller, group):
                response.groups.append(
                    pb.GroupStats(
                        name=group,
                        calls=convert.call_stats(snapshot.get(Dimension.GROUP, group)),
                    )
                )
        wall_offset = time.time() - self._clock()
        for deployment in settings.deployments:
            if not self._auth.allows_group(caller, deployment.model_group):
                continue
            entry = convert.deployment_stats(
                gateway.status(deployment),
                wall_offset,
                snapshot.get(Dimension.DEPLOYMENT, deployment.id),
                budgets.deployment_paused_until(deployment) if budgets else None,
            )
            response.deployments.append(entry)
        if caller is None or caller.admin:
            own_keys = [k.name for k in settings.keys]
            own_teams = sorted(
                {k.team for k in settings.keys if k.team is not None} | set(settings.teams)
            )
        else:
            own_keys = [caller.name]
            own_teams = [caller.team] if caller.team is not None else []
        for key in names(Dimension.KEY, own_keys):
            response.keys.append(
                pb.SpenderStats(
                    name=key,
                    calls=convert.call_stats(snapshot.get(Dimension.KEY, key)),
                    budget=line(Dimension.KEY, key),
                )
            )
        for team in names(Dimension.TEAM, own_teams):
            response.teams.append(
                pb.SpenderStats(
                    name=team,
                    calls=convert.call_stats(snapshot.get(Dimension.TEAM, team)),
                    budget=line(Dimension.TEAM, team),
                )
            )
        if everything:
            providers = dict.fromkeys(d.provider for d in settings.deployments)
            providers.update(dict.fromkeys(settings.provider_budgets))
            for provider in names(Dimension.PROVIDER, providers):
                stats = snapshot.get(Dimension.PROVIDER, provider)
                response.providers.append(
                    pb.ProviderStats(
                        name=provider,
                        spend_usd=stats.spend_usd if stats is not None else 0.0,
                        budget=line(Dimension.PROVIDER, provider),
                    )
                )
        return response

    def _models(self, caller: Caller | None) -> pb.ListModelsResponse:
        settings = self._gateway.settings
        wall_offset = time.time() - self._clock()
        gateway = self._gateway
        groups = [
            pb.ModelGroup(
                name=name,
                deployments=[
                    convert.deployment_status(gateway.status(d), wall_offset, gateway.rates(d))
                    for d in deployments
                ],
                fallbacks=settings.router.fallbacks.get(name, ()),
            )
            for name, deployments in settings.groups.items()
            if self._auth.allows_group(caller, name)
        ]
        aliases = [
            self._alias(name, settings.targets(name))
            for name in (*settings.aliases, *settings.auto_aliases)
            if all(self._auth.allows_group(caller, t) for t in settings.targets(name))
        ]
        return pb.ListModelsResponse(groups=groups, aliases=aliases)

    def _alias(self, name: str, targets: tuple[str, ...]) -> pb.Alias:
        """An alias with its defaults and the price range of the deployments it may reach."""
        settings = self._gateway.settings
        known = (self._gateway.rates(d) for group in targets for d in settings.groups[group])
        rates = [r for r in known if any(r)]
        auto = settings.auto_aliases.get(name)
        alias = pb.Alias(
            name=name,
            target=auto.hard if auto is not None else targets[0],
            defaults=convert.sampling_defaults(settings.alias_defaults.get(name)),
        )
        cheapest = convert.price(min(rates, key=sum)) if rates else None
        dearest = convert.price(max(rates, key=sum)) if rates else None
        if cheapest is not None and dearest is not None:
            alias.min_price.CopyFrom(cheapest)
            alias.max_price.CopyFrom(dearest)
        if auto is not None:
            threshold = self._gateway.auto_threshold(name)
            alias.auto.CopyFrom(
                pb.AutoRoute(simple_target=auto.simple, hard_target=auto.hard, threshold=threshold)
            )
        return alias

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
