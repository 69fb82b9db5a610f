"""A batch's EVAL arguments, and the reading of the script's refusals."""

from __future__ import annotations

from switchboard.accounting.batch import MARKER_TTL_S, Batch

HOUR = ("h", "d", "m", "t")


def test_fields_are_sent_once_with_the_hashes_they_go_to() -> None:
    batch = Batch(7, {(HOUR, "a"): 3, (HOUR, "b"): 0.25, (("w",), "k"): 1e-05})
    numkeys, arguments = batch.arguments("marker", {"h": 10, "d": 20, "m": 30, "w": 40})
    assert numkeys == 6
    assert arguments == [
        "marker", "h", "d", "m", "t", "w",
        "7", str(MARKER_TTL_S), "10", "20", "30", "0", "40",
        "4", "2", "3", "4", "5", "2", "a", "3", "b", "0.25",
        "1", "6", "1", "k", "1e-05",
    ]  # fmt: skip
    assert batch.order == [(HOUR, "a"), (HOUR, "b"), (("w",), "k")]


def test_refusals_name_the_hash_field_and_amount() -> None:
    batch = Batch(1, {(HOUR, "a"): 3, (("w",), "k"): 0.5})
    batch.arguments("marker", {})
    reply: list[object] = [0, 1, 2, b"WRONGTYPE Operation", 2, 1, b"ERR overflow"]
    assert batch.refusals(reply) == [
        ("d", "a", 3, "WRONGTYPE Operation"),
        ("w", "k", 0.5, "ERR overflow"),
    ]
    assert batch.refusals([0]) == []
    assert batch.refusals([1]) == []
