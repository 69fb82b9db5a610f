"""Whether an answer is the JSON a caller asked for (`response_format`).

Providers honour JSON mode and schemas unevenly (some only prompt for it),
so with validation on the gateway checks the answer itself: it must parse,
be an object (JSON_OBJECT), and conform to the schema (JSON_SCHEMA). What
is wrong is described from the schema's side only (where, and which rule):
the description reaches attempts, spans and logs, which never carry the
answer's own text.

jsonschema is imported on first use: a config that never asks for JSON
never loads it.
"""

from __future__ import annotations

import json
from typing import Any

from switchboard.domain import FormatKind, ResponseFormat

# How much of a rule's value a description quotes.
MAX_RULE_CHARS = 80


def schema_problem(schema: dict[str, Any]) -> str | None:
    """Why `schema` is not a JSON Schema a validator can use; None when it is."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        rule = _rule(exc.validator, exc.validator_value)
        return f"not a valid JSON Schema: {rule} at {_path(exc.json_path)}"
    return None


def output_problem(text: str, response_format: ResponseFormat) -> str | None:
    """Why `text` is not what `response_format` asks for; None when it is (or it asks text)."""
    if not response_format.wants_json:
        return None
    try:
        value = json.loads(text)
    except ValueError as exc:
        return (
            f"the answer is not JSON ({type(exc).__name__} at character {getattr(exc, 'pos', '?')})"
        )
    if response_format.kind is FormatKind.JSON_OBJECT or response_format.schema is None:
        if not isinstance(value, dict):
            return f"the answer is JSON but not an object (a {type(value).__name__})"
        return None
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(dict(response_format.schema))
    error = next(iter(validator.iter_errors(value)), None)
    if error is None:
        return None
    return (
        f"the answer does not conform to schema {response_format.name!r}: "
        f"{_rule(error.validator, error.validator_value)} at {_path(error.json_path)}"
    )


def _rule(validator: Any, value: Any) -> str:
    shown = json.dumps(value, default=str)
    if len(shown) > MAX_RULE_CHARS:
        shown = shown[: MAX_RULE_CHARS - 3] + "..."
    return f"{validator} {shown}"


def _path(json_path: str) -> str:
    return (
        json_path if len(json_path) <= MAX_RULE_CHARS else json_path[: MAX_RULE_CHARS - 3] + "..."
    )
