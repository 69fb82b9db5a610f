"""The prompt estimator that sizes reservations."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from switchboard.domain import CompletionRequest, Message, Role, Tool, ToolCall
from switchboard.providers.tokens import PromptEstimator


@pytest.fixture(scope="module")
def estimator() -> PromptEstimator:
    return PromptEstimator.bundled()


def _request(*contents: str, **fields: object) -> CompletionRequest:
    messages = tuple(Message(Role.USER, c) for c in contents)
    return CompletionRequest(model="chat", messages=messages, **fields)  # type: ignore[arg-type]


def test_openai_framing(estimator: PromptEstimator) -> None:
    # "Say hi" is two cl100k tokens; 3 per message, 1 for its role, 3 to prime the reply.
    assert estimator.prompt_tokens(_request("Say hi")) == 2 + 3 + 1 + 3
    assert estimator.prompt_tokens(_request("Say hi", "Say hi")) == 2 * (2 + 3 + 1) + 3


def test_special_token_text_is_ordinary_text(estimator: PromptEstimator) -> None:
    assert estimator.prompt_tokens(_request("<|endoftext|>")) > 3 + 3


def test_tools_and_tool_calls_count(estimator: PromptEstimator) -> None:
    plain = estimator.prompt_tokens(_request("weather?"))
    tool = Tool("get_weather", "Weather for a city", {"type": "object"})
    assert estimator.prompt_tokens(_request("weather?", tools=(tool,))) > plain + 5
    call = Message(Role.ASSISTANT, "", tool_calls=(ToolCall("c1", "get_weather", '{"c":"x"}'),))
    with_call = CompletionRequest(model="chat", messages=(Message(Role.USER, "weather?"), call))
    assert estimator.prompt_tokens(with_call) > plain + 3


@given(st.text(max_size=200), st.text(min_size=1, max_size=50))
def test_more_text_never_counts_less(estimator: PromptEstimator, a: str, b: str) -> None:
    assert estimator.prompt_tokens(_request(a + b)) >= estimator.prompt_tokens(_request(a))
