"""Strict parsing of a chat-completions JSON body into a `ChatRequest`.

Bad input must fail here with OpenAI's error shape and the offending `param`, because
the gateway maps upstream 400s to INVALID_ARGUMENT and its tests need a simulator that
rejects what OpenAI rejects. Fields the simulator does not act on (`user`,
`response_format`, `logprobs`, ...) are accepted and ignored, as litellm sends some.
"""

from __future__ import annotations

from collections.abc import Mapping

from .chat import ChatMessage, ChatRequest, ToolCall, ToolChoiceMode, ToolSpec

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
MAX_STOP_SEQUENCES = 4


class InvalidRequest(Exception):
    """A 400 `invalid_request_error`, carrying OpenAI's `param` and `code`."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _invalid_type(param: str, expected: str, value: object) -> InvalidRequest:
    return InvalidRequest(
        f"Invalid type for '{param}': expected {expected}, but got {_type_name(value)} instead.",
        param=param,
        code="invalid_type",
    )


def _invalid_value(param: str, message: str) -> InvalidRequest:
    return InvalidRequest(
        f"Invalid value for '{param}': {message}", param=param, code="invalid_value"
    )


def _optional_int(body: Mapping[str, object], key: str, minimum: int | None) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid_type(key, "an integer", value)
    if minimum is not None and value < minimum:
        raise _invalid_value(key, f"integer below minimum value {minimum}, got {value}.")
    return value


def _optional_number(body: Mapping[str, object], key: str, low: float, high: float) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _invalid_type(key, "a decimal", value)
    if not low <= value <= high:
        raise _invalid_value(key, f"must be between {low:g} and {high:g}, got {value}.")
    return float(value)


def _optional_bool(body: Mapping[str, object], key: str, param: str | None = None) -> bool:
    value = body.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _invalid_type(param or key, "a boolean", value)
    return value


def _object(value: object, param: str) -> Mapping[str, object]:
    if not isinstance(value, dict):
        raise _invalid_type(param, "an object", value)
    return value


def _string(value: object, param: str) -> str:
    if not isinstance(value, str):
        raise _invalid_type(param, "a string", value)
    return value


def _content_text(value: object, param: str) -> str:
    """Flatten string or part-list content to text; non-text parts carry no text."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise _invalid_type(param, "one of a string or array of objects", value)
    texts: list[str] = []
    for index, part in enumerate(value):
        part_param = f"{param}[{index}]"
        part_obj = _object(part, part_param)
        kind = _string(part_obj.get("type"), f"{part_param}.type")
        if kind == "text":
            texts.append(_string(part_obj.get("text"), f"{part_param}.text"))
    return "\n".join(texts)


def _tool_calls(value: object, param: str) -> tuple[ToolCall, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _invalid_type(param, "an array", value)
    calls: list[ToolCall] = []
    for index, item in enumerate(value):
        call_param = f"{param}[{index}]"
        call = _object(item, call_param)
        function = _object(call.get("function"), f"{call_param}.function")
        calls.append(
            ToolCall(
                id=_string(call.get("id"), f"{call_param}.id"),
                name=_string(function.get("name"), f"{call_param}.function.name"),
                arguments=_string(
                    function.get("arguments", ""), f"{call_param}.function.arguments"
                ),
            )
        )
    return tuple(calls)


def _message(value: object, index: int) -> ChatMessage:
    param = f"messages[{index}]"
    message = _object(value, param)
    if "role" not in message:
        raise InvalidRequest(
            f"Missing required parameter: '{param}.role'.",
            param=f"{param}.role",
            code="missing_required_parameter",
        )
    role = _string(message["role"], f"{param}.role")
    if role not in ROLES:
        raise _invalid_value(
            f"{param}.role", f"'{role}'. Supported values are: {', '.join(sorted(ROLES))}."
        )
    tool_calls = _tool_calls(message.get("tool_calls"), f"{param}.tool_calls")
    content = message.get("content")
    if "content" not in message and not (role == "assistant" and tool_calls):
        raise InvalidRequest(
            f"Missing required parameter: '{param}.content'.",
            param=f"{param}.content",
            code="missing_required_parameter",
        )
    name = message.get("name")
    tool_call_id = message.get("tool_call_id")
    if role == "tool" and tool_call_id is None:
        raise InvalidRequest(
            f"Missing required parameter: '{param}.tool_call_id'.",
            param=f"{param}.tool_call_id",
            code="missing_required_parameter",
        )
    return ChatMessage(
        role=role,
        content=_content_text(content, f"{param}.content"),
        name=None if name is None else _string(name, f"{param}.name"),
        tool_calls=tool_calls,
        tool_call_id=None
        if tool_call_id is None
        else _string(tool_call_id, f"{param}.tool_call_id"),
    )


def _messages(body: Mapping[str, object]) -> tuple[ChatMessage, ...]:
    value = body.get("messages")
    if value is None:
        raise InvalidRequest(
            "Missing required parameter: 'messages'.",
            param="messages",
            code="missing_required_parameter",
        )
    if not isinstance(value, list):
        raise _invalid_type("messages", "an array", value)
    if not value:
        raise InvalidRequest(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, "
            "but got an empty array instead.",
            param="messages",
            code="empty_array",
        )
    return tuple(_message(item, index) for index, item in enumerate(value))


def _stop(body: Mapping[str, object]) -> tuple[str, ...]:
    value = body.get("stop")
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,) if value else ()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _invalid_type("stop", "one of a string or array of strings", value)
    if len(value) > MAX_STOP_SEQUENCES:
        raise _invalid_value("stop", f"at most {MAX_STOP_SEQUENCES} sequences are allowed.")
    return tuple(item for item in value if isinstance(item, str) and item)


def _tools(body: Mapping[str, object]) -> tuple[ToolSpec, ...]:
    value = body.get("tools")
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _invalid_type("tools", "an array", value)
    tools: list[ToolSpec] = []
    for index, item in enumerate(value):
        param = f"tools[{index}]"
        tool = _object(item, param)
        if tool.get("type", "function") != "function":
            raise _invalid_value(f"{param}.type", "only 'function' tools are supported.")
        function = _object(tool.get("function"), f"{param}.function")
        parameters = function.get("parameters", {})
        tools.append(
            ToolSpec(
                name=_string(function.get("name"), f"{param}.function.name"),
                description=_string(
                    function.get("description", ""), f"{param}.function.description"
                ),
                parameters=_object(parameters, f"{param}.function.parameters"),
            )
        )
    return tuple(tools)


def _tool_choice(
    body: Mapping[str, object], tools: tuple[ToolSpec, ...]
) -> tuple[ToolChoiceMode, str | None]:
    value = body.get("tool_choice")
    if value is None:
        return ToolChoiceMode.AUTO, None
    if not tools:
        raise _invalid_value(
            "tool_choice", "'tool_choice' is only allowed when 'tools' are specified."
        )
    if isinstance(value, str):
        if value not in {"none", "auto", "required"}:
            raise _invalid_value(
                "tool_choice", f"'{value}'. Supported values are: 'none', 'auto' and 'required'."
            )
        return ToolChoiceMode(value), None
    choice = _object(value, "tool_choice")
    function = _object(choice.get("function"), "tool_choice.function")
    name = _string(function.get("name"), "tool_choice.function.name")
    if name not in {tool.name for tool in tools}:
        raise _invalid_value("tool_choice", f"no tool named '{name}' in 'tools'.")
    return ToolChoiceMode.FUNCTION, name


def parse_chat_request(body: object) -> ChatRequest:
    """Validate a decoded JSON body; raise `InvalidRequest` naming the bad field."""
    if not isinstance(body, dict):
        raise InvalidRequest(
            "We could not parse the JSON body of your request. (HINT: This likely means "
            "you aren't using your HTTP library correctly. The OpenAI API expects a JSON "
            "payload, but what was sent was not valid JSON.)"
        )
    model = body.get("model")
    if model is None:
        raise InvalidRequest(
            "you must provide a model parameter", param="model", code="missing_required_parameter"
        )
    model = _string(model, "model")
    messages = _messages(body)
    n = _optional_int(body, "n", minimum=1)
    if n is not None and n > MAX_N:
        raise _invalid_value("n", f"the simulator answers at most n={MAX_N}, got {n}.")
    if n is not None and n > 1 and _optional_bool(body, "stream"):
        raise _invalid_value("n", f"the simulator streams n=1 only, got {n}.")
    max_tokens = _optional_int(body, "max_completion_tokens", minimum=1)
    if max_tokens is None:
        max_tokens = _optional_int(body, "max_tokens", minimum=1)
    stream = _optional_bool(body, "stream")
    stream_options = body.get("stream_options")
    include_usage = False
    if stream_options is not None:
        include_usage = _optional_bool(
            _object(stream_options, "stream_options"),
            "include_usage",
            param="stream_options.include_usage",
        )
    tools = _tools(body)
    tool_choice, tool_choice_name = _tool_choice(body, tools)
    response_format, response_schema = _response_format(body)
    return ChatRequest(
        model=model,
        messages=messages,
        max_tokens=max_tokens,
        temperature=_optional_number(body, "temperature", 0.0, 2.0),
        top_p=_optional_number(body, "top_p", 0.0, 1.0),
        stop=_stop(body),
        seed=_optional_int(body, "seed", minimum=None),
        tools=tools,
        tool_choice=tool_choice,
        tool_choice_name=tool_choice_name,
        stream=stream,
        include_usage=include_usage and stream,
        response_format=response_format,
        response_schema=response_schema,
        n=n or 1,
    )


RESPONSE_FORMATS = ("text", "json_object", "json_schema")
MAX_N = 8


def _response_format(body: Mapping[str, object]) -> tuple[str, Mapping[str, object] | None]:
    """OpenAI's `response_format`: its type, and the schema of a json_schema one."""
    value = body.get("response_format")
    if value is None:
        return "text", None
    spec = _object(value, "response_format")
    kind = _string(spec.get("type"), "response_format.type")
    if kind not in RESPONSE_FORMATS:
        raise _invalid_value(
            "response_format.type",
            f"'{kind}'. Supported values are: 'text', 'json_object' and 'json_schema'.",
        )
    if kind != "json_schema":
        return kind, None
    json_schema = _object(spec.get("json_schema"), "response_format.json_schema")
    _string(json_schema.get("name"), "response_format.json_schema.name")
    return kind, _object(json_schema.get("schema", {}), "response_format.json_schema.schema")
