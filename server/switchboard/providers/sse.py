"""Server-sent events, reduced to what OpenAI-compatible streams use: `data:` payloads.

A decoder is fed one line at a time (without its line ending) and returns
an event's data when a blank line ends the event. Multi-line data is joined
with newlines, comments (`:`) and other fields (`event:`, `id:`, `retry:`)
are skipped, as the WHATWG spec says. It is a plain object, not a reader,
so it is tested without any network and the stream keeps control of its
connection (closing it at once on cancel).
"""

from __future__ import annotations

# OpenAI's end-of-stream sentinel, sent as the data of the last event.
DONE = "[DONE]"


class SseDecoder:
    """Accumulates one event's `data:` lines; one decoder per stream."""

    __slots__ = ("_data",)

    def __init__(self) -> None:
        self._data: list[str] = []

    def feed(self, line: str) -> str | None:
        """The event's data when `line` ends it (a blank line), else None."""
        if not line:
            return self.flush()
        if line.startswith(":"):
            return None
        field, _, value = line.partition(":")
        if field == "data":
            self._data.append(value.removeprefix(" "))
        return None

    def flush(self) -> str | None:
        """Data of an event the stream ended before its blank line (some servers do)."""
        if not self._data:
            return None
        data = "\n".join(self._data)
        self._data.clear()
        return data
