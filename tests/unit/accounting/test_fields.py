"""The Redis field layout: names of any characters, read back exactly."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from switchboard.accounting import Dimension
from switchboard.accounting.fields import (
    entity_field,
    metrics,
    parse_entity,
    parse_stats,
    parse_usd,
)
from switchboard.accounting.tally import Counters

names = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)


@given(st.sampled_from(list(Dimension)), names, st.sampled_from(["", "requests", "errors:a:b"]))
def test_an_entity_field_reads_back(dimension: Dimension, name: str, metric: str) -> None:
    text = entity_field((dimension, name)) + (":" + metric if metric else "")
    assert parse_entity(text) == ((dimension, name), metric)


def test_a_name_holding_the_separator_is_not_another_entity() -> None:
    # Reading back is exact (above), so distinct entities never share a field; for example:
    tricky = entity_field((Dimension.KEY, "a:requests"))
    plain = entity_field((Dimension.KEY, "a")) + ":requests"
    assert tricky != plain
    assert parse_entity(tricky) == ((Dimension.KEY, "a:requests"), "")
    assert parse_entity(plain) == ((Dimension.KEY, "a"), "requests")


def test_counters_read_back_from_their_fields() -> None:
    counters = Counters()
    counters.add("timeout", 12, 100, 20, 0.25, 0.5, True)
    counters.add("success", 13, 1, 2, 0.125, 0.0, False)
    entity = (Dimension.TEAM, "a:1:b")
    hash_ = {
        (entity_field(entity) + ":" + metric).encode(): str(amount).encode()
        for metric, amount in metrics(counters)
    }
    (read,) = parse_stats(hash_).values()
    assert list(parse_stats(hash_)) == [entity]
    assert read.__class__ is Counters
    assert [getattr(read, s) for s in Counters.__slots__] == [
        getattr(counters, s) for s in Counters.__slots__
    ]


@pytest.mark.parametrize(
    "field",
    [b"nope", b"key:3:ab", b"key:x:abc:requests", b"planet:1:a:requests", b"key:1:ab:requests",
     b"key:1:a:unknown", b"key:1:a:latency:x", b"key:1:a:requests"],
)  # fmt: skip
def test_what_cannot_be_read_is_skipped(field: bytes) -> None:
    assert parse_stats({field: b"not a number"}) == {}


def test_usd_values() -> None:
    assert parse_usd(b"1.5") == 1.5
    assert [parse_usd(v) for v in (None, b"", b"nan", b"inf", b"-1", b"x")] == [0.0] * 6
