"""Cache keys: what makes two requests the same question, and whose answer it is.

The exact key is a hash of the normalised request: the model group it
resolved to (so an alias and its group share answers), the messages, every
sampling field, the tools and tool choice, plus the cache namespace and the
caller's scope. Metadata, time to live and tags are not part of the
question. A semantic lookup compares only the last message's text, so its
partition holds everything else: the context before that message must be
identical, as must the sampling fields and tools. A long shared system
prompt therefore cannot make two different questions look alike.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from switchboard.domain import (
    AudioPart,
    Caller,
    CompletionRequest,
    ImagePart,
    Message,
    Part,
    Sampling,
    TextPart,
    Tool,
)

# Bumped whenever the key's material changes, so old entries are never read as new.
KEY_VERSION = 1
# The scope of an open gateway (no caller keys): there is no one to tell apart.
OPEN_SCOPE = ""
GLOBAL_SCOPE = "*"
# The key metadata field that names a caller's team.
TEAM_FIELD = "team"


class CacheKeys:
    """The keys of one request; the semantic partition is worked out only when asked for."""

    __slots__ = ("_head", "_partition", "_request", "exact", "namespace", "prompt")

    def __init__(self, request: CompletionRequest, group: str, scope: str) -> None:
        self._request = request
        self.namespace = request.cache.namespace
        self._head: list[Any] = [
            KEY_VERSION,
            scope,
            self.namespace,
            group,
            _sampling(request.sampling),
            [_tool(t) for t in request.tools],
            request.tool_choice,
        ]
        if request.response_format is not None:
            # A JSON answer is another answer (absent: the keys stored before it existed).
            self._head.append(request.response_format.openai())
        options, extra = request.options.openai(), request.options.extra_params
        if options or extra:
            self._head.append([options, dict(extra)])
        # The exact key (hex SHA-256), unique to scope, namespace and request.
        self.exact = _digest([*self._head, [_message(m) for m in request.messages]])
        last = request.messages[-1] if request.messages else None
        # What the semantic index compares: the last message's text.
        self.prompt = last.content if last is not None else ""
        self._partition: str | None = None

    @property
    def partition(self) -> str:
        """The semantic partition: scope, namespace, group, context, sampling, tools."""
        if self._partition is None:
            messages = self._request.messages
            context: list[Any] = [_message(m) for m in messages[:-1]]
            if messages:
                last = messages[-1]
                # Its role, name, tool calls and parts are context too; only its text is
                # compared (an image is never "similar" to another).
                context.append([last.role.value, last.name, [list(c) for c in _calls(last)]])
                if last.parts:
                    context.append([_part(p) for p in last.parts])
            self._partition = _digest([*self._head, context])
        return self._partition


def scope_of(caller: Caller | None, scope: str) -> str:
    """Whose answers a caller may read: its own key's, its team's, or everyone's.

    A key with no team under the `team` scope keeps to itself: sharing is
    what the operator grants, never what a missing field implies.
    """
    if caller is None:
        return OPEN_SCOPE
    if scope == "global":
        return GLOBAL_SCOPE
    if scope == "team":
        team = caller.metadata.get(TEAM_FIELD)
        if team:
            return f"team:{team}"
    return f"key:{caller.name}"


def cache_keys(request: CompletionRequest, group: str, scope: str) -> CacheKeys:
    return CacheKeys(request, group, scope)


def _digest(material: Any) -> str:
    text = json.dumps(material, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _sampling(s: Sampling) -> list[Any]:
    return [
        s.max_tokens,
        s.temperature,
        s.top_p,
        list(s.stop),
        s.seed,
        s.presence_penalty,
        s.frequency_penalty,
    ]


def _tool(t: Tool) -> list[Any]:
    return [t.name, t.description, _canonical(t.parameters)]


def _canonical(value: Any) -> Any:
    """A JSON value with its objects' keys sorted, so key order does not split entries."""
    if isinstance(value, dict):
        return {str(k): _canonical(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    return value


def _calls(m: Message) -> list[tuple[str, str, str]]:
    return [(c.id, c.name, c.arguments) for c in m.tool_calls]


def _message(m: Message) -> list[Any]:
    key = [m.role.value, m.content, m.name, [list(c) for c in _calls(m)], m.tool_call_id]
    if m.parts:
        # Absent when there are none, so text-only keys stay what they were.
        key.append([_part(p) for p in m.parts])
    return key


def _part(part: Part) -> list[Any]:
    """A part as key material: bytes by their digest, so a key never holds an image."""
    if isinstance(part, TextPart):
        return ["text", part.text]
    if isinstance(part, ImagePart):
        source = part.url or hashlib.sha256(part.data).hexdigest()
        return ["image", source, part.media_type, part.detail]
    if isinstance(part, AudioPart):
        return ["audio", hashlib.sha256(part.data).hexdigest(), part.format]
    return ["file", hashlib.sha256(part.data).hexdigest(), part.media_type, part.filename]
