"""Data files litellm ships (its tokenizer and price map), found without importing litellm.

Importing litellm costs seconds and over 100 MB, and a gateway whose
deployments all take the fast path needs only two of its data files.
`importlib.util.find_spec` locates a top-level package without executing
it, so the files are read from the installed package directly: offline,
the same bytes litellm itself would read.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

TOKENIZERS = "litellm_core_utils/tokenizers"
PRICE_MAP = "model_prices_and_context_window_backup.json"


class BundledDataError(RuntimeError):
    """A file litellm should ship is missing: raised at start, never mid-request."""


def litellm_file(relative: str) -> Path:
    """The path of `relative` inside the installed litellm package; raises if it is absent."""
    spec = importlib.util.find_spec("litellm")
    locations = spec.submodule_search_locations if spec is not None else None
    if not locations:
        raise BundledDataError("litellm is not installed: its tokenizer and price map are needed")
    path = Path(next(iter(locations))) / relative
    if not path.is_file():
        raise BundledDataError(f"litellm's bundled file {path} is missing")
    return path
