"""get_stats against the live gateway: typed figures, and a key sees only its own lines."""

from __future__ import annotations

import pytest
from conftest import USER, Live

from switchboard_client import AsyncClient, Client


def test_get_stats_counts_the_keys_own_calls(live: Live, client: Client) -> None:
    before = client.get_stats("day").keys["client"].calls.requests
    answer = client.complete(live.chat, USER, max_tokens=5)
    stats = client.get_stats("day")
    assert stats.period == "day"
    assert stats.period_start is not None
    assert stats.shared is False
    mine = stats.keys["client"]
    assert mine.calls.requests == before + 1
    assert mine.calls.spend_usd >= answer.cost_usd
    assert mine.budget is None
    # Not an admin key: its own line only, no providers.
    assert set(stats.keys) == {"client"}
    assert stats.providers == {}
    group = stats.groups[live.chat]
    assert group.requests >= 1
    assert group.latency_p50 is not None
    assert group.latency_p95 is not None
    assert group.latency_p50 <= group.latency_p95


def test_an_admin_sees_every_key_and_provider(live: Live) -> None:
    with Client(live.target, api_key=live.admin_key, timeout=20) as admin:
        stats = admin.get_stats("total")
    assert stats.period == "total"
    assert stats.period_start is None
    assert {"client", "limited", "admin"} <= set(stats.keys)
    assert "openai" in stats.providers


def test_an_unknown_period_is_refused_before_a_call(client: Client) -> None:
    with pytest.raises(ValueError, match="period"):
        client.get_stats("week")


async def test_the_async_client_reads_the_same_figures(live: Live) -> None:
    async with AsyncClient(live.target, api_key=live.api_key, timeout=20) as client:
        await client.complete(live.chat, USER, max_tokens=5)
        stats = await client.get_stats("hour")
    assert stats.period == "hour"
    assert stats.keys["client"].calls.requests >= 1
