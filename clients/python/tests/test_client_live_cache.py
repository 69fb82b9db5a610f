"""The response cache through both clients, against the live gateways (conftest.live).

`live.cache_target` caches each key's answers; `live.target` has no cache.
The cache gateway lives for the whole run, so every test asks its own
questions (and tags them with its own documents): what another test stored
can never make one of these hit or miss.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from conftest import Live

from switchboard_client import (
    AsyncClient,
    Cache,
    Client,
    FailedPrecondition,
    InvalidArgument,
    PermissionDenied,
)

# The gateway stamps an answer with its own wall clock, to the nanosecond: the
# same machine's clock, but not read at the same instant as the test's.
CLOCK_SLACK = timedelta(seconds=1)


def _ask() -> list[dict[str, str]]:
    """A question no other call of the run asks."""
    return [{"role": "user", "content": f"Say something about {uuid.uuid4()}."}]


def _doc() -> str:
    return f"doc-{uuid.uuid4()}"


@pytest.fixture
def cached(live: Live) -> Iterator[Client]:
    with Client(live.cache_target, api_key=live.api_key, timeout=20) as c:
        yield c


@pytest.fixture
def admin(live: Live) -> Iterator[Client]:
    with Client(live.cache_target, api_key=live.admin_key, timeout=20) as c:
        yield c


@pytest.fixture
async def acached(live: Live) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(live.cache_target, api_key=live.api_key, timeout=20) as c:
        yield c


@pytest.fixture
async def aadmin(live: Live) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(live.cache_target, api_key=live.admin_key, timeout=20) as c:
        yield c


def test_a_repeated_call_is_answered_from_the_cache(live: Live, cached: Client) -> None:
    question = _ask()
    before = datetime.now(UTC)
    first = cached.complete(live.chat, question)
    second = cached.complete(live.chat, question)
    after = datetime.now(UTC)

    assert first.cache_hit is False
    assert first.cache is None
    assert first.cost_usd > 0
    assert second.cache_hit is True
    assert second.text == first.text
    assert second.usage == first.usage
    assert second.cost_usd == 0
    assert second.attempts == ()
    hit = second.cache
    assert hit is not None
    assert hit.kind == "exact"
    assert hit.similarity == 1.0
    assert hit.cost_saved_usd == pytest.approx(first.cost_usd)
    assert hit.created is not None
    assert before - CLOCK_SLACK <= hit.created <= after + CLOCK_SLACK
    # The Cache type and the dict form both reach the gateway.
    assert not cached.complete(live.chat, question, cache=Cache(no_cache=True)).cache
    assert cached.complete(live.chat, question, cache={"no_store": True}).cache_hit


def test_a_stream_is_replayed_from_the_cache(live: Live, cached: Client) -> None:
    question = _ask()
    with cached.stream(live.stream, question) as stream:
        pieces = list(stream)
    with cached.stream(live.stream, question) as again:
        replayed = list(again)

    assert len(pieces) > 1
    assert replayed == pieces
    first, final = stream.final, again.final
    assert first is not None
    assert final is not None
    assert first.cache_hit is False
    assert first.cache is None
    assert final.cache_hit is True
    assert final.cost_usd == 0
    assert final.usage == first.usage
    assert final.cache is not None
    assert final.cache.kind == "exact"
    assert final.cache.cost_saved_usd == pytest.approx(first.cost_usd)
    whole = cached.complete(live.stream, question)
    assert whole.cache_hit
    assert whole.text == "".join(pieces)


def test_namespaces_keep_answers_apart(live: Live, cached: Client) -> None:
    question = _ask()
    cached.complete(live.chat, question, cache={"namespace": _doc()})

    assert not cached.complete(live.chat, question, cache={"namespace": _doc()}).cache_hit


def test_invalidating_tags_drops_the_answers_built_on_them(
    live: Live, cached: Client, admin: Client
) -> None:
    doc = _doc()
    built_on_doc = [_ask(), _ask()]
    unrelated = _ask()
    for question in built_on_doc:
        cached.complete(live.chat, question, cache=Cache(tags=[doc, _doc()]))
    cached.complete(live.chat, unrelated, cache=Cache(tags=[_doc()]))

    assert admin.invalidate_cache(tags=[doc]) == 2
    hits = [cached.complete(live.chat, q).cache_hit for q in [*built_on_doc, unrelated]]
    assert hits == [False, False, True]
    assert admin.invalidate_cache(tags=[doc]) == 0


def test_invalidating_a_namespace_drops_only_it(live: Live, cached: Client, admin: Client) -> None:
    namespace = _doc()
    inside, outside = _ask(), _ask()
    cached.complete(live.chat, inside, cache={"namespace": namespace})
    cached.complete(live.chat, outside)

    assert admin.invalidate_cache(namespace=namespace) == 1
    assert not cached.complete(live.chat, inside, cache={"namespace": namespace}).cache_hit
    assert cached.complete(live.chat, outside).cache_hit


def test_list_models_shows_the_caches(live: Live, cached: Client, client: Client) -> None:
    cached.complete(live.chat, _ask())

    caches = {c.name: c for c in cached.list_models().caches}
    exact = caches["exact"]
    assert exact.backend == "memory"
    assert exact.entries >= 1
    assert exact.bytes is not None
    assert exact.bytes > 0
    assert client.list_models().caches == ()


def test_invalidation_needs_an_admin_key(cached: Client) -> None:
    with pytest.raises(PermissionDenied) as raised:
        cached.invalidate_cache(tags=[_doc()])

    assert raised.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert raised.value.reason == "ADMIN_REQUIRED"


def test_a_gateway_without_a_cache_refuses_to_invalidate(live: Live) -> None:
    with (
        Client(live.target, api_key=live.admin_key, timeout=10) as admin,
        pytest.raises(FailedPrecondition) as raised,
    ):
        admin.invalidate_cache(tags=[_doc()])

    assert raised.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert raised.value.reason == "CACHE_DISABLED"


def test_the_gateway_names_a_bad_tag_or_similarity(
    live: Live, cached: Client, admin: Client
) -> None:
    with pytest.raises(InvalidArgument) as bad_tag:
        admin.invalidate_cache(tags=[_doc(), ""])
    with pytest.raises(InvalidArgument) as bad_similarity:
        cached.complete(live.chat, _ask(), cache=Cache(semantic=True, min_similarity=1.5))

    assert {v.field for v in bad_tag.value.field_violations} == {"tags[1]"}
    assert {v.field for v in bad_similarity.value.field_violations} == {"cache.min_similarity"}


async def test_async_hit_then_invalidation(
    live: Live, acached: AsyncClient, aadmin: AsyncClient
) -> None:
    question, doc = _ask(), _doc()
    first = await acached.complete(live.chat, question, cache={"tags": [doc]})
    second = await acached.complete(live.chat, question, cache={"tags": [doc]})

    assert not first.cache_hit
    assert second.cache is not None
    assert second.cache.kind == "exact"
    assert second.cache.cost_saved_usd == pytest.approx(first.cost_usd)
    async with acached.stream(live.chat, question, cache={"tags": [doc]}) as stream:
        assert "".join([d async for d in stream]) == first.text
    assert stream.final is not None
    assert stream.final.cache is not None
    assert (await aadmin.invalidate_cache(tags=[doc])) == 1
    assert not (await acached.complete(live.chat, question)).cache_hit
    models = await acached.list_models()
    assert "exact" in {c.name for c in models.caches}


async def test_async_invalidation_needs_an_admin_key(acached: AsyncClient) -> None:
    with pytest.raises(PermissionDenied) as raised:
        await acached.invalidate_cache(namespace=_doc())

    assert raised.value.reason == "ADMIN_REQUIRED"
