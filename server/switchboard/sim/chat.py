"""The parts of an OpenAI chat-completions request the simulator acts on.

Parsed once at the edge (`request.py`) so token counting and content generation work
on typed values instead of re-validating JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A tool call an assistant message made earlier in the conversation."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One message, with its content flattened to the text a model would read."""

    role: str
    content: str
    name: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A function the caller offers; `parameters` is its JSON schema."""

    name: str
    description: str = ""
    parameters: Mapping[str, object] = field(default_factory=dict)


class ToolChoiceMode(StrEnum):
    NONE = "none"
    AUTO = "auto"
    REQUIRED = "required"
    FUNCTION = "function"


@dataclass(frozen=True, slots=True)
class ChatRequest:
    model: str
    messages: tuple[ChatMessage, ...]
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: ToolChoiceMode = ToolChoiceMode.AUTO
    tool_choice_name: str | None = None
    stream: bool = False
    include_usage: bool = False
    # "text", "json_object" or "json_schema" (with `response_schema`).
    response_format: str = "text"
    response_schema: Mapping[str, object] | None = None
    # Answers to generate (text and JSON; tool calls answer once).
    n: int = 1

    def forced_tool(self) -> ToolSpec | None:
        """The tool the simulator must call, when the request leaves it no choice.

        "auto" answers with text: the simulator cannot judge whether a tool fits, and a
        deterministic rule tests can rely on beats a guess.
        """
        if not self.tools:
            return None
        if self.tool_choice is ToolChoiceMode.REQUIRED:
            return self.tools[0]
        if self.tool_choice is ToolChoiceMode.FUNCTION:
            for tool in self.tools:
                if tool.name == self.tool_choice_name:
                    return tool
        return None
