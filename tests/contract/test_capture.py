"""The capture servers' binary encoding is what botocore (and so litellm) decodes."""

from __future__ import annotations

import json

from botocore.eventstream import EventStreamBuffer

from .capture import aws_event


def test_aws_events_decode_with_botocore() -> None:
    payloads = [
        ("messageStart", {"role": "assistant"}),
        ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "héllo"}}),
        ("metadata", {"usage": {"inputTokens": 3, "outputTokens": 2, "totalTokens": 5}}),
    ]
    buffer = EventStreamBuffer()
    # Split across chunk boundaries, as a socket would deliver it.
    wire = b"".join(aws_event(name, payload) for name, payload in payloads)
    buffer.add_data(wire[:7])
    buffer.add_data(wire[7:])
    decoded = [
        (message.headers[":event-type"], json.loads(message.payload), message.headers)
        for message in buffer
    ]
    assert [(name, payload) for name, payload, _ in decoded] == payloads
    for _, _, headers in decoded:
        assert headers[":message-type"] == "event"
        assert headers[":content-type"] == "application/json"
