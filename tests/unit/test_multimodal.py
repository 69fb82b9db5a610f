"""Multimodal parts on their way out: OpenAI's wire shape, cache keys, prompt estimates."""

from __future__ import annotations

import base64

from switchboard.cache.key import CacheKeys
from switchboard.domain import (
    AudioPart,
    CompletionRequest,
    FilePart,
    ImagePart,
    Message,
    Role,
    TextPart,
)
from switchboard.providers.openai_wire import request_fields
from switchboard.providers.tokens import PromptEstimator

CAT = ImagePart(url="https://example.com/cat.png", detail="high")
DOG = ImagePart(data=b"\x89PNG-dog", media_type="image/png")
DOG_BASE64 = base64.b64encode(DOG.data).decode()


def _request(*parts: object, content: str = "") -> CompletionRequest:
    message = Message(Role.USER, content, parts=tuple(parts))  # type: ignore[arg-type]
    return CompletionRequest(model="chat", messages=(message,))


def test_parts_go_out_in_openai_s_shape() -> None:
    request = _request(
        TextPart("What are these?"),
        CAT,
        DOG,
        AudioPart(b"RIFF", "wav"),
        FilePart(b"%PDF", "application/pdf", "a.pdf"),
        content="Look:",
    )
    (message,) = request_fields(request)["messages"]
    assert message == {
        "role": "user",
        "content": [
            {"type": "text", "text": "Look:"},
            {"type": "text", "text": "What are these?"},
            {"type": "image_url", "image_url": {"url": CAT.url, "detail": "high"}},
            {
                "type": "image_url",
                "image_url": {
                    "url": "data:image/png;base64," + base64.b64encode(DOG.data).decode()
                },
            },
            {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
            {
                "type": "file",
                "file": {"file_data": "data:application/pdf;base64,JVBERg==", "filename": "a.pdf"},
            },
        ],
    }
    # Text-only messages keep a plain string.
    (plain,) = request_fields(_request(content="hi"))["messages"]
    assert plain["content"] == "hi"


def test_different_images_are_different_cache_keys() -> None:
    keys = [CacheKeys(_request(TextPart("what?"), image), "chat", "*") for image in (CAT, DOG)]
    assert keys[0].exact != keys[1].exact
    assert keys[0].partition != keys[1].partition
    same = CacheKeys(_request(TextPart("what?"), CAT), "chat", "*")
    assert same.exact == keys[0].exact
    # A text-only request keeps the key it had before parts existed.
    text_only = CacheKeys(_request(content="hi"), "chat", "*")
    assert text_only.exact == CacheKeys(_request(content="hi"), "chat", "*").exact


def test_images_count_in_the_prompt_estimate() -> None:
    estimator = PromptEstimator.bundled()
    text = estimator.prompt_tokens(_request(content="What is this?"))
    with_url = estimator.prompt_tokens(_request(CAT, content="What is this?"))
    low = ImagePart(url=CAT.url, detail="low")
    assert with_url - text == 1445  # an unknown size: the rule's upper bound
    assert estimator.prompt_tokens(_request(low, content="What is this?")) - text == 85
