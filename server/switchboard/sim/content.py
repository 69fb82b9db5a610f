"""What the simulated model says: deterministic text and well-formed tool calls.

Every emitted piece is exactly one token under `tokens.count_text_tokens`, so the
usage the simulator reports equals the tokens it streamed, and a caller re-counting
the text gets the same number. Randomness comes only from the RNG passed in, so a
request `seed` reproduces its answer exactly.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .chat import ToolSpec
from .tokens import count_text_tokens, pretokenize

WORDS: tuple[str, ...] = (
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "that",
    "for",
    "it",
    "as",
    "was",
    "with",
    "be",
    "by",
    "on",
    "not",
    "he",
    "this",
    "are",
    "or",
    "his",
    "from",
    "at",
    "which",
    "but",
    "have",
    "an",
    "had",
    "they",
    "you",
    "were",
    "their",
    "one",
    "all",
    "we",
    "can",
    "her",
    "has",
    "there",
    "been",
    "if",
    "more",
    "when",
    "will",
    "would",
    "who",
    "so",
    "no",
    "model",
    "token",
    "stream",
    "router",
    "gateway",
    "request",
    "answer",
    "signal",
    "latency",
    "budget",
    "cache",
    "switch",
    "route",
    "packet",
    "channel",
    "reply",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "lazy",
    "dog",
    "river",
    "stone",
    "light",
    "garden",
    "window",
    "morning",
    "evening",
    "quiet",
    "bright",
    "simple",
    "careful",
    "number",
    "letter",
    "paper",
    "market",
    "little",
    "large",
    "small",
    "early",
    "later",
    "through",
    "between",
    "because",
    "before",
    "after",
    "under",
    "above",
    "around",
    "system",
    "network",
    "service",
    "client",
    "server",
    "engine",
    "record",
    "measure",
    "steady",
    "random",
    "second",
    "minute",
    "hour",
    "day",
    "week",
    "year",
    "people",
    "water",
    "music",
    "story",
    "travel",
    "winter",
    "summer",
    "autumn",
    "spring",
)
SENTENCE_END = "."
SENTENCE_END_RATE = 0.1


@dataclass(frozen=True, slots=True)
class Completion:
    """The pieces of one text answer and why it ended."""

    pieces: tuple[str, ...]
    finish_reason: str

    @property
    def text(self) -> str:
        return "".join(self.pieces)


def generate_pieces(rng: random.Random, count: int) -> list[str]:
    """`count` one-token pieces of sentence-like text."""
    pieces: list[str] = []
    sentence_start = True
    for _ in range(count):
        if not sentence_start and rng.random() < SENTENCE_END_RATE:
            pieces.append(SENTENCE_END)
            sentence_start = True
            continue
        word = rng.choice(WORDS)
        if sentence_start:
            word = word.capitalize()
        pieces.append(word if not pieces else " " + word)
        sentence_start = False
    return pieces


def truncate_at_stop(pieces: Sequence[str], stops: Sequence[str]) -> tuple[list[str], bool]:
    """Cut the pieces before the earliest stop sequence, as OpenAI omits the stop."""
    text = "".join(pieces)
    positions = [index for stop in stops if (index := text.find(stop)) >= 0]
    if not positions:
        return list(pieces), False
    cut = min(positions)
    kept: list[str] = []
    offset = 0
    for piece in pieces:
        if offset + len(piece) <= cut:
            kept.append(piece)
            offset += len(piece)
            continue
        if cut > offset:
            kept.append(piece[: cut - offset])
        break
    return kept, True


def plan_completion(
    rng: random.Random,
    length: int,
    max_tokens: int | None,
    stops: Sequence[str] = (),
) -> Completion:
    """The answer for a drawn `length`: capped by `max_tokens`, cut at a stop sequence."""
    capped = max_tokens is not None and max_tokens < length
    count = max_tokens if capped and max_tokens is not None else length
    pieces, stopped = truncate_at_stop(generate_pieces(rng, count), stops)
    finish_reason = "length" if capped and not stopped else "stop"
    return Completion(pieces=tuple(pieces), finish_reason=finish_reason)


# Characters per streamed piece of a JSON answer: about a token each.
JSON_PIECE_CHARS = 4


def plan_json(
    rng: random.Random, schema: Mapping[str, object] | None, *, broken: bool
) -> Completion:
    """A JSON answer: an instance of `schema` (its required properties), or a small
    object for plain JSON mode; `broken` cuts it short so that it does not parse."""
    if schema is not None and schema.get("type") == "object":
        value: object = tool_arguments(schema, rng)
    elif schema is not None:
        value = _example_value(schema, rng)
    else:
        value = {"answer": " ".join(rng.choice(WORDS) for _ in range(3))}
    text = json.dumps(value)
    if broken:
        text = text[: max(1, len(text) // 2)]
    pieces = tuple(text[i : i + JSON_PIECE_CHARS] for i in range(0, len(text), JSON_PIECE_CHARS))
    return Completion(pieces=pieces, finish_reason="stop")


def _example_value(schema: object, rng: random.Random) -> object:
    if not isinstance(schema, Mapping):
        return rng.choice(WORDS)
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((item for item in kind if item != "null"), "string")
    if kind == "integer":
        return rng.randint(1, 100)
    if kind == "number":
        return round(rng.uniform(0, 100), 2)
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "array":
        return []
    if kind == "object":
        return tool_arguments(schema, rng)
    if kind == "null":
        return None
    return rng.choice(WORDS)


def tool_arguments(schema: Mapping[str, object], rng: random.Random) -> dict[str, object]:
    """Arguments that satisfy the schema's required properties and nothing more."""
    properties = schema.get("properties")
    required = schema.get("required")
    if not isinstance(properties, Mapping) or not isinstance(required, list):
        return {}
    return {
        name: _example_value(properties.get(name), rng)
        for name in required
        if isinstance(name, str)
    }


@dataclass(frozen=True, slots=True)
class ToolCallPlan:
    """One tool call to return, with its arguments split as OpenAI streams them."""

    call_id: str
    name: str
    arguments: str
    fragments: tuple[str, ...]

    @property
    def completion_tokens(self) -> int:
        return count_text_tokens(self.name) + count_text_tokens(self.arguments)


def plan_tool_call(tool: ToolSpec, rng: random.Random, call_id: str) -> ToolCallPlan:
    arguments = json.dumps(tool_arguments(tool.parameters, rng))
    return ToolCallPlan(
        call_id=call_id,
        name=tool.name,
        arguments=arguments,
        fragments=tuple(pretokenize(arguments)),
    )
