"""examples/complete.py, the README's example, runs against the live gateway."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import Live

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "complete.py"


def test_readme_example_prints_the_completion(live: Live) -> None:
    env = {**os.environ, "SWITCHBOARD_TARGET": live.target, "SWITCHBOARD_API_KEY": live.api_key}
    run = subprocess.run(
        [sys.executable, str(EXAMPLE)], env=env, capture_output=True, text=True, timeout=60
    )

    assert run.returncode == 0, run.stderr
    assert run.stdout.strip()
