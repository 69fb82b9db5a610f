"""The canonical calls of the contract tests: what the caller asks, what providers answer.

One request per mode, the same for every provider; the providers' answers
carry the same facts (text, tool call, token counts), each in its own wire
format (`capture.py`). A new mode is a `Mode` member, its request here and
its reply in `REPLIES`.
"""

from __future__ import annotations

import enum
from types import MappingProxyType
from typing import Any

from google.protobuf import struct_pb2

from switchboard.api.pb import gateway_pb2 as pb

from .capture import Reply, ToolCallReply


class Mode(enum.Enum):
    PLAIN = "plain"  # a system and a user message, answered with text
    TOOLS = "tools"  # one tool, tool_choice auto, answered with a call
    STREAM = "stream"  # PLAIN through StreamComplete


SYSTEM = "You answer in one short sentence."
USER = "What is the weather in Paris?"
MAX_TOKENS = 64

TOOL_NAME = "get_weather"
TOOL_DESCRIPTION = "The current weather in a city."
TOOL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "description": "The city's name."},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city"],
    "additionalProperties": False,
}
TOOL_ARGUMENTS = {"city": "Paris", "unit": "celsius"}

ANSWER = "Sunny and 21 degrees in Paris."
PIECES = ("Sunny and", " 21 degrees", " in Paris.")

REPLIES = MappingProxyType(
    {
        Mode.PLAIN: Reply(text=ANSWER, input_tokens=23, output_tokens=9),
        Mode.TOOLS: Reply(
            tool_call=ToolCallReply(TOOL_NAME, TOOL_ARGUMENTS), input_tokens=71, output_tokens=18
        ),
        Mode.STREAM: Reply(
            text=ANSWER, pieces=PIECES, stream=True, input_tokens=24, output_tokens=11
        ),
    }
)


def request(group: str, mode: Mode) -> pb.CompleteRequest:
    """The canonical request of `mode`, for model group `group`."""
    message = pb.CompleteRequest(
        model=group,
        messages=[
            pb.Message(role=pb.ROLE_SYSTEM, content=SYSTEM),
            pb.Message(role=pb.ROLE_USER, content=USER),
        ],
        max_tokens=MAX_TOKENS,
    )
    if mode is Mode.TOOLS:
        parameters = struct_pb2.Struct()
        parameters.update(TOOL_SCHEMA)
        message.tools.append(
            pb.Tool(name=TOOL_NAME, description=TOOL_DESCRIPTION, parameters=parameters)
        )
        message.tool_choice = "auto"
    return message
