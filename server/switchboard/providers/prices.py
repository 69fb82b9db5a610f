"""Per-token prices from the map litellm ships, read without importing litellm.

A call's cost is what `litellm.cost_per_token` computes for a chat model
given the call's usage: uncached input tokens at the input rate, cached
input tokens (`Usage.cached_input_tokens`, a part of `input_tokens` as
OpenAI reports them) at the cache-read rate, or at the input rate when the
map has none, and output tokens at the output rate; a prompt above one of
the map's `*_above_<n>k_tokens` thresholds bills every token at that
tier's rates. Service tiers, batches, cache writes and per-modality tokens
are not in `Usage`, so they are not priced here either.

Models whose price depends on more than usage (per-second billing, tier
tables, off-peak hours) and models absent from the map have no price here:
`price` returns None and the caller records 0, as for any model litellm
does not know. The map is parsed once, on first use, into one small record
per model (about 1.3 MB in all); the parsed JSON (12 MB) is dropped.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

from switchboard.domain import Usage
from switchboard.providers.bundled import PRICE_MAP, litellm_file

PRICED_MODES = frozenset({"chat", "completion", "responses"})
# Keys that make litellm price a model by something other than token counts.
UNSUPPORTED_KEYS = (
    "tiered_pricing",
    "off_peak_pricing",
    "cost_per_second",
    "input_cost_per_second",
    "output_cost_per_second",
)
# A long-prompt tier, e.g. `input_cost_per_token_above_200k_tokens`; tiers for a
# service tier or for batches carry a suffix and do not match.
TIER_KEY = re.compile(
    r"^(?:input_cost_per_token|output_cost_per_token|cache_read_input_token_cost"
    r"|cache_creation_input_token_cost)_above_(?P<n>\d+(?:\.\d+)?)(?P<k>k?)_tokens$"
)
# Providers whose entries litellm also finds under a related name (vertex_ai-language-models).
PROVIDER_FAMILIES = ("vertex_ai", "fireworks_ai", "bedrock")
# litellm bills from the threshold itself, not only above it, for these.
INCLUSIVE_THRESHOLD_PROVIDERS = frozenset({"xai"})
# litellm's own cost function for these ignores long-prompt tiers.
UNTIERED_PROVIDERS = frozenset({"perplexity"})
# Cache-read rate as a share of the input rate where the map sets none and
# litellm does not fall back to the input rate.
DEFAULT_CACHE_READ_RATIO: Mapping[str, float] = {"fireworks_ai": 0.5}


@dataclass(frozen=True, slots=True)
class Rates:
    """USD per token; `cache_read` is already the input rate when the map sets none."""

    input: float
    output: float
    cache_read: float


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """One model's rates: only what pricing a call needs, not litellm's whole entry."""

    provider: str
    base: Rates
    # (threshold, rates), ascending: a prompt above a threshold bills at its rates.
    tiers: tuple[tuple[float, Rates], ...] = ()
    inclusive_threshold: bool = False
    # litellm's `supports_vision` for the model (None: the map does not say).
    supports_vision: bool | None = None

    def cost(self, usage: Usage) -> float:
        rates = self.base
        for threshold, tier in self.tiers:
            if usage.input_tokens > threshold or (
                self.inclusive_threshold and usage.input_tokens == threshold
            ):
                rates = tier
        cached = max(usage.cached_input_tokens, 0)
        uncached = max(usage.input_tokens - cached, 0)
        return (
            uncached * rates.input + cached * rates.cache_read + usage.output_tokens * rates.output
        )


class PriceTable:
    """litellm's price map by model string; parsed on the first lookup, once.

    `bundled()` finds the file at construction, so a missing file fails the
    start; a config whose deployments all set their own prices never pays
    for parsing it. Lookups are remembered per model string, unknown ones
    included: deployments' model strings come from the config, a small set.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._prices: Mapping[str, ModelPrice] | None = None
        self._resolved: dict[str, ModelPrice | None] = {}

    @classmethod
    def bundled(cls) -> PriceTable:
        return cls(litellm_file(PRICE_MAP))

    def load(self) -> int:
        """Parse the map now (else on first use); returns how many models have a price."""
        return len(self._table())

    def lookup(self, model: str) -> ModelPrice | None:
        """The entry litellm prices `model` by: the full string, else without its provider."""
        try:
            return self._resolved[model]
        except KeyError:
            pass
        prices = self._table()
        found = prices.get(model)
        if found is None and "/" in model:
            provider, bare = model.split("/", 1)
            entry = prices.get(bare)
            if entry is not None and _same_provider(entry.provider, provider):
                found = entry
        self._resolved[model] = found
        return found

    def price(self, model: str, usage: Usage) -> float | None:
        """The call's cost in USD; None when the map has no price for `model`."""
        entry = self.lookup(model)
        return None if entry is None else entry.cost(usage)

    def _table(self) -> Mapping[str, ModelPrice]:
        if self._prices is None:
            with self._path.open("rb") as f:
                self._prices = _parse(json.load(f))
        return self._prices


def _same_provider(entry_provider: str, prefix: str) -> bool:
    if entry_provider == prefix:
        return True
    return any(
        prefix.startswith(family) and entry_provider.startswith(family)
        for family in PROVIDER_FAMILIES
    )


def _parse(raw: Mapping[str, Any]) -> dict[str, ModelPrice]:
    prices: dict[str, ModelPrice] = {}
    aliases: dict[str, str] = {}
    for model, info in raw.items():
        if model == "sample_spec" or not isinstance(info, Mapping):
            continue
        target = info.get("alias_of")
        if isinstance(target, str):
            aliases[model] = target
            continue
        entry = _model_price(info)
        if entry is not None:
            prices[model] = entry
    # A row `{"alias_of": "<model>"}` is priced as the row it names (never a chain).
    for alias, target in aliases.items():
        if target in prices:
            prices[alias] = prices[target]
    return prices


def _model_price(info: Mapping[str, Any]) -> ModelPrice | None:
    provider = info.get("litellm_provider")
    if (
        not isinstance(provider, str)
        or info.get("mode", "chat") not in PRICED_MODES
        or any(info.get(key) is not None for key in UNSUPPORTED_KEYS)
    ):
        return None
    input_rate = _rate(info, "input_cost_per_token")
    if input_rate is None:
        return None
    output_rate = _rate(info, "output_cost_per_token", 0.0)
    cache_read = _rate(info, "cache_read_input_token_cost")
    if cache_read is None and provider in DEFAULT_CACHE_READ_RATIO:
        cache_read = input_rate * DEFAULT_CACHE_READ_RATIO[provider]
    base = Rates(input_rate, output_rate, input_rate if cache_read is None else cache_read)
    # As litellm does: tiers apply in ascending order, each rate it does not set
    # staying at the previous tier's, and a missing cache-read rate is the final
    # input rate.
    tiers: list[tuple[float, Rates]] = []
    for threshold, suffix in () if provider in UNTIERED_PROVIDERS else _thresholds(info):
        input_rate = _rate(info, f"input_cost_per_token{suffix}", input_rate)
        output_rate = _rate(info, f"output_cost_per_token{suffix}", output_rate)
        cache_read = _rate(info, f"cache_read_input_token_cost{suffix}", cache_read)
        rates = Rates(input_rate, output_rate, input_rate if cache_read is None else cache_read)
        tiers.append((threshold, rates))
    vision = info.get("supports_vision")
    return ModelPrice(
        provider=provider,
        base=base,
        tiers=tuple(tiers),
        inclusive_threshold=provider in INCLUSIVE_THRESHOLD_PROVIDERS,
        supports_vision=vision if isinstance(vision, bool) else None,
    )


def _thresholds(info: Mapping[str, Any]) -> list[tuple[float, str]]:
    """(threshold, key suffix) of every long-prompt tier with a price set, ascending."""
    found: dict[float, str] = {}
    for key, value in info.items():
        match = TIER_KEY.match(key)
        if match is None or value is None:
            continue
        n = float(match["n"]) * (1000 if match["k"] else 1)
        found[n] = f"_above_{match['n']}{match['k']}_tokens"
    return sorted(found.items())


@overload
def _rate(info: Mapping[str, Any], key: str) -> float | None: ...
@overload
def _rate(info: Mapping[str, Any], key: str, default: float) -> float: ...
@overload
def _rate(info: Mapping[str, Any], key: str, default: float | None) -> float | None: ...


def _rate(info: Mapping[str, Any], key: str, default: float | None = None) -> float | None:
    """A rate as litellm reads one: numbers and numeric strings; anything else is unset."""
    value = info.get(key)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return default
    return default
