"""A stored answer and its bytes.

One shape serves both call shapes: the text is kept as the pieces a stream
delivered (a Complete answer is one piece), so a stream hit replays the
same text in the same order and a Complete hit joins the pieces. Entries
may come back from a shared Redis: `decode` trusts nothing it reads, and
anything malformed is a miss, never an error.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from switchboard.domain import FinishReason, ToolCall, Usage

FORMAT = 1
# Finish reasons of an answer worth repeating: a truncated or withheld one is not.
STORABLE = frozenset({FinishReason.STOP, FinishReason.TOOL_CALLS})


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    id: str
    model: str
    deployment: str
    model_group: str
    pieces: tuple[str, ...]
    tool_calls: tuple[ToolCall, ...]
    finish_reason: FinishReason
    usage: Usage
    cost_usd: float
    # Wall-clock seconds since the epoch.
    created: float

    @property
    def content(self) -> str:
        return "".join(self.pieces)


def encode(answer: CachedAnswer) -> bytes:
    document = {
        "v": FORMAT,
        "id": answer.id,
        "model": answer.model,
        "deployment": answer.deployment,
        "group": answer.model_group,
        "pieces": list(answer.pieces),
        "tools": [[c.id, c.name, c.arguments] for c in answer.tool_calls],
        "finish": answer.finish_reason.value,
        "usage": [
            answer.usage.input_tokens,
            answer.usage.output_tokens,
            answer.usage.cached_input_tokens,
        ],
        "cost": answer.cost_usd,
        "created": answer.created,
    }
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def decode(data: bytes) -> CachedAnswer | None:
    """The answer, or None for anything that is not an entry this version wrote."""
    try:
        doc = json.loads(data)
        if not isinstance(doc, dict) or doc.get("v") != FORMAT:
            return None
        pieces = doc["pieces"]
        tools = doc["tools"]
        usage = doc["usage"]
        if not (
            isinstance(pieces, list)
            and all(isinstance(p, str) for p in pieces)
            and isinstance(tools, list)
            and all(_is_call(c) for c in tools)
            and isinstance(usage, list)
            and len(usage) == 3
            and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in usage)
        ):
            return None
        return CachedAnswer(
            id=_text(doc["id"]),
            model=_text(doc["model"]),
            deployment=_text(doc["deployment"]),
            model_group=_text(doc["group"]),
            pieces=tuple(pieces),
            tool_calls=tuple(ToolCall(id=c[0], name=c[1], arguments=c[2]) for c in tools),
            finish_reason=FinishReason(doc["finish"]),
            usage=Usage(
                input_tokens=usage[0], output_tokens=usage[1], cached_input_tokens=usage[2]
            ),
            cost_usd=_number(doc["cost"]),
            created=_number(doc["created"]),
        )
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return None


def _is_call(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 3 and all(isinstance(v, str) for v in value)


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("expected a string")
    return value


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TypeError("expected a finite number")
    return max(0.0, float(value))
