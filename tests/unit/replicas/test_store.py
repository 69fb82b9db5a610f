"""Reading back what joiners catch up on: aged on Redis's clock, checked, never trusted."""

from __future__ import annotations

import json
from typing import Any

import pytest
from redis.exceptions import ResponseError

from switchboard.replicas.events import Decoder, Rejected
from switchboard.replicas.store import Layout, parse_catch_up, queue_catch_up
from switchboard.routing.strategy import CallKind

COMPLETE, STREAM = CallKind.COMPLETE, CallKind.STREAM
IDS = ["a", "b"]
NOW_MS = 1_800_000_000_000  # Redis's TIME in the replies below
decoder = Decoder(IDS, max_cooldown_s=300.0)


def entry(added_ms: int, sender: str, seq: int, seconds: float, age_s: float = 0.0) -> Any:
    value = json.dumps([sender, seq, seconds, None, age_s]).encode()
    return (f"{added_ms}-0".encode(), {b"v": value})


def replies(
    cooldowns: dict[str, tuple[Any, Any]] | None = None,
    streams: dict[tuple[str, CallKind], Any] | None = None,
    time: Any = (NOW_MS // 1000, 0),
) -> list[Any]:
    """Replies in queue_catch_up's order: TIME, (GET, PTTL) per id, XREVRANGE per id and kind."""
    cooldowns, streams = cooldowns or {}, streams or {}
    out: list[Any] = [time]
    for deployment_id in IDS:
        out.extend(cooldowns.get(deployment_id, (None, -2)))
    for deployment_id in IDS:
        for kind in CallKind:
            out.append(streams.get((deployment_id, kind), []))
    return out


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: self.calls.append((name, args, kwargs))


def test_the_reads_and_the_key_names() -> None:
    pipe = Recorder()
    queue_catch_up(pipe, Layout("p:"), IDS, window=10)
    assert pipe.calls == [
        ("time", (), {}),
        ("get", ("p:cooldown:a",), {}),
        ("pttl", ("p:cooldown:a",), {}),
        ("get", ("p:cooldown:b",), {}),
        ("pttl", ("p:cooldown:b",), {}),
        ("xrevrange", ("p:latency:complete:a",), {"count": 10}),
        ("xrevrange", ("p:latency:stream:a",), {"count": 10}),
        ("xrevrange", ("p:latency:complete:b",), {"count": 10}),
        ("xrevrange", ("p:latency:stream:b",), {"count": 10}),
    ]
    assert Layout("p:").channel == "p:replicas"


def test_cooldowns_still_running_for_the_time_they_have_left() -> None:
    found = parse_catch_up(
        replies(cooldowns={"a": (b"1", 12_500), "b": (b"0", 400)}),
        IDS,
        decoder,
        stale_after_s=60.0,
    )
    assert found.cooldowns == [("a", 12.5, True), ("b", 0.4, False)]
    assert found.rejected == found.refused == []


def test_samples_are_aged_on_redis_clock_plus_their_age_when_stored() -> None:
    streams = {
        ("a", COMPLETE): [entry(NOW_MS - 2_000, "r", 2, 0.5, age_s=0.25)],
        ("b", STREAM): [
            entry(NOW_MS - 59_000, "r", 1, 0.1, age_s=0.5),
            entry(NOW_MS - 61_000, "r", 1, 9.0),
        ],
    }
    found = parse_catch_up(replies(streams=streams), IDS, decoder, stale_after_s=60.0)
    loaded = [(s.deployment_id, s.kind, s.sample.seconds, s.age_s) for s in found.samples]
    assert loaded == [("a", COMPLETE, 0.5, 2.25), ("b", STREAM, 0.1, 59.5)]  # 61 s: stale


def test_entries_from_the_future_and_invalid_values_are_rejected() -> None:
    streams = {
        ("a", COMPLETE): [
            entry(NOW_MS + 5_000, "r", 1, 0.5),
            (b"not-an-id", {b"v": b"[]"}),
            (f"{NOW_MS}-0".encode(), {b"v": b"[1]"}),
            (f"{NOW_MS}-0".encode(), {b"other": b"x"}),
        ],
    }
    found = parse_catch_up(replies(streams=streams), IDS, decoder, stale_after_s=60.0)
    assert found.samples == []
    assert len(found.rejected) == 4


def test_a_small_clock_lead_counts_as_now() -> None:
    streams = {("a", COMPLETE): [entry(NOW_MS + 500, "r", 1, 0.5)]}
    found = parse_catch_up(replies(streams=streams), IDS, decoder, stale_after_s=60.0)
    assert [s.age_s for s in found.samples] == [0.0]


def test_errors_redis_replied_are_refusals_and_the_rest_is_read() -> None:
    wrong = ResponseError("WRONGTYPE")
    found = parse_catch_up(
        replies(
            cooldowns={"a": (wrong, -2), "b": (b"1", 1000)},
            streams={("a", COMPLETE): wrong, ("b", COMPLETE): [entry(NOW_MS, "r", 1, 0.5)]},
        ),
        IDS,
        decoder,
        stale_after_s=60.0,
    )
    assert found.refused == [wrong, wrong]
    assert found.cooldowns == [("b", 1.0, True)]
    assert [s.deployment_id for s in found.samples] == ["b"]


@pytest.mark.parametrize("time", [ResponseError("unknown command"), None, ("x", 1)])
def test_without_redis_time_cooldowns_load_but_samples_cannot_be_aged(time: Any) -> None:
    found = parse_catch_up(
        replies(
            cooldowns={"a": (b"1", 1000)},
            streams={("a", COMPLETE): [entry(NOW_MS, "r", 1, 0.5)]},
            time=time,
        ),
        IDS,
        decoder,
        stale_after_s=60.0,
    )
    assert found.cooldowns == [("a", 1.0, True)]
    assert found.samples == []


def test_bad_stored_cooldowns_are_rejected() -> None:
    found = parse_catch_up(
        replies(cooldowns={"a": (b"1", -1), "b": (b"maybe", 1000)}),
        IDS,
        decoder,
        stale_after_s=60.0,
    )
    assert found.cooldowns == []
    assert all(isinstance(r, Rejected) for r in found.rejected)
    assert len(found.rejected) == 2
