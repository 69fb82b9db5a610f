"""Checking answers against response_format: what passes, and what a refusal says."""

from __future__ import annotations

import pytest

from switchboard.domain import FormatKind, ResponseFormat
from switchboard.json_output import output_problem, schema_problem

SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
    "required": ["name", "age"],
}
PERSON = ResponseFormat(FormatKind.JSON_SCHEMA, name="person", schema=SCHEMA)


def test_text_is_never_checked() -> None:
    assert output_problem("not json at all", ResponseFormat()) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"name": "Ada"', "not JSON"),
        ('{"name": "Ada", "age": -1}', "minimum 0 at $.age"),
        ('{"name": "Ada", "age": "secret-value"}', 'type "integer" at $.age'),
        ('{"age": 1}', "required"),
    ],
)
def test_an_answer_off_the_schema_says_where(text: str, expected: str) -> None:
    problem = output_problem(text, PERSON)
    assert problem is not None
    assert expected in problem
    assert output_problem('{"name": "Ada", "age": 36}', PERSON) is None


def test_json_mode_wants_an_object() -> None:
    json_mode = ResponseFormat(FormatKind.JSON_OBJECT)
    assert output_problem('{"any": ["thing"]}', json_mode) is None
    assert output_problem("[1, 2]", json_mode) == "the answer is JSON but not an object (a list)"


def test_a_refusal_never_quotes_the_answer() -> None:
    problem = output_problem('{"name": "Ada", "age": "secret-value"}', PERSON)
    assert problem is not None
    assert "secret-value" not in problem
    assert "Ada" not in problem


def test_schemas_are_checked_as_json_schema() -> None:
    assert schema_problem(SCHEMA) is None
    problem = schema_problem({"type": "no-such-type"})
    assert problem is not None
    assert problem.startswith("not a valid JSON Schema")
