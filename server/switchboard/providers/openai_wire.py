"""The request fields of OpenAI's chat completions, built from a domain request.

Both adapters build their request from here: litellm takes these fields as
keyword arguments and forwards them to OpenAI-compatible upstreams unchanged,
and the pooled-HTTP fast path posts them itself. One builder means the two
paths cannot drift apart in what they send (a unit test compares the bodies
on the wire). No litellm import here: the fast path must not pay for it.
"""

from __future__ import annotations

from typing import Any

from switchboard.domain import CompletionRequest, Message, Sampling


def request_fields(request: CompletionRequest) -> dict[str, Any]:
    """`messages`, the sampling fields the caller set, `tools` and `tool_choice`."""
    fields: dict[str, Any] = {"messages": [message_dict(m) for m in request.messages]}
    fields.update(sampling_fields(request.sampling))
    if request.tools:
        fields["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": t.name,
                    "description": t.description,
                    "parameters": dict(t.parameters) or {"type": "object", "properties": {}},
                },
            }
            for t in request.tools
        ]
        if request.tool_choice:
            fields["tool_choice"] = tool_choice(request.tool_choice)
    return fields


def sampling_fields(sampling: Sampling) -> dict[str, Any]:
    """Only what the caller set: an absent field keeps the provider's default."""
    optional = {
        "max_tokens": sampling.max_tokens,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "seed": sampling.seed,
        "presence_penalty": sampling.presence_penalty,
        "frequency_penalty": sampling.frequency_penalty,
    }
    fields: dict[str, Any] = {k: v for k, v in optional.items() if v is not None}
    if sampling.stop:
        fields["stop"] = list(sampling.stop)
    return fields


def tool_choice(choice: str) -> str | dict[str, Any]:
    if choice in ("auto", "none", "required"):
        return choice
    return {"type": "function", "function": {"name": choice}}


def message_dict(message: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role.value, "content": message.content}
    if message.name:
        out["name"] = message.name
    if message.tool_calls:
        out["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in message.tool_calls
        ]
    if message.tool_call_id:
        out["tool_call_id"] = message.tool_call_id
    return out
