"""The canonical calls of the contract tests: what the caller asks, what providers answer.

One request per mode, the same for every provider; the providers' answers
carry the same facts (text, tool call, structured answer, token counts),
each in its own wire format (`capture.py`). A new mode is a `Mode` member,
its request here and its reply in `REPLIES`.
"""

from __future__ import annotations

import enum
import struct
import zlib
from types import MappingProxyType
from typing import Any

from google.protobuf import struct_pb2

from switchboard.api.pb import gateway_pb2 as pb

from .capture import Reply, ToolCallReply


class Mode(enum.Enum):
    PLAIN = "plain"  # a system and a user message, answered with text
    TOOLS = "tools"  # one tool, tool_choice auto, answered with a call
    STREAM = "stream"  # PLAIN through StreamComplete
    JSON_SCHEMA = "json_schema"  # PLAIN asking for JSON that conforms to a schema, validated
    IMAGE = "image"  # a user message of a text part and an inline PNG, answered with text


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

SCHEMA_NAME = "weather_report"
ANSWER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "description": "The city's name."},
        "conditions": {"type": "string", "enum": ["sunny", "cloudy", "rain"]},
        "windy": {"type": "boolean"},
    },
    "required": ["city", "conditions", "windy"],
    "additionalProperties": False,
}
JSON_ANSWER = {"city": "Paris", "conditions": "sunny", "windy": False}


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_pixel(rgba: tuple[int, int, int, int]) -> bytes:
    """A valid 1x1 RGBA PNG: signature, IHDR, one IDAT row (filter 0, the pixel), IEND."""
    header = struct.pack(">IIBBBBB", 1, 1, 8, 6, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(b"\x00" + bytes(rgba)))
        + _png_chunk(b"IEND", b"")
    )


IMAGE_PROMPT = "What colour is this pixel?"
IMAGE_MEDIA_TYPE = "image/png"
IMAGE_DETAIL = "low"  # OpenAI's; Gemini makes it a media resolution, the others drop it
IMAGE_PNG = _png_pixel((255, 0, 0, 255))
IMAGE_ANSWER = "The pixel is red."

REPLIES = MappingProxyType(
    {
        Mode.PLAIN: Reply(text=ANSWER, input_tokens=23, output_tokens=9),
        Mode.TOOLS: Reply(
            tool_call=ToolCallReply(TOOL_NAME, TOOL_ARGUMENTS), input_tokens=71, output_tokens=18
        ),
        Mode.STREAM: Reply(
            text=ANSWER, pieces=PIECES, stream=True, input_tokens=24, output_tokens=11
        ),
        Mode.JSON_SCHEMA: Reply(structured=JSON_ANSWER, input_tokens=97, output_tokens=15),
        Mode.IMAGE: Reply(text=IMAGE_ANSWER, input_tokens=42, output_tokens=6),
    }
)


def request(group: str, mode: Mode) -> pb.CompleteRequest:
    """The canonical request of `mode`, for model group `group`."""
    if mode is Mode.IMAGE:
        user = pb.Message(
            role=pb.ROLE_USER,
            parts=[
                pb.ContentPart(text=IMAGE_PROMPT),
                pb.ContentPart(
                    image=pb.ImagePart(
                        data=IMAGE_PNG, media_type=IMAGE_MEDIA_TYPE, detail=IMAGE_DETAIL
                    )
                ),
            ],
        )
    else:
        user = pb.Message(role=pb.ROLE_USER, content=USER)
    message = pb.CompleteRequest(
        model=group,
        messages=[pb.Message(role=pb.ROLE_SYSTEM, content=SYSTEM), user],
        max_tokens=MAX_TOKENS,
    )
    if mode is Mode.TOOLS:
        parameters = struct_pb2.Struct()
        parameters.update(TOOL_SCHEMA)
        message.tools.append(
            pb.Tool(name=TOOL_NAME, description=TOOL_DESCRIPTION, parameters=parameters)
        )
        message.tool_choice = "auto"
    if mode is Mode.JSON_SCHEMA:
        schema = struct_pb2.Struct()
        schema.update(ANSWER_SCHEMA)
        message.response_format.CopyFrom(
            pb.ResponseFormat(
                type=pb.RESPONSE_FORMAT_TYPE_JSON_SCHEMA,
                name=SCHEMA_NAME,
                schema=schema,
                strict=True,
            )
        )
        message.validate_json = True
    return message
