"""Prices from litellm's shipped map, read without litellm, agree with litellm's own."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from switchboard.domain import Usage
from switchboard.providers.prices import PriceTable

# Model strings as deployments name them, across providers and pricing shapes.
MODELS = [
    "gpt-4o",
    "openai/gpt-4o",
    "openai/gpt-4o-mini",
    "gpt-4.1",
    "openai/gpt-5.6",  # a tier above 272k tokens
    "anthropic/claude-sonnet-4-5",
    "claude-haiku-4-5",
    "groq/openai/gpt-oss-120b",
    "azure/gpt-4o",
    "azure/gpt-4o-mini",
    "azure/gpt-astra-latest",  # an `alias_of` row
    "bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0",
    "bedrock/amazon.nova-lite-v1:0",  # a bedrock_converse row
    "gemini/gemini-2.5-pro",  # a tier above 200k tokens
    "gemini/gemini-2.5-flash",
    "vertex_ai/gemini-2.5-flash",  # a vertex_ai-language-models row
    "mistral/mistral-large-latest",
    "deepseek/deepseek-chat",
    "xai/grok-4.3",  # a tier from 200k tokens on
    "perplexity/sonar",
    "together_ai/deepseek-ai/DeepSeek-V3",
    "fireworks_ai/accounts/fireworks/models/deepseek-v3",  # cache reads at half the input rate
    "databricks/databricks-claude-fable-5",
]
USAGES = [
    Usage(input_tokens=1000, output_tokens=500),
    Usage(input_tokens=1000, output_tokens=500, cached_input_tokens=600),
    Usage(input_tokens=200_000, output_tokens=10),
    Usage(input_tokens=300_000, output_tokens=100, cached_input_tokens=200_000),
    Usage(),
]


@pytest.fixture(scope="module")
def table() -> PriceTable:
    return PriceTable.bundled()


def litellm_price(model: str, usage: Usage) -> float:
    import litellm

    details = {"cached_tokens": usage.cached_input_tokens} if usage.cached_input_tokens else None
    usage_object = litellm.Usage(
        prompt_tokens=usage.input_tokens,
        completion_tokens=usage.output_tokens,
        total_tokens=usage.total_tokens,
        prompt_tokens_details=details,
    )
    prompt, completion = litellm.cost_per_token(
        model=model,
        prompt_tokens=usage.input_tokens,
        completion_tokens=usage.output_tokens,
        usage_object=usage_object,
    )
    return float(prompt) + float(completion)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("usage", USAGES, ids=lambda u: f"{u.input_tokens}-{u.cached_input_tokens}")
def test_same_price_as_litellm(table: PriceTable, model: str, usage: Usage) -> None:
    ours = table.price(model, usage)
    assert ours is not None, f"{model} is not in litellm's map any more"
    assert ours == pytest.approx(litellm_price(model, usage), rel=1e-12, abs=1e-15)


def test_without_cached_tokens_it_is_the_adapters_old_call(table: PriceTable) -> None:
    import litellm

    prompt, completion = litellm.cost_per_token(
        model="openai/gpt-4o", prompt_tokens=1234, completion_tokens=56
    )
    assert table.price("openai/gpt-4o", Usage(1234, 56)) == pytest.approx(prompt + completion)


@pytest.mark.parametrize(
    "model",
    ["no-such-model", "openai/no-such-model", "groq/gpt-4o", "dashscope/qwen-flash"],
    ids=["unknown", "unknown-with-provider", "another-providers-model", "tier-table"],
)
def test_no_price_is_none(table: PriceTable, model: str) -> None:
    assert table.price(model, Usage(10, 10)) is None
    assert table.lookup(model) is None  # remembered


def write_map(tmp_path: Path, entries: dict[str, Any]) -> PriceTable:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps(entries))
    return PriceTable(path)


def test_rates_tiers_and_aliases(tmp_path: Path) -> None:
    table = write_map(
        tmp_path,
        {
            "sample_spec": {"input_cost_per_token": 0.0, "litellm_provider": "doc"},
            "m": {
                "litellm_provider": "p",
                "mode": "chat",
                "input_cost_per_token": "2e-6",  # litellm reads numeric strings too
                "output_cost_per_token": 4e-6,
                "input_cost_per_token_above_10_tokens": 3e-6,
                "cache_read_input_token_cost_above_20k_tokens": 0.0,  # a real zero
                "input_cost_per_token_above_10_tokens_priority": 9.0,  # another service tier
            },
            "alias": {"alias_of": "m"},
            "embed": {"litellm_provider": "p", "mode": "embedding", "input_cost_per_token": 1.0},
            "per-second": {"litellm_provider": "p", "input_cost_per_second": 1.0},
        },
    )
    assert table.price("m", Usage(10, 1)) == pytest.approx(10 * 2e-6 + 4e-6)
    # Above 10: the tier's input rate; cache reads at that rate when none is set.
    assert table.price("m", Usage(11, 1, 5)) == pytest.approx(11 * 3e-6 + 4e-6)
    assert table.price("p/m", Usage(20_001, 0, 1)) == pytest.approx(20_000 * 3e-6)
    assert table.price("alias", Usage(10, 1)) == table.price("m", Usage(10, 1))
    assert table.price("q/m", Usage(10, 1)) is None
    for model in ("sample_spec", "embed", "per-second"):
        assert table.lookup(model) is None


def test_the_map_is_read_once_and_only_when_needed(tmp_path: Path) -> None:
    path = tmp_path / "absent.json"
    table = PriceTable(path)  # nothing read yet
    path.write_text(json.dumps({"m": {"litellm_provider": "p", "input_cost_per_token": 1.0}}))
    assert table.price("m", Usage(3, 0)) == 3.0
    path.unlink()
    assert table.price("m", Usage(4, 0)) == 4.0
    assert table.load() == 1
