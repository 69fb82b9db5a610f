"""The committed stubs are what generate.py makes from the proto today."""

from __future__ import annotations

import importlib.util
from pathlib import Path

HERE = Path(__file__).resolve().parent
GENERATE = HERE.parent / "generate.py"
COMMITTED = HERE.parent / "src" / "switchboard_client" / "_pb"


def _files(root: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(root.iterdir()) if p.is_file()}


def test_committed_stubs_match_a_fresh_generation(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("switchboard_client_generate", GENERATE)
    assert spec is not None
    assert spec.loader is not None
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)

    fresh = tmp_path / "_pb"
    generate.generate(fresh)

    committed, regenerated = _files(COMMITTED), _files(fresh)
    assert set(committed) == set(regenerated), "stale stubs: run clients/python/generate.py"
    for name, text in regenerated.items():
        assert committed[name] == text, f"stale {name}: run clients/python/generate.py"
