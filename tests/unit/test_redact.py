"""Provider text is redacted before it reaches the log."""

from __future__ import annotations

import time

import pytest

from switchboard.redact import MAX_DETAIL_CHARS, redact


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("Rate limit reached in organization org-AbCdEf123 on rpm", "org-AbCdEf123"),
        ("Incorrect API key provided: sk-abc...wxyz.", "sk-abc...wxyz"),
        ("key sk-proj-AbCdEfGhIjKlMnOp0123 used", "sk-proj-AbCdEfGhIjKlMnOp0123"),
        ("anthropic sk-ant-api03-xYz_123-abc refused", "sk-ant-api03-xYz_123-abc"),
        ("google AIzaSyA1234567890abcdefGHIJ is invalid", "AIzaSyA1234567890abcdefGHIJ"),
        ("Authorization: Bearer abc.def-ghi", "abc.def-ghi"),
        ("GET https://x.example/v1?key=s3cr3t&alt=json", "s3cr3t"),
        ("signed ?sig=AbC123%2F&se=2030", "AbC123%2F"),
        ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig_part", "eyJhbGciOiJIUzI1NiJ9"),
        ("hash 0123456789abcdef0123456789abcdef done", "0123456789abcdef0123456789abcdef"),
        ("b64 YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXoxMjM0NTY= end", "YWJjZGVmZ2hpamtsbW5vcHFy"),
        ("aws AKIAIOSFODNN7EXAMPLE here", "AKIAIOSFODNN7EXAMPLE"),
        ("contact ops.team+llm@example.co.uk now", "ops.team+llm@example.co.uk"),
        ("project proj_AbC123 over quota", "proj_AbC123"),
    ],
)
def test_secrets_are_replaced_without_a_trace(text: str, secret: str) -> None:
    redacted = redact(text)
    assert secret not in redacted
    assert secret[:6] not in redacted  # not even a prefix survives
    assert redacted.split()[0] == text.split()[0]  # the words around it do


def test_plain_words_stay() -> None:
    text = "The server had an error while processing your request; risk-free retry, desk-top"
    assert redact(text) == text


def test_one_bounded_line() -> None:
    redacted = redact("first\nsecond\r\n\tthird\x00" + "x " * 10_000)
    assert "\n" not in redacted
    assert "\x00" not in redacted
    assert redacted.startswith("first second third")
    assert len(redacted) == MAX_DETAIL_CHARS
    assert redacted.endswith("…")


def test_a_secret_cut_by_the_bound_still_leaves_nothing() -> None:
    text = "x" * (MAX_DETAIL_CHARS - 10) + " sk-abcdefghijklmnopqrstuvwxyz0123456789"
    assert "sk-" not in redact(text)


@pytest.mark.parametrize(
    "text", ["x" * 1_000_000, "a1" * 500_000, "a." * 500_000 + "@", "-" * 10**6]
)
def test_hostile_text_costs_little(text: str) -> None:
    started = time.perf_counter()
    redact(text)
    assert time.perf_counter() - started < 0.05
