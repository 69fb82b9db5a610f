"""The response cache over real gRPC, in front of the simulator.

One gateway with an in-process cache and three caller keys (`ops` may
invalidate; `ann` and `ben` are ordinary callers of different teams), then
two gateway processes sharing one real redis-server, as replicas do.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from switchboard.api.pb import gateway_pb2 as pb
from switchboard.api.pb import gateway_pb2_grpc as pb_grpc

from .procs import Proc, gateway_config, start_gateway

pytestmark = pytest.mark.integration

OPS = f"sk-ops-{secrets.token_hex(12)}"
ANN = f"sk-ann-{secrets.token_hex(12)}"
BEN = f"sk-ben-{secrets.token_hex(12)}"


def _auth(key: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {key}")]


def _key(name: str, key: str, **extra: object) -> dict[str, object]:
    return {"name": name, "sha256": hashlib.sha256(key.encode()).hexdigest(), **extra}


@dataclass(frozen=True)
class Served:
    proc: Proc
    stub: pb_grpc.GatewayStub


@pytest.fixture(scope="module")
def served(sim: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    config = gateway_config(
        sim,
        {"chat": ["instant"], "trickle": ["trickle"]},
        switchboard={
            "cache": {"ttl_seconds": 600},
            "keys": [
                _key("ops", OPS, admin=True),
                _key("ann", ANN, metadata={"team": "red"}),
                _key("ben", BEN, metadata={"team": "blue"}),
            ],
        },
    )
    proc, address = start_gateway(config, tmp_path_factory.mktemp("cache-gw"))
    with grpc.insecure_channel(address) as channel:
        yield Served(proc, pb_grpc.GatewayStub(channel))
    assert proc.terminate() == 0, proc.output()


def _ask(text: str, **cache: object) -> pb.CompleteRequest:
    return pb.CompleteRequest(
        model="chat",
        messages=[pb.Message(role=pb.ROLE_USER, content=text)],
        cache=pb.CacheControl(**cache),  # type: ignore[arg-type]
    )


def _unique() -> str:
    return f"question {uuid.uuid4()}"


def _stream(
    stub: pb_grpc.GatewayStub, request: pb.CompleteRequest, key: str = ANN
) -> tuple[list[str], pb.Final]:
    events = list(stub.StreamComplete(request, metadata=_auth(key), timeout=30))
    assert events[-1].WhichOneof("event") == "final"
    return [e.delta.content for e in events[:-1]], events[-1].final


def _details(err: grpc.RpcError) -> error_details_pb2.ErrorInfo:
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info
    raise AssertionError("no ErrorInfo")


def test_a_repeated_call_is_answered_from_the_cache(served: Served) -> None:
    request = _ask(_unique())
    first = served.stub.Complete(request, metadata=_auth(ANN), timeout=30)
    second = served.stub.Complete(request, metadata=_auth(ANN), timeout=30)
    assert not first.cache_hit
    assert not first.HasField("cache")
    assert second.cache_hit
    assert second.cost_usd == 0
    assert second.cache.kind == pb.CACHE_KIND_EXACT
    assert second.cache.similarity == 1
    assert second.cache.cost_saved_usd == pytest.approx(first.cost_usd)
    assert second.cache.created.seconds > 0
    assert second.message.content == first.message.content
    assert second.usage == first.usage
    assert len(second.attempts) == 0


def test_a_stream_hit_replays_the_same_text_in_the_same_order(served: Served) -> None:
    request = _ask(_unique())
    pieces, final = _stream(served.stub, request)
    again, replayed = _stream(served.stub, request)
    assert len(pieces) > 1
    assert again == pieces
    assert not final.cache_hit
    assert replayed.cache_hit
    assert replayed.cache.kind == pb.CACHE_KIND_EXACT
    assert replayed.usage == final.usage
    whole = served.stub.Complete(request, metadata=_auth(ANN), timeout=30)
    assert whole.cache_hit
    assert whole.message.content == "".join(pieces)


def test_a_stream_the_caller_cancelled_is_not_stored(served: Served) -> None:
    request = _ask(_unique())
    request.model = "trickle"
    call = served.stub.StreamComplete(request, metadata=_auth(ANN), timeout=30)
    first = next(call)
    assert first.WhichOneof("event") == "delta"
    call.cancel()
    _, final = _stream(served.stub, request)
    assert not final.cache_hit


def test_keys_do_not_share_answers_under_the_default_scope(served: Served) -> None:
    request = _ask(_unique())
    served.stub.Complete(request, metadata=_auth(ANN), timeout=30)
    assert not served.stub.Complete(request, metadata=_auth(BEN), timeout=30).cache_hit
    assert served.stub.Complete(request, metadata=_auth(ANN), timeout=30).cache_hit


def test_invalidation_needs_an_admin_key_and_says_how_many_it_removed(served: Served) -> None:
    doc = f"doc-{uuid.uuid4()}"
    built_on_doc = [_ask(_unique(), tags=[doc]) for _ in range(3)]
    unrelated = _ask(_unique(), tags=["doc-other"])
    for request in [*built_on_doc, unrelated]:
        served.stub.Complete(request, metadata=_auth(ANN), timeout=30)
    with pytest.raises(grpc.RpcError) as refused:
        served.stub.InvalidateCache(
            pb.InvalidateCacheRequest(tags=[doc]), metadata=_auth(ANN), timeout=10
        )
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert _details(refused.value).reason == "ADMIN_REQUIRED"
    removed = served.stub.InvalidateCache(
        pb.InvalidateCacheRequest(tags=[doc]), metadata=_auth(OPS), timeout=10
    )
    assert removed.removed == 3
    hits = [
        served.stub.Complete(r, metadata=_auth(ANN), timeout=30).cache_hit
        for r in [*built_on_doc, unrelated]
    ]
    assert hits == [False, False, False, True]


def test_invalidating_a_namespace_drops_only_it(served: Served) -> None:
    namespace = f"ns-{uuid.uuid4()}"
    inside, outside = _ask(_unique(), namespace=namespace), _ask(_unique())
    for request in (inside, outside):
        served.stub.Complete(request, metadata=_auth(ANN), timeout=30)
    removed = served.stub.InvalidateCache(
        pb.InvalidateCacheRequest(namespace=namespace), metadata=_auth(OPS), timeout=10
    )
    assert removed.removed == 1
    assert not served.stub.Complete(inside, metadata=_auth(ANN), timeout=30).cache_hit
    assert served.stub.Complete(outside, metadata=_auth(ANN), timeout=30).cache_hit


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (pb.InvalidateCacheRequest(), "tags"),
        (pb.InvalidateCacheRequest(tags=[""]), "tags[0]"),
        (pb.InvalidateCacheRequest(namespace="x" * 300), "namespace"),
    ],
)
def test_a_bad_invalidation_names_the_field(
    served: Served, request_: pb.InvalidateCacheRequest, field: str
) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        served.stub.InvalidateCache(request_, metadata=_auth(OPS), timeout=10)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(refused.value)  # type: ignore[arg-type]
    assert status is not None
    assert field in str(status.details)


@pytest.mark.parametrize(
    ("cache", "field"),
    [
        ({"min_similarity": 1.5}, "cache.min_similarity"),
        ({"tags": ["t"] * 65}, "cache.tags"),
        ({"ttl_seconds": 0}, "cache.ttl_seconds"),
    ],
)
def test_bad_cache_control_names_the_field(
    served: Served, cache: dict[str, object], field: str
) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        served.stub.Complete(_ask("x", **cache), metadata=_auth(ANN), timeout=10)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(refused.value)  # type: ignore[arg-type]
    assert status is not None
    assert field in str(status.details)


def test_list_models_shows_the_cache_size(served: Served) -> None:
    served.stub.Complete(_ask(_unique()), metadata=_auth(ANN), timeout=30)
    listing = served.stub.ListModels(pb.ListModelsRequest(), metadata=_auth(ANN), timeout=10)
    exact = {c.name: c for c in listing.caches}["exact"]
    assert exact.backend == "memory"
    assert exact.entries >= 1
    assert exact.bytes > 0


def test_two_gateways_share_answers_through_redis(sim: str, redis_url: str, tmp_path: Path) -> None:
    config = gateway_config(
        sim,
        {"chat": ["instant"]},
        switchboard={"cache": {"backend": "redis", "redis": {"url": redis_url}}},
    )
    procs = []
    try:
        for name in ("a", "b"):
            directory = tmp_path / name
            directory.mkdir()
            procs.append(start_gateway(config, directory))
        (_proc_a, address_a), (_proc_b, address_b) = procs
        with grpc.insecure_channel(address_a) as ca, grpc.insecure_channel(address_b) as cb:
            a, b = pb_grpc.GatewayStub(ca), pb_grpc.GatewayStub(cb)
            request = _ask(_unique(), tags=["shared-doc"])
            first = a.Complete(request, timeout=30)
            second = b.Complete(request, timeout=30)
            assert not first.cache_hit
            assert second.cache_hit
            assert second.message.content == first.message.content
            removed = b.InvalidateCache(pb.InvalidateCacheRequest(tags=["shared-doc"]), timeout=10)
            assert removed.removed == 1
            assert not a.Complete(request, timeout=30).cache_hit
            listing = a.ListModels(pb.ListModelsRequest(), timeout=10)
            assert {c.name: c.backend for c in listing.caches}["exact"] == "redis"
    finally:
        for proc, _ in procs:
            assert proc.terminate() == 0, proc.output()
