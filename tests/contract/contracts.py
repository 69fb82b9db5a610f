"""What litellm sends each provider for the canonical calls, pinned exactly.

One `Contract` a provider: the litellm model string and fake credentials,
the persona that answers (`capture.py`), and the request each mode must
produce: the target (path and query, as sent), the headers that carry the
credential (and any other header a mode adds), the whole JSON body, and
named JSON pointers to the facts that make up the contract (where the system
prompt, max tokens, the tool schema, the tool choice, the stream flag, the
answer's schema and the image go), checked one by one before the body so
that a failure says which fact moved (`checks.py`).

A mode's body is the plain body with `changes[mode]` laid over its top-level
keys; its target is `targets[mode]`, else `target`; its headers are `headers`
with `mode_headers[mode]` added (a header pinned for one mode is pinned absent
from the others); its facts are those of `where` its body holds, then
`mode_where[mode]` (named for the mode, even where they share a place with
one of `where`'s: Groq's answer schema is a tool schema). No fact holds
another, and a list's items come in order, so that a failure names the one
that moved. Adding a mode is adding its entry to `changes` (and `targets`,
`mode_headers` or `mode_where` as it needs) here, and its reply in
`canonical.py`.

Values were read from what litellm 1.110.2 sends, then written down; where
litellm does something a reader would not expect, a comment says so.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .canonical import (
    ANSWER_SCHEMA,
    IMAGE_DETAIL,
    IMAGE_MEDIA_TYPE,
    IMAGE_PNG,
    IMAGE_PROMPT,
    MAX_TOKENS,
    SCHEMA_NAME,
    SYSTEM,
    TOOL_DESCRIPTION,
    TOOL_NAME,
    TOOL_SCHEMA,
    USER,
    Mode,
)
from .capture import (
    AnthropicMessages,
    BedrockConverse,
    GeminiGenerate,
    OllamaChat,
    OpenAIChat,
    Persona,
)
from .checks import MISSING, SigV4, at

JSON = {"content-type": "application/json"}


@dataclass(frozen=True)
class Contract:
    name: str  # the model group, the deployment id and the test id
    model: str  # the litellm model string
    persona: Persona
    params: Callable[[str], dict[str, Any]]  # litellm_params, given the server's base URL
    target: str  # path?query, as sent
    headers: Mapping[str, str]  # pinned exactly; every credential header among them
    body: Mapping[str, Any]  # the PLAIN request's JSON body, exactly
    where: Mapping[str, str]  # named facts: JSON pointers into the body
    changes: Mapping[Mode, Mapping[str, Any]] = field(default_factory=dict)
    targets: Mapping[Mode, str] = field(default_factory=dict)
    mode_headers: Mapping[Mode, Mapping[str, str]] = field(default_factory=dict)
    # Facts of one mode, named for it even where they share a place with one of `where`'s.
    mode_where: Mapping[Mode, Mapping[str, str]] = field(default_factory=dict)
    sigv4: SigV4 | None = None
    # The id the gateway reports for the provider's tool call; None: the
    # provider sends none and litellm makes one up.
    tool_call_id: str | None = None

    def body_for(self, mode: Mode) -> dict[str, Any]:
        return {**self.body, **self.changes.get(mode, {})}

    def target_for(self, mode: Mode) -> str:
        return self.targets.get(mode, self.target)

    def headers_for(self, mode: Mode) -> dict[str, str]:
        return {**self.headers, **self.mode_headers.get(mode, {})}

    def header_names(self) -> tuple[str, ...]:
        """Every header this contract pins in some mode: each is exact, or absent, in all."""
        names = dict.fromkeys(self.headers)
        for headers in self.mode_headers.values():
            names.update(dict.fromkeys(headers))
        return tuple(names)

    def facts_for(self, mode: Mode) -> dict[str, str]:
        """The named facts of `mode`'s request: those of `where` its body holds, then its own
        (which name the places they share with `where`'s)."""
        own = dict(self.mode_where.get(mode, {}))
        body = self.body_for(mode)
        shared = {
            fact: pointer
            for fact, pointer in self.where.items()
            if pointer not in own.values() and at(body, pointer) is not MISSING
        }
        return {**shared, **own}


def _chat_messages() -> list[dict[str, Any]]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER}]


def _openai_tool() -> dict[str, Any]:
    return {
        "type": "function",
        "function": {"name": TOOL_NAME, "description": TOOL_DESCRIPTION, "parameters": TOOL_SCHEMA},
    }


IMAGE_BASE64 = base64.b64encode(IMAGE_PNG).decode()
# The tool litellm makes of a response format, for providers it asks for structured output
# with a forced tool call.
JSON_TOOL = "json_tool_call"


def _openai_response_format() -> dict[str, Any]:
    return {
        "type": "json_schema",
        "json_schema": {"name": SCHEMA_NAME, "schema": ANSWER_SCHEMA, "strict": True},
    }


def _openai_image_messages() -> list[dict[str, Any]]:
    return [
        {"role": "system", "content": SYSTEM},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": IMAGE_PROMPT},
                {
                    "type": "image_url",
                    "image_url": {
                        "url": f"data:{IMAGE_MEDIA_TYPE};base64,{IMAGE_BASE64}",
                        "detail": IMAGE_DETAIL,
                    },
                },
            ],
        },
    ]


# The OpenAI-style changes of the new modes: `response_format` and the image part (a data
# URL, `detail` kept) as the gateway sends them to litellm.
OPENAI_MODES: dict[Mode, dict[str, Any]] = {
    Mode.JSON_SCHEMA: {"response_format": _openai_response_format()},
    Mode.IMAGE: {"messages": _openai_image_messages()},
}
OPENAI_MODE_FACTS = {
    Mode.JSON_SCHEMA: {
        "answer format": "/response_format/type",
        "answer schema": "/response_format/json_schema/schema",
        "schema name": "/response_format/json_schema/name",
        "strict flag": "/response_format/json_schema/strict",
    },
    Mode.IMAGE: {"image prompt": "/messages/1/content/0", "image": "/messages/1/content/1"},
}

OPENAI_FACTS = {
    "system prompt": "/messages/0",
    "max tokens": "/max_tokens",
    "tool schema": "/tools/0/function/parameters",
    "tool choice": "/tool_choice",
    "stream flag": "/stream",
    "stream usage request": "/stream_options",
}

OPENAI = Contract(
    name="openai",
    model="openai/gpt-4o-mini",
    persona=OpenAIChat("gpt-4o-mini-2024-07-18"),
    params=lambda base: {"api_base": f"{base}/v1", "api_key": "sk-contract-openai"},
    target="/v1/chat/completions",
    headers={"authorization": "Bearer sk-contract-openai", **JSON},
    body={"model": "gpt-4o-mini", "messages": _chat_messages(), "max_tokens": MAX_TOKENS},
    where=OPENAI_FACTS,
    changes={
        Mode.TOOLS: {"tools": [_openai_tool()], "tool_choice": "auto"},
        Mode.STREAM: {"stream": True, "stream_options": {"include_usage": True}},
        **OPENAI_MODES,
    },
    mode_where=OPENAI_MODE_FACTS,
    tool_call_id="call_capture",
)

AZURE = Contract(
    name="azure",
    model="azure/contract-deployment",
    persona=OpenAIChat("gpt-4o-mini", prompt_filter_chunk=True),
    params=lambda base: {
        "api_base": base,
        "api_key": "azure-contract-key",
        "api_version": "2024-10-21",
    },
    target="/openai/deployments/contract-deployment/chat/completions?api-version=2024-10-21",
    headers={"api-key": "azure-contract-key", **JSON},
    # The deployment's name goes in the body's `model` too, and `stream: false` is explicit.
    body={
        "model": "contract-deployment",
        "stream": False,
        "messages": _chat_messages(),
        "max_tokens": MAX_TOKENS,
    },
    where=OPENAI_FACTS,
    changes={
        Mode.TOOLS: {"tool_choice": "auto", "tools": [_openai_tool()]},
        Mode.STREAM: {"stream": True, "stream_options": {"include_usage": True}},
        **OPENAI_MODES,
    },
    mode_where=OPENAI_MODE_FACTS,
    tool_call_id="call_capture",
)

ANTHROPIC = Contract(
    name="anthropic",
    model="anthropic/claude-sonnet-4-5-20250929",
    persona=AnthropicMessages("claude-sonnet-4-5-20250929"),
    params=lambda base: {"api_base": base, "api_key": "sk-ant-contract"},
    target="/v1/messages",
    headers={"x-api-key": "sk-ant-contract", "anthropic-version": "2023-06-01", **JSON},
    body={
        "model": "claude-sonnet-4-5-20250929",
        # The user's text becomes a list of content blocks.
        "messages": [{"role": "user", "content": [{"type": "text", "text": USER}]}],
        "max_tokens": MAX_TOKENS,
        "system": [{"type": "text", "text": SYSTEM}],
    },
    where={
        "system prompt": "/system",
        "max tokens": "/max_tokens",
        "tool schema": "/tools/0/input_schema",
        "tool choice": "/tool_choice",
        "stream flag": "/stream",
    },
    changes={
        Mode.TOOLS: {
            "tools": [
                {
                    "name": TOOL_NAME,
                    "input_schema": TOOL_SCHEMA,
                    "type": "custom",  # added by litellm
                    "description": TOOL_DESCRIPTION,
                }
            ],
            "tool_choice": {"type": "auto"},
        },
        Mode.STREAM: {"stream": True},
        # Anthropic's own structured outputs (a beta, asked in a header), not a tool;
        # the schema's name and `strict` are lost.
        Mode.JSON_SCHEMA: {"output_format": {"type": "json_schema", "schema": ANSWER_SCHEMA}},
        # The media type is the data URL's; `detail` is lost (Anthropic has none).
        Mode.IMAGE: {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": IMAGE_PROMPT},
                        {
                            "type": "image",
                            "source": {
                                "type": "base64",
                                "media_type": IMAGE_MEDIA_TYPE,
                                "data": IMAGE_BASE64,
                            },
                        },
                    ],
                }
            ]
        },
    },
    mode_headers={Mode.JSON_SCHEMA: {"anthropic-beta": "structured-outputs-2025-11-13"}},
    mode_where={
        Mode.JSON_SCHEMA: {
            "answer format": "/output_format/type",
            "answer schema": "/output_format/schema",
        },
        Mode.IMAGE: {"image prompt": "/messages/0/content/0", "image": "/messages/0/content/1"},
    },
    tool_call_id="toolu_capture",
)

BEDROCK_MODEL = "anthropic.claude-3-5-haiku-20241022-v1:0"
BEDROCK_PATH_MODEL = BEDROCK_MODEL.replace(":", "%3A")

BEDROCK = Contract(
    name="bedrock",
    model=f"bedrock/converse/{BEDROCK_MODEL}",
    persona=BedrockConverse(),
    params=lambda base: {
        "aws_bedrock_runtime_endpoint": base,
        "aws_access_key_id": "AKIDCONTRACTTEST",
        "aws_secret_access_key": "contract-secret-key",
        "aws_region_name": "eu-west-3",
    },
    # The model id's colon is percent-escaped in the path (and signed so).
    target=f"/model/{BEDROCK_PATH_MODEL}/converse",
    targets={Mode.STREAM: f"/model/{BEDROCK_PATH_MODEL}/converse-stream"},
    headers=JSON,
    sigv4=SigV4(
        access_key="AKIDCONTRACTTEST",
        secret_key="contract-secret-key",
        region="eu-west-3",
        service="bedrock",
        signed_headers=("content-type", "host", "x-amz-date"),
    ),
    body={
        "messages": [{"role": "user", "content": [{"text": USER}]}],
        "inferenceConfig": {"maxTokens": MAX_TOKENS},
        "system": [{"text": SYSTEM}],
    },
    where={
        "system prompt": "/system",
        "max tokens": "/inferenceConfig/maxTokens",
        "tool schema": "/toolConfig/tools/0/toolSpec/inputSchema/json",
        "tool choice": "/toolConfig/toolChoice",
    },
    changes={
        Mode.TOOLS: {
            "toolConfig": {
                "tools": [
                    {
                        "toolSpec": {
                            "inputSchema": {"json": TOOL_SCHEMA},
                            "name": TOOL_NAME,
                            "description": TOOL_DESCRIPTION,
                        }
                    }
                ],
                "toolChoice": {"auto": {}},
            }
        },
        # A forced tool of litellm's whose input schema is the answer's (name and
        # `strict` lost); the capture server answers with its call, which litellm
        # turns into the message's text.
        Mode.JSON_SCHEMA: {
            "toolConfig": {
                "tools": [
                    {
                        "toolSpec": {
                            "inputSchema": {"json": ANSWER_SCHEMA},
                            "name": JSON_TOOL,
                            "description": JSON_TOOL,
                        }
                    }
                ],
                "toolChoice": {"tool": {"name": JSON_TOOL}},
            }
        },
        # Raw bytes (base64 in JSON), the format named from the media type; `detail` is lost.
        Mode.IMAGE: {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"text": IMAGE_PROMPT},
                        {"image": {"source": {"bytes": IMAGE_BASE64}, "format": "png"}},
                    ],
                }
            ]
        },
    },
    mode_where={
        Mode.JSON_SCHEMA: {
            "answer schema": "/toolConfig/tools/0/toolSpec/inputSchema/json",
            "answer format": "/toolConfig/toolChoice",
        },
        Mode.IMAGE: {"image prompt": "/messages/0/content/0", "image": "/messages/0/content/1"},
    },
    tool_call_id="tooluse_capture",
)

GEMINI = Contract(
    name="gemini",
    model="gemini/gemini-2.5-flash",
    persona=GeminiGenerate("gemini-2.5-flash"),
    params=lambda base: {"api_base": f"{base}/v1beta", "api_key": "gemini-contract-key"},
    target="/v1beta/models/gemini-2.5-flash:generateContent",
    targets={Mode.STREAM: "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"},
    headers={"x-goog-api-key": "gemini-contract-key", **JSON},
    body={
        "contents": [{"role": "user", "parts": [{"text": USER}]}],
        "system_instruction": {"parts": [{"text": SYSTEM}]},
        "generationConfig": {"max_output_tokens": MAX_TOKENS},
    },
    where={
        "system prompt": "/system_instruction",
        "max tokens": "/generationConfig/max_output_tokens",
        "tool schema": "/tools/0/function_declarations/0/parameters",
        "tool choice": "/toolConfig/functionCallingConfig",
    },
    changes={
        Mode.TOOLS: {
            "tools": [
                {
                    "function_declarations": [
                        {
                            "name": TOOL_NAME,
                            "description": TOOL_DESCRIPTION,
                            # litellm strips what Gemini's schema dialect lacks.
                            "parameters": {
                                k: v for k, v in TOOL_SCHEMA.items() if k != "additionalProperties"
                            },
                        }
                    ]
                }
            ],
            "toolConfig": {"functionCallingConfig": {"mode": "AUTO"}},
        },
        # The whole JSON Schema (`response_json_schema`, not the OpenAPI subset of
        # `response_schema`: additionalProperties stays); name and `strict` are lost.
        Mode.JSON_SCHEMA: {
            "generationConfig": {
                "max_output_tokens": MAX_TOKENS,
                "response_mime_type": "application/json",
                "response_json_schema": ANSWER_SCHEMA,
            }
        },
        # `detail` becomes the whole request's media resolution.
        Mode.IMAGE: {
            "contents": [
                {
                    "role": "user",
                    "parts": [
                        {"text": IMAGE_PROMPT},
                        {"inline_data": {"data": IMAGE_BASE64, "mime_type": IMAGE_MEDIA_TYPE}},
                    ],
                }
            ],
            "generationConfig": {
                "max_output_tokens": MAX_TOKENS,
                "mediaResolution": "MEDIA_RESOLUTION_LOW",
            },
        },
    },
    mode_where={
        Mode.JSON_SCHEMA: {
            "answer schema": "/generationConfig/response_json_schema",
            "answer format": "/generationConfig/response_mime_type",
        },
        Mode.IMAGE: {
            "image prompt": "/contents/0/parts/0",
            "image": "/contents/0/parts/1",
            "image detail": "/generationConfig/mediaResolution",
        },
    },
)

GROQ = Contract(
    name="groq",
    # A llama-3 model: litellm would fetch its tokenizer from huggingface.co for a
    # stream unless told not to (providers/litellm_adapter.py); offline, that blocked
    # the event loop for about 23 s.
    model="groq/llama-3.3-70b-versatile",
    # Groq's answers carry `service_tier`; litellm fails on an answer without it.
    persona=OpenAIChat(
        "llama-3.3-70b-versatile",
        x_groq=True,
        extra={"service_tier": "on_demand", "system_fingerprint": "fp_capture"},
    ),
    params=lambda base: {"api_base": f"{base}/openai/v1", "api_key": "gsk_contract"},
    target="/openai/v1/chat/completions",
    headers={"authorization": "Bearer gsk_contract", **JSON},
    body={
        "model": "llama-3.3-70b-versatile",
        "messages": _chat_messages(),
        "stream": False,
        "max_tokens": MAX_TOKENS,
    },
    where=OPENAI_FACTS,
    changes={
        Mode.TOOLS: {"tools": [_openai_tool()], "tool_choice": "auto"},
        Mode.STREAM: {"stream": True, "stream_options": {"include_usage": True}},
        # Not `response_format`: litellm's map says this model lacks native schemas, so
        # the schema becomes a tool's, and the tool is forced; name and strict are lost.
        Mode.JSON_SCHEMA: {
            "tools": [
                {"type": "function", "function": {"name": JSON_TOOL, "parameters": ANSWER_SCHEMA}}
            ],
            "tool_choice": {"type": "function", "function": {"name": JSON_TOOL}},
        },
        Mode.IMAGE: OPENAI_MODES[Mode.IMAGE],
    },
    mode_where={
        Mode.JSON_SCHEMA: {
            "answer schema": "/tools/0/function/parameters",
            "answer format": "/tool_choice",
        },
        Mode.IMAGE: OPENAI_MODE_FACTS[Mode.IMAGE],
    },
    tool_call_id="call_capture",
)

MISTRAL = Contract(
    name="mistral",
    model="mistral/mistral-small-latest",
    persona=OpenAIChat("mistral-small-latest", usage="with_finish"),
    params=lambda base: {"api_base": f"{base}/v1", "api_key": "mistral-contract-key"},
    target="/v1/chat/completions",
    headers={"authorization": "Bearer mistral-contract-key", **JSON},
    body={"model": "mistral-small-latest", "messages": _chat_messages(), "max_tokens": MAX_TOKENS},
    where=OPENAI_FACTS,
    changes={
        Mode.TOOLS: {"tools": [_openai_tool()], "tool_choice": "auto"},
        # No stream_options: Mistral reports a stream's usage unasked.
        Mode.STREAM: {"stream": True},
        **OPENAI_MODES,
    },
    mode_where=OPENAI_MODE_FACTS,
    tool_call_id="call_capture",
)

OLLAMA = Contract(
    name="ollama",
    # A model litellm's bundled map knows: for one it does not (llama3.2, say),
    # litellm's success logging asks the server's /api/show after the call, with
    # a blocking client on the event loop.
    model="ollama_chat/llama3.1",
    persona=OllamaChat("llama3.1"),
    params=lambda base: {"api_base": base},
    target="/api/chat",
    # No credential, and a JSON body labelled as octet-stream.
    headers={"content-type": "application/octet-stream"},
    body={
        "model": "llama3.1",
        "messages": [
            {"role": "system", "content": SYSTEM, "images": []},
            {"role": "user", "content": USER, "images": []},
        ],
        "options": {"num_predict": MAX_TOKENS},
        "stream": False,
    },
    where={
        "system prompt": "/messages/0",
        "max tokens": "/options/num_predict",
        "tool schema": "/tools/0/function/parameters",
        "stream flag": "/stream",
    },
    changes={
        # tool_choice is dropped (Ollama has none), although drop_params is off.
        Mode.TOOLS: {"tools": [_openai_tool()]},
        Mode.STREAM: {"stream": True},
        # The schema is `format` itself; name and `strict` are lost.
        Mode.JSON_SCHEMA: {"format": ANSWER_SCHEMA},
        # Images are a list beside the text, bare base64: media type and `detail` are lost.
        Mode.IMAGE: {
            "messages": [
                {"role": "system", "content": SYSTEM, "images": []},
                {"role": "user", "content": IMAGE_PROMPT, "images": [IMAGE_BASE64]},
            ]
        },
    },
    mode_where={
        Mode.JSON_SCHEMA: {"answer schema": "/format"},
        Mode.IMAGE: {"image prompt": "/messages/1/content", "image": "/messages/1/images"},
    },
)

CONTRACTS = (OPENAI, AZURE, ANTHROPIC, BEDROCK, GEMINI, GROQ, MISTRAL, OLLAMA)
