"""The replica wire format: what goes out comes back, and nothing read can break a replica."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from switchboard.replicas import events
from switchboard.replicas.events import (
    Cooldown,
    Decoder,
    Rejected,
    Sample,
    Samples,
    StoredSample,
)
from switchboard.routing.strategy import CallKind

COMPLETE, STREAM = CallKind.COMPLETE, CallKind.STREAM
decoder = Decoder({"a", "b"}, max_cooldown_s=300.0)


def test_a_cooldown_comes_back_as_sent() -> None:
    data = events.encode_cooldown("r1", "a", 12.25, True)
    assert decoder.message(data) == Cooldown("r1", "a", 12.25, True)
    assert len(data) < 80  # compact


def test_samples_come_back_as_sent() -> None:
    sent = (Sample("a", COMPLETE, 0.5, 10, 0.125), Sample("b", STREAM, 0.0625, None, 0.0))
    assert decoder.message(events.encode_samples("r1", 7, sent)) == Samples("r1", 7, sent, 0)


def test_a_stored_sample_comes_back_as_stored() -> None:
    data = events.encode_stored("r1", 3, Sample("a", COMPLETE, 1.5, 20, 0.25))
    assert decoder.stored_sample(data) == StoredSample("r1", 3, 1.5, 20, 0.25)


def test_text_is_read_like_bytes() -> None:
    data = events.encode_cooldown("r1", "a", 1.0, False).decode()
    assert decoder.message(data) == Cooldown("r1", "a", 1.0, False)


def test_a_cooldown_longer_than_the_cap_is_capped() -> None:
    assert decoder.message(events.encode_cooldown("r", "a", 1e12, False)) == Cooldown(
        "r", "a", 300.0, False
    )


def test_deployments_not_served_here_are_left_out_and_counted() -> None:
    cooldown = decoder.message(events.encode_cooldown("r", "new", 5.0, False))
    assert cooldown == Rejected("a cooldown of an unknown deployment", unknown=True)
    sent = [Sample("new", COMPLETE, 1.0, 1, 0.0), Sample("a", COMPLETE, 2.0, 1, 0.0)]
    decoded = decoder.message(events.encode_samples("r", 1, sent))
    assert decoded == Samples("r", 1, (sent[1],), unknown=1)


def cool(**fields: Any) -> bytes:
    body = {"v": 1, "e": "cool", "r": "r", "d": "a", "s": 1.0, "q": False, **fields}
    return json.dumps(body).encode()


def lat(rows: Any, **fields: Any) -> bytes:
    return json.dumps({"v": 1, "e": "lat", "r": "r", "b": 1, "x": rows, **fields}).encode()


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\xff", id="not utf-8"),
        pytest.param(b"{", id="not json"),
        pytest.param(b"[" * 10_000, id="too deep"),
        pytest.param(b" " * (events.MAX_MESSAGE_BYTES + 1), id="too big"),
        pytest.param(b"[]", id="not an object"),
        pytest.param(cool(v=2), id="unknown version"),
        pytest.param(cool(e="other"), id="unknown event"),
        pytest.param(cool(extra=1), id="extra field"),
        pytest.param(json.dumps({"v": 1, "e": "cool"}).encode(), id="missing fields"),
        pytest.param(cool(r=""), id="empty sender"),
        pytest.param(cool(r="x" * 65), id="long sender"),
        pytest.param(cool(r=1), id="sender not a string"),
        pytest.param(cool(d=["a"]), id="deployment not a string"),
        pytest.param(cool(s=0), id="no time"),
        pytest.param(cool(s=-1.0), id="negative"),
        pytest.param(cool(s=True), id="bool seconds"),
        pytest.param(cool(s="1"), id="string seconds"),
        pytest.param(cool(s=float("nan")), id="NaN"),
        pytest.param(cool(s=float("inf")), id="Infinity"),
        pytest.param(cool().replace(b'"s": 1.0', b'"s": 1e999'), id="overflows to inf"),
        pytest.param(cool(s=10**400), id="huge integer"),
        pytest.param(cool(q=1), id="quota not a bool"),
        pytest.param(lat({}), id="batch not a list"),
        pytest.param(lat([["a", "c", 1.0, 1, 0.0]] * (events.MAX_BATCH + 1)), id="long batch"),
        pytest.param(lat([["a", "c", 1.0, 1]]), id="short row"),
        pytest.param(lat(["a"]), id="row not a list"),
        pytest.param(lat([["a", "x", 1.0, 1, 0.0]]), id="unknown kind"),
        pytest.param(lat([[1, "c", 1.0, 1, 0.0]]), id="deployment not a string"),
        pytest.param(lat([["a", "c", -0.5, 1, 0.0]]), id="negative seconds"),
        pytest.param(lat([["a", "c", 1e6, 1, 0.0]]), id="absurd seconds"),
        pytest.param(lat([["a", "c", 1.0, -1, 0.0]]), id="negative tokens"),
        pytest.param(lat([["a", "c", 1.0, 1.5, 0.0]]), id="fractional tokens"),
        pytest.param(lat([["a", "c", 1.0, True, 0.0]]), id="bool tokens"),
        pytest.param(lat([["a", "c", 1.0, 1, -1.0]]), id="negative age"),
        pytest.param(lat([], b=-1), id="negative seq"),
        pytest.param(lat([], b=2**63), id="seq out of range"),
        pytest.param(lat([], b=1.0), id="fractional seq"),
    ],
)
def test_invalid_messages_are_rejected(data: bytes) -> None:
    assert isinstance(decoder.message(data), Rejected)


@pytest.mark.parametrize(
    "data",
    [
        b"{}",
        b"[1, 2]",
        b'["r", 1, 1.0, 1]',
        b'["r", 1, NaN, 1, 0.0]',
        b'["", 1, 1.0, 1, 0.0]',
        None,
    ],
)
def test_invalid_stored_samples_are_rejected(data: bytes | None) -> None:
    assert isinstance(decoder.stored_sample(data), Rejected)


@pytest.mark.parametrize(
    ("value", "pttl", "expected"),
    [
        (b"1", 2500, (2.5, True)),
        (b"0", 1, (0.001, False)),
        (b"1", 10**9, (300.0, True)),  # capped
        (b"yes", 1000, None),
        (b"1", -1, None),  # no expiry: not a replica's
        (b"1", 0, None),
        (b"1", True, None),
    ],
)
def test_stored_cooldowns(value: bytes, pttl: object, expected: tuple[float, bool] | None) -> None:
    stored = decoder.stored_cooldown(value, pttl)
    if expected is None:
        assert isinstance(stored, Rejected)
    else:
        assert stored == expected


def test_batches_fit_the_bounds_and_keep_every_sample_in_order() -> None:
    long_id = "d" * 1000
    samples = [Sample(long_id, COMPLETE, float(i), i, 0.0) for i in range(600)]
    runs = list(events.batches(samples))
    assert [s for run in runs for s in run] == samples
    for run in runs:
        assert len(run) <= events.MAX_BATCH
        assert len(events.encode_samples("x" * 64, events.MAX_SEQ, run)) <= events.MAX_MESSAGE_BYTES


def test_a_sample_that_can_never_fit_is_left_out() -> None:
    huge = Sample("d" * events.MAX_MESSAGE_BYTES, COMPLETE, 1.0, 1, 0.0)
    small = Sample("a", COMPLETE, 1.0, 1, 0.0)
    assert [list(run) for run in events.batches([huge, small])] == [[small]]


def test_the_cap_must_be_a_positive_finite_number() -> None:
    for cap in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="max_cooldown_s"):
            Decoder({"a"}, max_cooldown_s=cap)


@given(st.binary(max_size=2048))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    assert isinstance(decoder.message(data), Cooldown | Samples | Rejected)
    assert isinstance(decoder.stored_sample(data), StoredSample | Rejected)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=8)
    | st.sampled_from(["a", "b", "c", "s", "cool", "lat"]),
    lambda inner: (
        st.lists(inner, max_size=6)
        | st.dictionaries(
            st.sampled_from(["v", "e", "r", "d", "s", "q", "b", "x"]), inner, max_size=8
        )
    ),
    max_leaves=30,
)


@given(json_values)
def test_arbitrary_json_never_raises_and_what_passes_is_in_bounds(value: Any) -> None:
    data = json.dumps(value).encode()
    event = decoder.message(data)
    if isinstance(event, Cooldown):
        assert event.deployment_id in {"a", "b"}
        assert 0 < event.seconds <= 300.0  # NaN fails this too
    elif isinstance(event, Samples):
        for sample in event.samples:
            assert sample.deployment_id in {"a", "b"}
            assert 0 <= sample.seconds <= events.MAX_SAMPLE_S
            assert 0 <= sample.age_s <= events.MAX_AGE_S
    assert isinstance(decoder.stored_sample(data), StoredSample | Rejected)


@given(
    st.floats(0, events.MAX_SAMPLE_S),
    st.none() | st.integers(0, events.MAX_TOKENS),
    st.floats(0, events.MAX_AGE_S),
    st.sampled_from(CallKind),
)
def test_every_sample_in_bounds_travels(
    seconds: float, tokens: int | None, age: float, kind: CallKind
) -> None:
    sample = Sample("a", kind, seconds, tokens, age)
    decoded = decoder.message(events.encode_samples("r", 1, [sample]))
    assert isinstance(decoded, Samples)
    (back,) = decoded.samples
    assert (back.seconds, back.output_tokens, back.kind) == (seconds, tokens, kind)
    assert back.age_s == pytest.approx(age, abs=1e-6)
