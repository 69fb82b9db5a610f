"""The README's client examples are the files the clients' suites run against a live server.

Each client's suite runs its `examples/` file against a live gateway
(clients/*/tests); this checks the README shows exactly those files, so the
README's examples are run too and cannot drift from what works.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = {
    "python": REPO / "clients/python/examples/complete.py",
    "go": REPO / "clients/go/examples/complete/main.go",
    "ts": REPO / "clients/node/examples/complete.ts",
}


@pytest.mark.parametrize("language", sorted(EXAMPLES))
def test_the_readme_shows_the_example_its_client_suite_runs(language: str) -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(rf"```{language}\n(.*?)```", readme, re.S)
    assert EXAMPLES[language].read_text(encoding="utf-8") in blocks
