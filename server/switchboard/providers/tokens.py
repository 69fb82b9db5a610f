"""Estimating a prompt's tokens before the call, to size its reservation.

One tokenizer for every model: the cl100k/o200k encoding litellm bundles,
loaded once, offline. Per-model tokenizers would be a little closer for
non-OpenAI models, but litellm fetches some of them (llama's) from the
network on first use, which a gateway must never do on the request path;
the limiter settles every reservation against the provider's real usage
after the call, so an estimate that is off by some percent costs only a
little headroom for the length of one call.
"""

from __future__ import annotations

import json
from typing import Protocol

from switchboard.domain import CompletionRequest

# OpenAI's chat framing: tokens per message, and to prime the reply.
PER_MESSAGE = 3
PER_NAME = 1
REPLY_PRIMING = 3


class Encoding(Protocol):
    def encode(self, text: str, *, disallowed_special: tuple[()] = ()) -> list[int]: ...


class PromptEstimator:
    def __init__(self, encoding: Encoding) -> None:
        self._encoding = encoding

    @classmethod
    def bundled(cls) -> PromptEstimator:
        """The encoding shipped inside litellm (never downloaded)."""
        from litellm.litellm_core_utils.default_encoding import encoding

        return cls(encoding)

    def count(self, text: str) -> int:
        # Special-token text in a prompt is ordinary text to us, never an error.
        return len(self._encoding.encode(text, disallowed_special=()))

    def prompt_tokens(self, request: CompletionRequest) -> int:
        total = REPLY_PRIMING
        for message in request.messages:
            total += PER_MESSAGE + self.count(message.content)
            if message.name:
                total += PER_NAME + self.count(message.name)
            for call in message.tool_calls:
                total += self.count(call.name) + self.count(call.arguments)
        if request.tools:
            schema = [
                {"name": t.name, "description": t.description, "parameters": t.parameters}
                for t in request.tools
            ]
            total += self.count(json.dumps(schema, separators=(",", ":")))
        return total
