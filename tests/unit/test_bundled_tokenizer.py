"""The estimator's tokenizer is litellm's default encoding, built without litellm."""

from __future__ import annotations

import pytest
import tiktoken
from hypothesis import given, settings
from hypothesis import strategies as st

from switchboard.domain import CompletionRequest, Message, Role
from switchboard.providers.tokens import PromptEstimator, bundled_encoding

SAMPLES = [
    "",
    "Say hi",
    "<|endoftext|>",
    "before <|endoftext|> after <|fim_prefix|><|fim_middle|><|fim_suffix|><|endofprompt|>",
    "<|im_start|>system<|im_end|>",
    "naïve café, Ünïcödé, 日本語のテキスト, 한국어, العربية, emoji 🙂👍🏽👨‍👩‍👧",
    "lone surrogate \ud800 in text",
    "   leading and trailing spaces   \n\n\t tabs\r\n",
    "def f(x):\n    return {'a': [1, 2, 3]}  # code\n",
    "1234567890 3.14159 -42 1e-9",
    "x" * 10_000,
    " ".join(["the quick brown fox jumps over the lazy dog"] * 500),
]


@pytest.fixture(scope="module")
def litellm_encoding() -> tiktoken.Encoding:
    from litellm.litellm_core_utils.default_encoding import encoding

    assert isinstance(encoding, tiktoken.Encoding)
    return encoding


@pytest.fixture(scope="module")
def ours() -> tiktoken.Encoding:
    return bundled_encoding()


def test_is_litellms_encoding(ours: tiktoken.Encoding, litellm_encoding: tiktoken.Encoding) -> None:
    assert litellm_encoding.name == ours.name == "cl100k_base"
    assert ours._pat_str == litellm_encoding._pat_str
    assert ours._special_tokens == litellm_encoding._special_tokens
    assert ours._mergeable_ranks == litellm_encoding._mergeable_ranks


@pytest.mark.parametrize("text", SAMPLES)
def test_same_tokens_as_litellm(
    ours: tiktoken.Encoding, litellm_encoding: tiktoken.Encoding, text: str
) -> None:
    # The old estimator called litellm's encoding with disallowed_special=().
    assert ours.encode_ordinary(text) == litellm_encoding.encode(text, disallowed_special=())


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_same_counts_on_any_text(
    ours: tiktoken.Encoding, litellm_encoding: tiktoken.Encoding, text: str
) -> None:
    assert len(ours.encode_ordinary(text)) == len(
        litellm_encoding.encode(text, disallowed_special=())
    )


class CountingEncoding:
    """Encodes one token per character and counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def encode_ordinary(self, text: str) -> list[int]:
        self.calls += 1
        return [0] * len(text)


def test_long_texts_are_encoded_once() -> None:
    encoding = CountingEncoding()
    estimator = PromptEstimator(encoding, cache_min_chars=10)
    long, short = "y" * 50, "short"
    assert [estimator.count(long) for _ in range(3)] == [50, 50, 50]
    assert encoding.calls == 1
    assert [estimator.count(short) for _ in range(3)] == [5, 5, 5]
    assert encoding.calls == 4  # below the threshold: encoded every time


def test_the_cache_is_bounded_and_least_recently_used_goes_first() -> None:
    encoding = CountingEncoding()
    estimator = PromptEstimator(encoding, cache_entries=2, cache_min_chars=1)
    estimator.count("a" * 5)
    estimator.count("b" * 5)
    estimator.count("a" * 5)  # a is now the most recent
    estimator.count("c" * 5)  # evicts b
    assert encoding.calls == 3
    estimator.count("a" * 5)
    assert encoding.calls == 3
    estimator.count("b" * 5)
    assert encoding.calls == 4
    assert len(estimator._counts) == 2


def test_cached_and_uncached_counts_agree(ours: tiktoken.Encoding) -> None:
    cached, uncached = PromptEstimator(ours), PromptEstimator(ours, cache_entries=0)
    conversation = tuple(Message(Role.USER, text) for text in SAMPLES)
    request = CompletionRequest(model="chat", messages=conversation)
    first = cached.prompt_tokens(request)
    assert first == cached.prompt_tokens(request) == uncached.prompt_tokens(request)
