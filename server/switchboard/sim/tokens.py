"""Token counting that approximates OpenAI's cl100k_base without tiktoken.

The gateway's limiter reserves an estimate and settles against the upstream's reported
usage; for that loop to be exercised realistically the simulator's usage must look
like a real tokenizer's: about one token per common word, more for long or non-ASCII
words, plus OpenAI's per-message framing. Exact agreement with tiktoken is not the
goal; staying dependency-free, stable and monotone is.

The pre-tokenizer is cl100k_base's split pattern translated to Python's `re` (which
lacks `\\p{L}`/`\\p{N}`: letters are `[^\\W\\d_]`, numbers `\\d`). Each piece then costs
what byte-pair merges typically leave of it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence

from .chat import ChatMessage, ToolSpec

TOKENS_PER_MESSAGE = 3
"""OpenAI frames every message with `<|start|>{role}\\n ... <|end|>`: 3 tokens."""
TOKENS_PER_NAME = 1
REPLY_PRIMING_TOKENS = 3
"""Every reply is primed with `<|start|>assistant<|message|>`."""
TOOLS_OVERHEAD_TOKENS = 9
"""Rough cost of the system preamble OpenAI adds when tools are offered."""

LETTERS_PER_TOKEN = 8
"""Common English words of up to 8 letters are single cl100k tokens."""
ROLE_TOKENS = 1
"""Every role name (`system`, `assistant`, ...) is a single cl100k token."""
SYMBOLS_PER_TOKEN = 3
UTF8_BYTES_PER_TOKEN = 3

PRETOKENIZER = re.compile(
    r"""'(?i:[sdmt]|ll|ve|re)"""
    r"""|(?:[^\r\n\w]|_)?[^\W\d_]+"""
    r"""|\d{1,3}"""
    r"""| ?(?:[^\s\w]|_)+[\r\n]*"""
    r"""|\s*[\r\n]+"""
    r"""|\s+(?!\S)"""
    r"""|\s+"""
)


def pretokenize(text: str) -> list[str]:
    """Split text into cl100k-style pieces; joining them gives the text back."""
    return PRETOKENIZER.findall(text)


WHITESPACE_RUNS = re.compile(r"[\r\n]+|[^\S\r\n]+")


def _bytes_tokens(text: str) -> int:
    return max(1, math.ceil(len(text.encode("utf-8")) / UTF8_BYTES_PER_TOKEN))


def piece_tokens(piece: str) -> int:
    """Tokens one pre-tokenized piece costs; never fewer for a longer piece of a kind.

    Whitespace costs per run of line breaks or of spaces, not per piece: cl100k merges
    "  \n" into one piece only once the line break arrives, and counting runs keeps
    the count from dropping when text is appended (a property the tests pin).
    """
    if piece.isspace():
        return sum(
            1 if run.isascii() else _bytes_tokens(run) for run in WHITESPACE_RUNS.findall(piece)
        )
    if not piece.isascii():
        return _bytes_tokens(piece)
    if piece.isdigit():
        return 1
    letters = sum(1 for char in piece if char.isalpha())
    if letters:
        return math.ceil(letters / LETTERS_PER_TOKEN)
    symbols = len(piece.strip())
    return max(1, math.ceil(symbols / SYMBOLS_PER_TOKEN))


def count_text_tokens(text: str) -> int:
    return sum(piece_tokens(piece) for piece in pretokenize(text))


def count_message_tokens(message: ChatMessage) -> int:
    """One message's tokens including OpenAI's framing, as in OpenAI's cookbook."""
    tokens = TOKENS_PER_MESSAGE + ROLE_TOKENS
    tokens += count_text_tokens(message.content)
    if message.name is not None:
        tokens += TOKENS_PER_NAME + count_text_tokens(message.name)
    for call in message.tool_calls:
        tokens += TOKENS_PER_MESSAGE + count_text_tokens(call.name)
        tokens += count_text_tokens(call.arguments)
    if message.tool_call_id is not None:
        tokens += count_text_tokens(message.tool_call_id)
    return tokens


def count_tools_tokens(tools: Sequence[ToolSpec]) -> int:
    """Offered tools cost roughly their JSON definitions, as OpenAI bills them."""
    if not tools:
        return 0
    definitions = [
        {"name": tool.name, "description": tool.description, "parameters": tool.parameters}
        for tool in tools
    ]
    return TOOLS_OVERHEAD_TOKENS + count_text_tokens(json.dumps(definitions))


def count_prompt_tokens(messages: Iterable[ChatMessage], tools: Sequence[ToolSpec] = ()) -> int:
    """`usage.prompt_tokens` for a request: messages, framing, priming and tools."""
    return (
        REPLY_PRIMING_TOKENS
        + sum(count_message_tokens(message) for message in messages)
        + count_tools_tokens(tools)
    )
