"""`AsyncClient` against a live gateway serving the simulator (conftest.live)."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator

import grpc
import pytest
from conftest import USER, Live

from switchboard_client import (
    AsyncClient,
    DeadlineExceeded,
    NotFound,
    RateLimited,
    Unauthenticated,
)


@pytest.fixture
async def aclient(live: Live) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(live.target, api_key=live.api_key, timeout=20) as c:
        yield c


async def test_complete(live: Live, aclient: AsyncClient) -> None:
    done = await aclient.complete(live.chat, USER, max_tokens=16)

    assert done.text
    assert done.model_group == live.chat
    assert 0 < done.usage.output_tokens <= 16
    assert done.usage.total_tokens == done.usage.input_tokens + done.usage.output_tokens
    assert done.cost_usd > 0
    assert done.attempts[-1].outcome == "success"
    assert done.attempts[-1].deployment == done.deployment


async def test_stream_yields_every_delta_then_the_final_usage(
    live: Live, aclient: AsyncClient
) -> None:
    model = live.stream
    whole = await aclient.complete(model, USER, seed=5)

    async with aclient.stream(model, USER, seed=5) as stream:
        deltas = [d async for d in stream]

    assert len(deltas) > 1
    assert all(deltas)
    assert "".join(deltas) == stream.text == whole.text
    final = stream.final
    assert final is not None
    assert final.usage == whole.usage
    assert final.usage.output_tokens > 0
    assert final.cost_usd > 0
    assert final.model_group == model
    assert final.attempts[-1].outcome == "success"


async def test_unknown_model_is_not_found_with_its_reason(aclient: AsyncClient) -> None:
    with pytest.raises(NotFound) as raised:
        await aclient.complete("no-such-model", USER)

    assert raised.value.reason == "MODEL_NOT_FOUND"
    assert raised.value.metadata == {"model": "no-such-model"}


async def test_stream_of_an_unknown_model_is_not_found(aclient: AsyncClient) -> None:
    with pytest.raises(NotFound) as raised:
        async for _ in aclient.stream("no-such-model", USER):
            pass

    assert raised.value.reason == "MODEL_NOT_FOUND"


async def test_spent_key_is_rate_limited_with_retry_info(live: Live, exhausted_key: str) -> None:
    async with AsyncClient(live.target, api_key=exhausted_key, timeout=10) as limited:
        with pytest.raises(RateLimited) as raised:
            await limited.complete(live.chat, USER, max_tokens=8)

    error = raised.value
    assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.reason == "CAPACITY_EXHAUSTED"
    assert error.retry_after is not None
    assert math.isfinite(error.retry_after)
    assert error.retry_after > 0
    assert [v.subject for v in error.quota_violations] == [error.metadata["limit"]]


async def test_retry_never_waits_past_the_deadline(live: Live, exhausted_key: str) -> None:
    deadline_s = 2.0
    async with AsyncClient(live.target, api_key=exhausted_key, retries=5) as limited:
        started = time.monotonic()
        with pytest.raises(RateLimited) as raised:
            # wait_for: a retry sleeping past the deadline fails the test, not holds it.
            await asyncio.wait_for(
                limited.complete(live.chat, USER, max_tokens=8, timeout=deadline_s),
                2 * deadline_s,
            )
        spent = time.monotonic() - started

    assert raised.value.retry_after is not None
    assert raised.value.retry_after > deadline_s
    assert spent < deadline_s


async def test_expired_deadline_is_deadline_exceeded(live: Live, aclient: AsyncClient) -> None:
    timeout = live.slow_ms / 1000 / 6
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        await aclient.complete(live.slow, USER, timeout=timeout)

    assert time.monotonic() - started < live.slow_ms / 1000


async def test_stream_deadline_expires(live: Live, aclient: AsyncClient) -> None:
    stream = aclient.stream(live.slow, USER, timeout=live.slow_ms / 1000 / 6)

    with pytest.raises(DeadlineExceeded):
        await anext(stream)
    assert stream.final is None


async def test_wrong_key_is_unauthenticated(live: Live) -> None:
    async with AsyncClient(live.target, api_key="sk-wrong", timeout=10) as stranger:
        with pytest.raises(Unauthenticated) as raised:
            await stranger.list_models()

    assert raised.value.reason == "UNAUTHENTICATED"


async def test_list_models(live: Live, aclient: AsyncClient) -> None:
    models = await aclient.list_models()

    assert {live.chat, live.slow} <= {g.name for g in models.groups}
    assert models.aliases[live.alias] == live.chat
