"""The semantic cache inside the gateway, with the real local model (all-MiniLM-L6-v2)."""

from __future__ import annotations

import dataclasses
import random

import pytest

from switchboard.app import build_gateway
from switchboard.config import parse_settings
from switchboard.domain import (
    CacheControl,
    CacheKind,
    Caller,
    CompletionRequest,
    Message,
    Role,
    Sampling,
)
from switchboard.gateway import Gateway
from tests.semantic_support import require_semantic
from tests.unit.fakes import FakeClock, ScriptedProvider

pytestmark = pytest.mark.usefixtures("semantic_packages")

CONFIG = """
model_list:
  - {model_name: chat, litellm_params: {model: openai/a, timeout: 30}, model_info: {id: a}}
  - {model_name: code, litellm_params: {model: openai/b, timeout: 30}, model_info: {id: b}}
router_settings: {num_retries: 0}
switchboard:
  cache: {scope: key, semantic: {groups: [chat], threshold: 0.85}}
"""
QUESTION = "What is the capital of France?"
PARAPHRASE = "Which city is France's capital?"
UNRELATED = "How do I reverse a list in Python?"


@pytest.fixture(scope="module")
def semantic_packages() -> None:
    require_semantic()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def provider(clock: FakeClock) -> ScriptedProvider:
    return ScriptedProvider(clock)


@pytest.fixture
async def gateway(clock: FakeClock, provider: ScriptedProvider) -> Gateway:
    gateway = build_gateway(
        parse_settings(CONFIG, source="test", env={}),
        clock=clock,
        rng=random.Random(1),
        provider=provider,
        sleep=clock.sleep,
    )
    assert gateway.cache is not None
    assert await gateway.cache.warm()
    return gateway


def _ask(text: str, model: str = "chat", **changes: object) -> CompletionRequest:
    request = CompletionRequest(model=model, messages=(Message(Role.USER, text),))
    return dataclasses.replace(request, **changes)  # type: ignore[arg-type]


async def test_a_paraphrase_hits_and_reports_its_similarity(
    gateway: Gateway, provider: ScriptedProvider
) -> None:
    first = await gateway.complete(_ask(QUESTION), deadline=None)
    hit = await gateway.complete(_ask(PARAPHRASE), deadline=None)
    assert len(provider.calls) == 1
    assert hit.route.cache_hit
    assert hit.route.cache is not None
    assert hit.route.cache.kind is CacheKind.SEMANTIC
    assert 0.85 <= hit.route.cache.similarity < 1.0
    assert hit.response.message.content == first.response.message.content


async def test_an_unrelated_prompt_misses(gateway: Gateway, provider: ScriptedProvider) -> None:
    await gateway.complete(_ask(QUESTION), deadline=None)
    other = await gateway.complete(_ask(UNRELATED), deadline=None)
    assert not other.route.cache_hit
    assert len(provider.calls) == 2


async def test_min_similarity_per_request_raises_the_bar(gateway: Gateway) -> None:
    await gateway.complete(_ask(QUESTION), deadline=None)
    strict = _ask(PARAPHRASE, cache=CacheControl(min_similarity=0.99))
    assert not (await gateway.complete(strict, deadline=None)).route.cache_hit


@pytest.mark.parametrize(
    "changes",
    [
        {"cache": CacheControl(namespace="other")},
        {"caller": Caller(name="someone-else")},
        {"sampling": Sampling(temperature=1.2)},
        {"model": "code", "cache": CacheControl(semantic=True)},
    ],
    ids=["namespace", "scope", "sampling", "group"],
)
async def test_a_paraphrase_never_crosses_namespaces_scopes_sampling_or_groups(
    gateway: Gateway, changes: dict[str, object]
) -> None:
    await gateway.complete(_ask(QUESTION, caller=Caller(name="me")), deadline=None)
    request = dataclasses.replace(_ask(PARAPHRASE, caller=Caller(name="me")), **changes)  # type: ignore[arg-type]
    assert not (await gateway.complete(request, deadline=None)).route.cache_hit


async def test_the_context_before_the_last_message_must_match(gateway: Gateway) -> None:
    system = Message(Role.SYSTEM, "You are a geography tutor. Answer in one word.")
    await gateway.complete(
        _ask(QUESTION, messages=(system, Message(Role.USER, QUESTION))), deadline=None
    )
    same_context = _ask(PARAPHRASE, messages=(system, Message(Role.USER, PARAPHRASE)))
    assert (await gateway.complete(same_context, deadline=None)).route.cache_hit
    assert not (await gateway.complete(_ask(PARAPHRASE), deadline=None)).route.cache_hit


async def test_semantic_is_per_group_unless_the_request_opts_in_or_out(
    gateway: Gateway, provider: ScriptedProvider
) -> None:
    await gateway.complete(_ask(QUESTION, model="code"), deadline=None)
    assert not (
        await gateway.complete(_ask(PARAPHRASE, model="code"), deadline=None)
    ).route.cache_hit
    opted_in = _ask(QUESTION + " ", model="code", cache=CacheControl(semantic=True))
    await gateway.complete(opted_in, deadline=None)
    again = _ask(PARAPHRASE, model="code", cache=CacheControl(semantic=True))
    assert (await gateway.complete(again, deadline=None)).route.cache_hit
    await gateway.complete(_ask(QUESTION), deadline=None)
    opted_out = _ask(PARAPHRASE, cache=CacheControl(semantic=False))
    assert not (await gateway.complete(opted_out, deadline=None)).route.cache_hit


async def test_an_invalidated_answer_is_not_found_by_similarity_either(gateway: Gateway) -> None:
    await gateway.complete(_ask(QUESTION, cache=CacheControl(tags=("geo",))), deadline=None)
    assert gateway.cache is not None
    assert await gateway.cache.invalidate(None, ("geo",)) == 1
    assert not (await gateway.complete(_ask(PARAPHRASE), deadline=None)).route.cache_hit
