"""A loopback HTTP server that plays one LLM provider, for the contract tests.

A `CaptureServer` records every request exactly as it arrived (method,
path, query, headers, JSON body) and answers with the `Reply` the test set,
in its persona's native format: OpenAI's chat completions (also Azure, Groq
and Mistral, each with its own stream quirks), Anthropic's messages,
Bedrock's Converse and ConverseStream (AWS's binary event stream), Gemini's
generateContent and Ollama's /api/chat. The persona knows the wire format
only; what to say (text, a tool call or a structured answer, whole or
streamed, how many tokens) is the test's `Reply`.

The servers run on their own event loop in a thread (`CaptureLoop`), as a
real provider is another party: litellm makes some calls with a blocking
client from inside its async path (Ollama's `/api/show`), and a server on
the caller's loop could never answer them. Streams are written whole, at
once: the client reads them as the provider's chunks, and nothing waits on
a timer.
"""

from __future__ import annotations

import asyncio
import binascii
import json
import struct
import threading
from collections.abc import Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import web

# --- what the test sees and says --------------------------------------------------


@dataclass(frozen=True)
class Recorded:
    """One request as the server received it. Header names are lower-cased."""

    method: str
    path: str  # decoded
    raw_path: str  # as sent, percent-escapes kept, without the query
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: Any  # the parsed JSON body; None when there was none (or it was not JSON)
    raw: bytes


@dataclass(frozen=True)
class ToolCallReply:
    name: str
    arguments: Mapping[str, Any]


@dataclass(frozen=True)
class Reply:
    """What the provider answers: text, one tool call or a structured answer, whole or
    streamed.

    `structured` answers a `response_format`, as the provider would answer what
    litellm asked of it: JSON text, or, when the request forces one tool (litellm's
    way with Bedrock, and with Groq models it deems without native schemas), a call
    of that tool with the structured answer as its arguments.
    """

    text: str = ""
    tool_call: ToolCallReply | None = None
    structured: Mapping[str, Any] | None = None
    stream: bool = False
    # The text in the pieces it is streamed in; `text` is their concatenation.
    pieces: tuple[str, ...] = ()
    input_tokens: int = 0
    output_tokens: int = 0

    def chunks(self) -> tuple[str, ...]:
        return self.pieces or (self.text,)

    def text_for(self, forced_tool: str | None) -> str:
        """The answer's text, for a request that forced `forced_tool` (or none)."""
        if self.structured is None:
            return self.text
        return "" if forced_tool is not None else json.dumps(self.structured)

    def call_for(self, forced_tool: str | None) -> ToolCallReply | None:
        """The answer's tool call, for a request that forced `forced_tool` (or none)."""
        if self.structured is not None and forced_tool is not None:
            return ToolCallReply(forced_tool, self.structured)
        return self.tool_call


class Persona(Protocol):
    """A provider's wire format: answers `reply` to `request`."""

    async def respond(
        self, request: web.Request, body: Any, reply: Reply
    ) -> web.StreamResponse: ...


# --- the server -----------------------------------------------------------------

START_TIMEOUT_S = 10.0


class CaptureLoop:
    """An event loop on a thread of its own, for the capture servers."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="capture-servers", daemon=True
        )

    def __enter__(self) -> CaptureLoop:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(START_TIMEOUT_S)
        self.loop.close()

    def run(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        """Run `coroutine` on the capture thread and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(START_TIMEOUT_S)


class CaptureServer:
    """One persona on a loopback port; `expect(reply)` before each call."""

    def __init__(self, persona: Persona) -> None:
        self.persona = persona
        self.requests: list[Recorded] = []
        self._reply: Reply | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def expect(self, reply: Reply) -> list[Recorded]:
        """Answer the next requests with `reply`; the list they are recorded into."""
        self._reply = reply
        self.requests = []
        return self.requests

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:  # kept as `raw`; a body that is not JSON fails the body check
            body = None
        recorded = Recorded(
            method=request.method,
            path=request.path,
            raw_path=request.raw_path.split("?", 1)[0],
            query=dict(request.query),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
            raw=raw,
        )
        self.requests.append(recorded)
        if self._reply is None:
            return web.json_response({"error": "no reply was expected"}, status=500)
        return await self.persona.respond(request, body, self._reply)


# --- stream encodings -----------------------------------------------------------


async def _send(
    request: web.Request, content_type: str, parts: Iterable[bytes], headers: Mapping[str, str]
) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": content_type, **headers})
    await response.prepare(request)
    for part in parts:
        await response.write(part)
    await response.write_eof()
    return response


def sse(events: Iterable[tuple[str | None, Any]], *, newline: str = "\n") -> list[bytes]:
    """Server-sent events: `(event name or None, data)`; data that is not text is JSON."""
    out = []
    for name, data in events:
        text = data if isinstance(data, str) else json.dumps(data)
        lines = ([f"event: {name}"] if name else []) + [f"data: {text}"]
        out.append((newline.join(lines) + newline + newline).encode())
    return out


def ndjson(objects: Iterable[Any]) -> list[bytes]:
    return [(json.dumps(o) + "\n").encode() for o in objects]


def aws_event(event_type: str, payload: Any) -> bytes:
    """One message of AWS's binary event stream (`application/vnd.amazon.eventstream`).

    prelude (total length, headers length, CRC32 of those 8 bytes), headers
    (name length, name, type 7 = string, value length, value), the JSON
    payload, and a CRC32 of everything before it.
    """
    headers = b""
    for name, value in (
        (":event-type", event_type),
        (":content-type", "application/json"),
        (":message-type", "event"),
    ):
        encoded = value.encode()
        headers += bytes([len(name)]) + name.encode() + b"\x07"
        headers += struct.pack(">H", len(encoded)) + encoded
    body = json.dumps(payload).encode()
    total = 12 + len(headers) + len(body) + 4
    prelude = struct.pack(">II", total, len(headers))
    prelude += struct.pack(">I", binascii.crc32(prelude))
    message = prelude + headers + body
    return message + struct.pack(">I", binascii.crc32(message))


# --- personas -------------------------------------------------------------------

CREATED = 1_700_000_000


@dataclass(frozen=True)
class OpenAIChat:
    """OpenAI's chat completions, and the providers that speak it.

    `usage`: when a stream reports its usage. `asked` is OpenAI's way: a last
    chunk with no choices, only when the request set
    `stream_options.include_usage`; `with_finish` puts it on the finishing
    chunk, always (Mistral). `x_groq` adds Groq's own `x_groq` (with the
    usage on the finishing chunk). `prompt_filter_chunk` opens the stream with
    Azure's content-filter chunk (no choices). `extra`: top-level fields of
    every answer and chunk (Groq's `service_tier`, say).
    """

    model: str
    id: str = "chatcmpl-capture"
    usage: str = "asked"
    x_groq: bool = False
    prompt_filter_chunk: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)

    def _usage(self, reply: Reply) -> dict[str, int]:
        return {
            "prompt_tokens": reply.input_tokens,
            "completion_tokens": reply.output_tokens,
            "total_tokens": reply.input_tokens + reply.output_tokens,
        }

    def _chunk(self, choices: list[Any], **extra: Any) -> dict[str, Any]:
        chunk = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": self.model,
            "choices": choices,
            **self.extra,
        }
        return {**chunk, **extra}

    async def respond(self, request: web.Request, body: Any, reply: Reply) -> web.StreamResponse:
        if reply.stream:
            return await _send(
                request, "text/event-stream", self._stream(body, reply), self.headers
            )
        choice = body.get("tool_choice") if isinstance(body, dict) else None
        forced = choice["function"]["name"] if isinstance(choice, dict) else None
        message: dict[str, Any] = {"role": "assistant", "content": reply.text_for(forced) or None}
        finish = "stop"
        call = reply.call_for(forced)
        if call is not None:
            message["tool_calls"] = [
                {
                    "id": "call_capture",
                    "type": "function",
                    "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
                }
            ]
            finish = "tool_calls"
        answer = {
            "id": self.id,
            "object": "chat.completion",
            "created": CREATED,
            "model": self.model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": self._usage(reply),
            **self.extra,
        }
        if self.x_groq:
            answer["x_groq"] = {"id": "req_capture"}
        return web.json_response(answer, headers=self.headers)

    def _stream(self, body: Any, reply: Reply) -> list[bytes]:
        chunks: list[Any] = []
        if self.prompt_filter_chunk:
            chunks.append(
                {
                    "id": "",
                    "object": "",
                    "created": 0,
                    "model": "",
                    "choices": [],
                    "prompt_filter_results": [
                        {"prompt_index": 0, "content_filter_results": {}},
                    ],
                }
            )
        chunks.append(self._chunk([{"index": 0, "delta": {"role": "assistant", "content": ""}}]))
        chunks += [
            self._chunk([{"index": 0, "delta": {"content": piece}, "finish_reason": None}])
            for piece in reply.chunks()
        ]
        extra: dict[str, Any] = {}
        if self.usage == "with_finish":
            extra["usage"] = self._usage(reply)
        if self.x_groq:
            extra["x_groq"] = {"id": "req_capture", "usage": self._usage(reply)}
        chunks.append(self._chunk([{"index": 0, "delta": {}, "finish_reason": "stop"}], **extra))
        options = body.get("stream_options") if isinstance(body, dict) else None
        if self.usage == "asked" and isinstance(options, dict) and options.get("include_usage"):
            chunks.append(self._chunk([], usage=self._usage(reply)))
        return sse([(None, c) for c in chunks] + [(None, "[DONE]")])


@dataclass(frozen=True)
class AnthropicMessages:
    """Anthropic's /v1/messages, and its SSE stream of typed events."""

    model: str

    async def respond(self, request: web.Request, body: Any, reply: Reply) -> web.StreamResponse:
        headers = {"request-id": "req_capture"}
        if reply.stream:
            return await _send(request, "text/event-stream", self._stream(reply), headers)
        content: list[dict[str, Any]] = []
        text = reply.text_for(None)  # structured output: `output_format`, answered as text
        if text:
            content.append({"type": "text", "text": text})
        stop = "end_turn"
        if reply.tool_call is not None:
            content.append(
                {
                    "type": "tool_use",
                    "id": "toolu_capture",
                    "name": reply.tool_call.name,
                    "input": dict(reply.tool_call.arguments),
                }
            )
            stop = "tool_use"
        answer = {
            "id": "msg_capture",
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": content,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": {"input_tokens": reply.input_tokens, "output_tokens": reply.output_tokens},
        }
        return web.json_response(answer, headers=headers)

    def _stream(self, reply: Reply) -> list[bytes]:
        start = {
            "type": "message_start",
            "message": {
                "id": "msg_capture",
                "type": "message",
                "role": "assistant",
                "model": self.model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": reply.input_tokens, "output_tokens": 1},
            },
        }
        events: list[tuple[str | None, Any]] = [
            ("message_start", start),
            (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
            ),
            ("ping", {"type": "ping"}),
        ]
        events += [
            (
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": piece},
                },
            )
            for piece in reply.chunks()
        ]
        events += [
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": reply.output_tokens},
                },
            ),
            ("message_stop", {"type": "message_stop"}),
        ]
        return sse(events)


@dataclass(frozen=True)
class BedrockConverse:
    """Bedrock's Converse (JSON) and ConverseStream (AWS's binary event stream)."""

    async def respond(self, request: web.Request, body: Any, reply: Reply) -> web.StreamResponse:
        headers = {"x-amzn-RequestId": "capture-request-id"}
        usage = {
            "inputTokens": reply.input_tokens,
            "outputTokens": reply.output_tokens,
            "totalTokens": reply.input_tokens + reply.output_tokens,
        }
        if reply.stream:
            frames = [aws_event("messageStart", {"role": "assistant"})]
            frames += [
                aws_event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": piece}})
                for piece in reply.chunks()
            ]
            frames += [
                aws_event("contentBlockStop", {"contentBlockIndex": 0}),
                aws_event("messageStop", {"stopReason": "end_turn"}),
                aws_event("metadata", {"usage": usage, "metrics": {"latencyMs": 42}}),
            ]
            return await _send(request, "application/vnd.amazon.eventstream", frames, headers)
        choice = body.get("toolConfig", {}).get("toolChoice", {}) if body else {}
        forced = choice["tool"]["name"] if "tool" in choice else None
        content: list[dict[str, Any]] = []
        text = reply.text_for(forced)
        if text:
            content.append({"text": text})
        stop = "end_turn"
        call = reply.call_for(forced)
        if call is not None:
            content.append(
                {
                    "toolUse": {
                        "toolUseId": "tooluse_capture",
                        "name": call.name,
                        "input": dict(call.arguments),
                    }
                }
            )
            stop = "tool_use"
        answer = {
            "output": {"message": {"role": "assistant", "content": content}},
            "stopReason": stop,
            "usage": usage,
            "metrics": {"latencyMs": 42},
        }
        return web.json_response(answer, headers=headers)


@dataclass(frozen=True)
class GeminiGenerate:
    """Gemini's generateContent, and streamGenerateContent as SSE (`alt=sse`).

    Gemini says STOP for an answer that is a function call, too.
    """

    model: str

    def _usage(self, reply: Reply) -> dict[str, int]:
        return {
            "promptTokenCount": reply.input_tokens,
            "candidatesTokenCount": reply.output_tokens,
            "totalTokenCount": reply.input_tokens + reply.output_tokens,
        }

    def _answer(self, parts: list[Any], reply: Reply, finish: str | None) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
        if finish is not None:
            candidate["finishReason"] = finish
        return {
            "candidates": [candidate],
            "usageMetadata": self._usage(reply),
            "modelVersion": self.model,
            "responseId": "capture-response",
        }

    async def respond(self, request: web.Request, body: Any, reply: Reply) -> web.StreamResponse:
        if reply.stream:
            pieces = reply.chunks()
            events = [
                self._answer([{"text": piece}], reply, "STOP" if i == len(pieces) - 1 else None)
                for i, piece in enumerate(pieces)
            ]
            return await _send(
                request, "text/event-stream", sse([(None, e) for e in events], newline="\r\n"), {}
            )
        parts: list[dict[str, Any]] = []
        if reply.text_for(None):
            parts.append({"text": reply.text_for(None)})
        if reply.tool_call is not None:
            parts.append(
                {
                    "functionCall": {
                        "name": reply.tool_call.name,
                        "args": dict(reply.tool_call.arguments),
                    }
                }
            )
        return web.json_response(self._answer(parts, reply, "STOP"))


@dataclass(frozen=True)
class OllamaChat:
    """Ollama's /api/chat: one JSON object, or newline-delimited JSON when streaming."""

    model: str

    def _done(self, reply: Reply, message: dict[str, Any]) -> dict[str, Any]:
        return {
            "model": self.model,
            "created_at": "2024-01-01T00:00:00Z",
            "message": message,
            "done_reason": "stop",
            "done": True,
            "total_duration": 1_000_000,
            "load_duration": 1_000,
            "prompt_eval_count": reply.input_tokens,
            "prompt_eval_duration": 1_000,
            "eval_count": reply.output_tokens,
            "eval_duration": 1_000,
        }

    async def respond(self, request: web.Request, body: Any, reply: Reply) -> web.StreamResponse:
        if reply.stream:
            lines: list[Any] = [
                {
                    "model": self.model,
                    "created_at": "2024-01-01T00:00:00Z",
                    "message": {"role": "assistant", "content": piece},
                    "done": False,
                }
                for piece in reply.chunks()
            ]
            lines.append(self._done(reply, {"role": "assistant", "content": ""}))
            return await _send(request, "application/x-ndjson", ndjson(lines), {})
        message: dict[str, Any] = {"role": "assistant", "content": reply.text_for(None)}
        if reply.tool_call is not None:
            message["tool_calls"] = [
                {
                    "function": {
                        "name": reply.tool_call.name,
                        "arguments": dict(reply.tool_call.arguments),
                    }
                }
            ]
        return web.json_response(self._done(reply, message))
