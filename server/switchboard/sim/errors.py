"""Errors the simulator raises at its callers (not at its HTTP clients).

    ValueError
    ├── InvalidProfileError      one bad field of a profile, named by its field
    └── ProfileConfigError       every bad field of a profiles file, named by path

HTTP clients never see these: they get OpenAI-shaped JSON errors from `app.py`.
"""

from __future__ import annotations


class InvalidProfileError(ValueError):
    """A profile value that cannot describe any upstream (negative latency, rate > 1)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class ProfileConfigError(ValueError):
    """A profiles document with problems; lists all of them so one edit fixes all."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        lines = "\n".join(f"  {path}: {message}" for path, message in problems)
        super().__init__(f"invalid simulator profiles:\n{lines}")
        self.problems = problems
