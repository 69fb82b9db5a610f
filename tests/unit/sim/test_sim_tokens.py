"""Token counting: stable, monotone, one token per common word, OpenAI's framing."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from switchboard.sim.chat import ChatMessage, ToolCall, ToolSpec
from switchboard.sim.tokens import (
    REPLY_PRIMING_TOKENS,
    TOKENS_PER_MESSAGE,
    count_message_tokens,
    count_prompt_tokens,
    count_text_tokens,
    count_tools_tokens,
    pretokenize,
)

texts = st.lists(
    st.sampled_from([*"abcXYZ019 _.,!?'\n\r\t-éü中\u3000\u00a0", "'s", "  ", " word", "\r\n"]),
    max_size=40,
).map("".join)


def test_known_counts_are_stable() -> None:
    # Pinned values: a change here changes every usage number the simulator reports.
    assert count_text_tokens("") == 0
    assert count_text_tokens("hello") == 1
    assert count_text_tokens("Hello, world!") == 4
    assert count_text_tokens("The quick brown fox jumps over the lazy dog.") == 10
    assert count_text_tokens("it's 2024") == 5
    assert count_text_tokens("internationalization") == 3
    assert count_text_tokens("你好世界") == 4


def test_pretokenizer_splits_like_cl100k() -> None:
    assert pretokenize("Hello world's 12345 end!!\n\nx") == [
        "Hello",
        " world",
        "'s",
        " ",
        "123",
        "45",
        " end",
        "!!\n\n",
        "x",
    ]


def test_common_short_words_cost_one_token_each() -> None:
    words = ["the", "model", "answers", "a", "request", "with", "one", "short", "reply"]
    assert count_text_tokens(" ".join(words)) == len(words)


def test_long_words_cost_more_than_short_ones() -> None:
    assert count_text_tokens("antidisestablishmentarianism") > count_text_tokens("establish")


@given(texts)
def test_pretokenize_covers_the_whole_text(text: str) -> None:
    assert "".join(pretokenize(text)) == text


@given(texts, texts)
@example("\n  ", "\n")  # cl100k merges "\n  \n" into one piece; runs keep the count
@example("a  ", "b")
def test_appending_text_never_lowers_the_count(prefix: str, suffix: str) -> None:
    assert count_text_tokens(prefix + suffix) >= count_text_tokens(prefix)


@given(st.integers(min_value=0, max_value=200))
def test_count_grows_with_repeated_words(repeats: int) -> None:
    assert count_text_tokens(" word" * repeats) == repeats


def test_message_overhead_is_openais() -> None:
    empty_user = ChatMessage(role="user", content="")
    assert count_message_tokens(empty_user) == TOKENS_PER_MESSAGE + 1
    assert count_prompt_tokens([empty_user]) == REPLY_PRIMING_TOKENS + TOKENS_PER_MESSAGE + 1
    # OpenAI's cookbook: a one-word user message costs 8 prompt tokens in all.
    assert count_prompt_tokens([ChatMessage(role="user", content="hi")]) == 8


def test_each_message_adds_its_framing() -> None:
    one = [ChatMessage(role="user", content="hello there")]
    two = [*one, ChatMessage(role="assistant", content="hello there")]
    assert count_prompt_tokens(two) - count_prompt_tokens(one) == TOKENS_PER_MESSAGE + 1 + 2


def test_a_name_costs_one_token_plus_itself() -> None:
    plain = ChatMessage(role="user", content="hi")
    named = ChatMessage(role="user", content="hi", name="bob")
    assert count_message_tokens(named) - count_message_tokens(plain) == 2


def test_tool_calls_and_tools_are_counted() -> None:
    call = ToolCall(id="call_1", name="get_weather", arguments='{"city": "paris"}')
    with_call = ChatMessage(role="assistant", content="", tool_calls=(call,))
    assert count_message_tokens(with_call) > count_message_tokens(
        ChatMessage(role="assistant", content="")
    )
    tool = ToolSpec(name="get_weather", parameters={"type": "object", "properties": {}})
    assert count_tools_tokens([]) == 0
    assert count_tools_tokens([tool]) > 0
    message = [ChatMessage(role="user", content="hi")]
    assert count_prompt_tokens(message, [tool]) == count_prompt_tokens(
        message
    ) + count_tools_tokens([tool])
