"""Aliases with defaults and auto routing, key/team/provider budgets, and shared-state Redis."""

from __future__ import annotations

import hashlib

import pytest

from switchboard.config import AutoAlias, Budget, ConfigError, parse_settings
from switchboard.domain import Sampling

DIGEST = hashlib.sha256(b"k").hexdigest()
MODELS = """
model_list:
  - {model_name: mini, litellm_params: {model: openai/mini}, model_info: {id: mini}}
  - {model_name: pro, litellm_params: {model: anthropic/claude}, model_info: {id: pro}}
"""


def _problems(extra: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_settings(MODELS + extra, source="test", env={})
    return list(caught.value.problems)


def test_an_alias_maps_to_a_group_or_to_a_target_with_defaults_or_to_auto() -> None:
    settings = parse_settings(
        MODELS
        + """
router_settings:
  model_group_alias: {legacy: pro}
switchboard:
  aliases:
    cheap: mini
    creative: {target: mini, defaults: {temperature: 1.2, top_p: 0.9, stop: ["END"]}}
    auto: {auto: {simple: mini, hard: pro, threshold: 0.3}, defaults: {max_tokens: 300}}
""",
        source="test",
        env={},
    )
    assert settings.aliases == {"legacy": "pro", "cheap": "mini", "creative": "mini"}
    assert settings.alias_defaults == {
        "creative": Sampling(temperature=1.2, top_p=0.9, stop=("END",)),
        "auto": Sampling(max_tokens=300),
    }
    assert settings.auto_aliases == {"auto": AutoAlias("mini", "pro", 0.3)}
    assert settings.targets("auto") == ("mini", "pro")
    assert settings.targets("creative") == ("mini",)
    assert settings.targets("legacy") == ("pro",)
    assert settings.targets("nope") == ()
    # An auto alias stands for no one group.
    assert settings.resolve("auto") is None


@pytest.mark.parametrize(
    ("aliases", "expected"),
    [
        ("{x: {target: nope}}", "switchboard.aliases.x: target 'nope' is not a model group"),
        (
            "{x: {target: mini, auto: {simple: mini, hard: pro}}}",
            "switchboard.aliases.x: give either `target`",
        ),
        ("{x: {defaults: {temperature: 1}}}", "switchboard.aliases.x: give either `target`"),
        ("{x: {auto: {simple: mini, hard: gone}}}", "switchboard.aliases.x.auto.hard: 'gone'"),
        ("{x: {target: mini, defaults: {temperature: 3}}}", "switchboard.aliases.x.str"),
        ("{mini: pro}", "switchboard.aliases.mini: alias shadows the model group"),
        ("{x: {auto: {simple: mini, hard: pro, threshold: 1.5}}}", "switchboard.aliases.x"),
    ],
)
def test_bad_aliases_name_their_field(aliases: str, expected: str) -> None:
    problems = _problems(f"switchboard: {{aliases: {aliases}}}")
    assert any(p.startswith(expected) for p in problems), problems


def test_key_team_and_provider_budgets_in_litellms_names() -> None:
    settings = parse_settings(
        MODELS
        + f"""
router_settings:
  provider_budget_config:
    openai: {{budget_limit: 100, time_period: 1d}}
    anthropic: {{budget_limit: 0.5, time_period: 1mo}}
switchboard:
  teams:
    search: {{max_budget: 25, budget_duration: 30d}}
    forever: {{max_budget: 3}}
  keys:
    - {{name: app, sha256: {DIGEST}, metadata: {{team: search}}, max_budget: 2.5,
        budget_duration: 1h}}
""",
        source="test",
        env={},
    )
    (key,) = settings.keys
    assert key.budget == Budget(2.5, "1h")
    assert key.team == "search"
    assert settings.teams == {"search": Budget(25.0, "30d"), "forever": Budget(3.0, None)}
    assert settings.provider_budgets == {
        "openai": Budget(100.0, "1d"),
        "anthropic": Budget(0.5, "1mo"),
    }
    # Applied, so not reported as ignored.
    assert not any("provider_budget_config" in i for i in settings.ignored)


@pytest.mark.parametrize("duration", ["1y", "0d", "d", "1 d", "-1d", "1.5h", "1month"])
def test_a_budget_duration_must_be_litellms(duration: str) -> None:
    problems = _problems(
        f"switchboard: {{keys: [{{name: a, sha256: {DIGEST}, max_budget: 1, "
        f"budget_duration: '{duration}'}}]}}"
    )
    assert any(p.startswith("switchboard.keys[0].budget_duration") for p in problems), problems


@pytest.mark.parametrize("budget", ["-1", ".nan", ".inf"])
def test_a_budget_is_a_finite_amount(budget: str) -> None:
    problems = _problems(f"switchboard: {{teams: {{t: {{max_budget: {budget}}}}}}}")
    assert any(p.startswith("switchboard.teams.t.max_budget") for p in problems), problems


def test_a_key_allowed_an_auto_alias_may_use_both_of_its_groups() -> None:
    settings = parse_settings(
        MODELS
        + f"""
switchboard:
  aliases: {{auto: {{auto: {{simple: mini, hard: pro}}}}}}
  keys: [{{name: a, sha256: {DIGEST}, models: [auto]}}]
""",
        source="test",
        env={},
    )
    assert settings.keys[0].groups == frozenset({"mini", "pro"})


def test_shared_state_redis_is_our_own_section() -> None:
    settings = parse_settings(
        MODELS + "switchboard: {redis: {url: 'redis://127.0.0.1:6390/2'}}",
        source="test",
        env={},
    )
    assert settings.state_redis is not None
    assert settings.state_redis.url == "redis://127.0.0.1:6390/2"
    assert settings.state_redis.prefix == "switchboard:"
