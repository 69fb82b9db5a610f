"""Generated answers: reproducible from a seed, one token per piece, capped and stopped."""

from __future__ import annotations

import json
import random

from hypothesis import given
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from switchboard.sim.chat import ToolSpec
from switchboard.sim.content import (
    generate_pieces,
    plan_completion,
    plan_json,
    plan_tool_call,
    tool_arguments,
    truncate_at_stop,
)
from switchboard.sim.tokens import count_text_tokens


def test_same_seed_same_answer() -> None:
    first = plan_completion(random.Random(42), 30, None)
    second = plan_completion(random.Random(42), 30, None)
    assert first == second
    assert first.text != plan_completion(random.Random(43), 30, None).text


@given(st.integers(min_value=0, max_value=2**32), st.integers(min_value=0, max_value=300))
def test_every_piece_is_one_token(seed: int, count: int) -> None:
    pieces = generate_pieces(random.Random(seed), count)
    assert len(pieces) == count
    assert count_text_tokens("".join(pieces)) == count


def test_text_reads_like_sentences() -> None:
    text = plan_completion(random.Random(1), 60, None).text
    assert text[0].isupper()
    assert ".." not in text
    assert not text.startswith(" ")


def test_max_tokens_caps_the_answer_with_finish_length() -> None:
    capped = plan_completion(random.Random(5), 40, max_tokens=7)
    assert len(capped.pieces) == 7
    assert capped.finish_reason == "length"
    uncapped = plan_completion(random.Random(5), 40, max_tokens=40)
    assert len(uncapped.pieces) == 40
    assert uncapped.finish_reason == "stop"


def test_stop_sequence_cuts_before_the_stop() -> None:
    pieces = ["Hello", " there", " general", " kenobi"]
    kept, stopped = truncate_at_stop(pieces, ["ral k", "zzz"])
    assert stopped
    assert kept == ["Hello", " there", " gene"]
    assert truncate_at_stop(pieces, ["zzz"]) == (pieces, False)


def test_a_stop_hit_finishes_with_stop_even_when_capped() -> None:
    full = plan_completion(random.Random(9), 30, None)
    stop = full.pieces[3]
    stopped = plan_completion(random.Random(9), 30, max_tokens=10, stops=[stop])
    assert stopped.finish_reason == "stop"
    assert stop not in stopped.text
    assert len(stopped.pieces) <= 3


def test_tool_arguments_fill_required_properties_by_type() -> None:
    schema: dict[str, object] = {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "days": {"type": "integer"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "precise": {"type": "boolean"},
            "optional": {"type": "string"},
        },
        "required": ["city", "days", "unit", "precise"],
    }
    arguments = tool_arguments(schema, random.Random(3))
    assert set(arguments) == {"city", "days", "unit", "precise"}
    assert isinstance(arguments["city"], str)
    assert arguments["city"]
    assert isinstance(arguments["days"], int)
    assert arguments["unit"] == "celsius"
    assert isinstance(arguments["precise"], bool)


def test_tool_call_fragments_rebuild_the_arguments() -> None:
    tool = ToolSpec(
        name="get_weather",
        parameters={
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    )
    call = plan_tool_call(tool, random.Random(4), "call_abc")
    assert "".join(call.fragments) == call.arguments
    assert set(json.loads(call.arguments)) == {"city"}
    assert call.completion_tokens >= len(call.fragments) // 2


def test_json_answers_conform_to_the_schema_unless_broken() -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "n": {"type": "integer"}},
        "required": ["city", "n"],
    }
    for seed in range(20):
        good = plan_json(random.Random(seed), schema, broken=False)
        Draft202012Validator(schema).validate(json.loads(good.text))
        assert isinstance(json.loads(plan_json(random.Random(seed), None, broken=False).text), dict)
        broken = plan_json(random.Random(seed), schema, broken=True)
        try:
            json.loads(broken.text)
        except json.JSONDecodeError:
            continue
        raise AssertionError(f"a broken answer parsed: {broken.text!r}")
