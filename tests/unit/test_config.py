"""The config loader: LiteLLM configs load unchanged; every bad field is named."""

from __future__ import annotations

from pathlib import Path

import pytest

from switchboard.cli import main
from switchboard.config import ConfigError, load_settings, parse_settings

HERE = Path(__file__).parent / "configs"
REPO = Path(__file__).resolve().parents[2]
ENV = {
    "AZURE_API_KEY": "az-key",
    "OPENAI_API_KEY": "oa-key",
    "ANTHROPIC_API_KEY": "an-key",
}

# One fixture file per failure mode, and the path each must name.
BAD = {
    "empty-model-list.yaml": "model_list: List should have at least 1 item",
    "missing-model.yaml": "model_list[0].litellm_params.model: Field required",
    "negative-rpm.yaml": "model_list[0].litellm_params.rpm: Input should be greater than 0",
    "unknown-fallback.yaml": "router_settings.fallbacks[0].chat: fallback 'nowhere'",
    "unknown-strategy.yaml": "router_settings.routing_strategy: Value error, unknown routing",
    "unknown-router-key.yaml": "router_settings.num_retires: unknown key",
    "unknown-switchboard-key.yaml": "switchboard.server.lisen: unknown key",
    "alias-to-nothing.yaml": "switchboard.aliases.fast: target 'nope' is not a model group",
    "bad-listen.yaml": "switchboard.server.listen: expected HOST:PORT",
    "missing-env.yaml": "model_list[0].litellm_params.api_key: environment variable "
    "SWITCHBOARD_TEST_UNSET_KEY is not set",
    "not-a-mapping.yaml": "the top level must be a mapping",
    "unknown-top-level.yaml": "model_lst: unknown top-level key",
    "providers-fast-path-not-a-bool.yaml": "switchboard.providers.fast_path: Input should be a "
    "valid boolean",
}


def test_litellm_proxy_config_loads_unchanged() -> None:
    settings = load_settings(HERE / "good-litellm-proxy.yaml", env=ENV)
    assert set(settings.groups) == {"gpt-4o", "claude"}
    azure, direct = settings.groups["gpt-4o"]
    assert azure.params["api_key"] == "az-key"
    assert azure.params["api_version"] == "2024-02-01"
    assert (azure.rpm, azure.tpm) == (900, 90000)
    assert azure.provider == "azure"
    assert direct.id == "openai-direct"
    assert direct.max_input_tokens == 128000
    assert settings.groups["claude"][0].timeout_s == 45
    assert settings.router.routing_strategy == "usage-based-routing"
    assert settings.router.num_retries == 3
    assert settings.router.fallbacks == {"gpt-4o": ("claude",)}
    assert settings.router.context_window_fallbacks == {"gpt-4o": ("claude",)}
    assert settings.router.drop_params is True
    assert settings.resolve("smart") == "claude"
    assert settings.resolve("gpt-4o") == "gpt-4o"
    assert settings.resolve("nope") is None


def test_litellm_settings_we_do_not_implement_are_reported_as_ignored() -> None:
    settings = load_settings(HERE / "good-litellm-proxy.yaml", env=ENV)
    assert set(settings.ignored) == {
        "environment_variables",
        "router_settings.redis_host",
        "litellm_settings.success_callback",
        "general_settings.master_key",
        "general_settings.database_url",
    }


@pytest.mark.parametrize(("name", "expected"), sorted(BAD.items()))
def test_each_bad_config_names_its_field(name: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(HERE / "bad" / name, env={})
    assert any(p.startswith(expected) for p in caught.value.problems), caught.value.problems


def test_every_problem_is_reported_at_once() -> None:
    text = """
model_list:
  - model_name: chat
    litellm_params: {model: openai/a, rpm: 0, tpm: -1}
  - model_name: chat
    litellm_params: {}
"""
    with pytest.raises(ConfigError) as caught:
        parse_settings(text, source="inline", env={})
    problems = caught.value.problems
    assert len(problems) == 3
    assert {p.split(":")[0] for p in problems} == {
        "model_list[0].litellm_params.rpm",
        "model_list[0].litellm_params.tpm",
        "model_list[1].litellm_params.model",
    }


def test_the_fast_path_is_off_unless_the_config_turns_it_on() -> None:
    text = "model_list:\n  - {model_name: chat, litellm_params: {model: openai/a}}\n"
    assert not parse_settings(text, source="inline", env={}).providers.fast_path
    on = text + "switchboard: {providers: {fast_path: true}}\n"
    assert parse_settings(on, source="inline", env={}).providers.fast_path


def test_duplicate_models_in_a_group_get_distinct_ids() -> None:
    text = """
model_list:
  - {model_name: chat, litellm_params: {model: openai/a}}
  - {model_name: chat, litellm_params: {model: openai/a}}
"""
    settings = parse_settings(text, source="inline", env={})
    assert [d.id for d in settings.deployments] == ["chat/openai/a", "chat/openai/a#2"]


def test_default_config_is_valid_and_serves_chat_from_three_deployments() -> None:
    settings = load_settings(REPO / "configs" / "default.yaml", env={})
    chat = settings.groups["chat"]
    assert len(chat) == 3
    assert len({d.model for d in chat}) == 3
    assert settings.simulator is not None
    assert all(d.params["api_base"].endswith(f":{settings.simulator.listen.port}/v1") for d in chat)


def test_check_config_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(REPO / "configs" / "default.yaml")]) == 0
    assert "ok: 3 deployments" in capsys.readouterr().out
    assert main(["check-config", str(HERE / "bad" / "negative-rpm.yaml")]) == 1
    assert "model_list[0].litellm_params.rpm" in capsys.readouterr().err
    assert main(["check-config", str(HERE / "does-not-exist.yaml")]) == 1
    assert "cannot read the file" in capsys.readouterr().err
