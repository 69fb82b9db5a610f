"""Estimating a prompt's tokens before the call, to size its reservation.

One tokenizer for every model: cl100k_base, litellm's default encoding, read
from the copy litellm ships, without importing litellm and never from the
network. Per-model tokenizers would be a little closer for non-OpenAI
models, but litellm fetches some of them (llama's) from the network on first
use, which a gateway must never do on the request path; the limiter settles
every reservation against the provider's real usage after the call, so an
estimate that is off by some percent costs only a little headroom for the
length of one call.
"""

from __future__ import annotations

import binascii
import hashlib
import io
import json
from collections import OrderedDict
from typing import Protocol

import tiktoken

from switchboard.domain import CompletionRequest, TextPart
from switchboard.providers.bundled import TOKENIZERS, BundledDataError, litellm_file
from switchboard.providers.image_tokens import part_tokens

# OpenAI's chat framing: tokens per message, and to prime the reply.
PER_MESSAGE = 3
# The role's value is counted too, as in OpenAI's cookbook; every role name is one token.
PER_ROLE = 1
PER_NAME = 1
REPLY_PRIMING = 3

# cl100k_base exactly as tiktoken_ext.openai_public defines it. litellm's copy is
# tiktoken's cache file, named by the SHA-1 of the URL tiktoken would fetch.
CL100K_FILE = "9b5ad71b2ce5302211f9c61530b329a4922fc6a4"
CL100K_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"
CL100K_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
CL100K_SPECIAL = {
    "<|endoftext|>": 100257,
    "<|fim_prefix|>": 100258,
    "<|fim_middle|>": 100259,
    "<|fim_suffix|>": 100260,
    "<|endofprompt|>": 100276,
}

# Texts at least this long have their count remembered: below it, encoding
# (about 3 µs) costs little more than hashing and a lookup would.
CACHE_MIN_CHARS = 512
CACHE_ENTRIES = 4096


class Encoding(Protocol):
    def encode_ordinary(self, text: str) -> list[int]: ...


def bundled_encoding() -> tiktoken.Encoding:
    """cl100k_base from litellm's package data; raises `BundledDataError` if it is absent.

    Built here rather than by `tiktoken.get_encoding`, which would need
    TIKTOKEN_CACHE_DIR pointed at litellm's folder (process-wide state) and
    downloads the file when that is not set.
    """
    path = litellm_file(f"{TOKENIZERS}/{CL100K_FILE}")
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != CL100K_SHA256:
        raise BundledDataError(f"{path} is not tiktoken's cl100k_base")
    # Each line is "<base64 token> <rank>". Line by line, not one split of the
    # whole file: 200,000 short-lived objects at once would leave about 5 MB of
    # fragmented heap behind for the life of the process.
    ranks: dict[bytes, int] = {}
    for line in io.BytesIO(data):
        token, rank = line.split()
        ranks[binascii.a2b_base64(token)] = int(rank)
    return tiktoken.Encoding(
        "cl100k_base",
        pat_str=CL100K_PATTERN,
        mergeable_ranks=ranks,
        special_tokens=CL100K_SPECIAL,
    )


class PromptEstimator:
    """Counts a request's prompt tokens as OpenAI frames a chat.

    Counts of long texts are remembered by content digest (an LRU of
    `cache_entries`, about 200 bytes each whatever the text's length): a
    conversation resends its system prompt and history on every call, and
    encoding those again costs about 0.2 ms per 1,000 tokens. Meant for one
    thread, the event loop's, like the gateway that owns it.
    """

    def __init__(
        self,
        encoding: Encoding,
        *,
        cache_entries: int = CACHE_ENTRIES,
        cache_min_chars: int = CACHE_MIN_CHARS,
    ) -> None:
        self._encoding = encoding
        self._cache_entries = cache_entries
        self._cache_min_chars = cache_min_chars
        self._counts: OrderedDict[bytes, int] = OrderedDict()

    @classmethod
    def bundled(cls) -> PromptEstimator:
        """litellm's default encoding, from its package data (never imported, never downloaded)."""
        return cls(bundled_encoding())

    def count(self, text: str) -> int:
        # encode_ordinary: special-token text in a prompt is ordinary text to us, never an error.
        if len(text) < self._cache_min_chars or self._cache_entries <= 0:
            return len(self._encoding.encode_ordinary(text))
        # SHA-256 runs in hardware: about 20 µs for 32 kB against about 1 ms to encode it.
        key = hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()
        counts = self._counts
        count = counts.get(key)
        if count is not None:
            counts.move_to_end(key)
            return count
        count = len(self._encoding.encode_ordinary(text))
        counts[key] = count
        if len(counts) > self._cache_entries:
            counts.popitem(last=False)
        return count

    def prompt_tokens(self, request: CompletionRequest) -> int:
        total = REPLY_PRIMING
        for message in request.messages:
            total += PER_MESSAGE + PER_ROLE + self.count(message.content)
            for part in message.parts:
                if isinstance(part, TextPart):
                    total += self.count(part.text)
                else:
                    total += part_tokens(part)
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
