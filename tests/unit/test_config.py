"""The config loader: LiteLLM configs load unchanged; every bad field is named."""

from __future__ import annotations

from pathlib import Path

import pytest

from switchboard.app import build_gateway
from switchboard.cli import main
from switchboard.config import ConfigError, Settings, load_settings, parse_settings
from switchboard.domain import CompletionRequest, Message, Role
from switchboard.errors import ModelNotFound
from tests.unit.fakes import FakeClock, ScriptedProvider

HERE = Path(__file__).parent / "configs"
REPO = Path(__file__).resolve().parents[2]
ENV = {
    "AZURE_API_KEY": "az-key",
    "OPENAI_API_KEY": "oa-key",
    "ANTHROPIC_API_KEY": "an-key",
}

# One fixture file per failure mode, and the path each must name.
BAD = {
    "missing-model.yaml": "model_list[0].litellm_params.model: Field required",
    "negative-rpm.yaml": "model_list[0].litellm_params.rpm: Input should be greater than 0",
    "unknown-strategy.yaml": "router_settings.routing_strategy: Value error, unknown routing",
    "unknown-switchboard-key.yaml": "switchboard.server.lisen: unknown key",
    "alias-to-nothing.yaml": "switchboard.aliases.fast: target 'nope' is not a model group",
    "bad-listen.yaml": "switchboard.server.listen: expected HOST:PORT",
    "missing-env.yaml": "model_list[0].litellm_params.api_key: environment variable "
    "SWITCHBOARD_TEST_UNSET_KEY is not set",
    "not-a-mapping.yaml": "the top level must be a mapping",
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
        "litellm_settings.success_callback",
        "general_settings.master_key",
        "general_settings.database_url",
    }


def test_litellm_router_redis_settings_share_state() -> None:
    settings = load_settings(HERE / "good-litellm-proxy.yaml", env=ENV)
    assert settings.state_redis is not None
    assert (settings.state_redis.host, settings.state_redis.port) == ("localhost", 6379)
    assert settings.state_redis.prefix == "switchboard:"
    assert settings.state_redis.local_share == 1.0


def _redis_config(router: str, ours: str = "") -> Settings:
    text = f"""
model_list:
  - model_name: m
    litellm_params: {{model: openai/gpt-4o-mini}}
router_settings:
{router}
switchboard:
{ours or "  server: {}"}
"""
    return parse_settings(text, source="inline", env={"REDIS_PORT": "7001", "REDIS_PASSWORD": "pw"})


def test_litellm_redis_host_port_and_password_from_the_environment() -> None:
    settings = _redis_config(
        "  redis_host: 10.0.0.5\n  redis_port: os.environ/REDIS_PORT\n"
        "  redis_password: os.environ/REDIS_PASSWORD\n  redis_db: 2"
    )
    redis = settings.state_redis
    assert redis is not None
    assert (redis.host, redis.port, redis.password, redis.db) == ("10.0.0.5", 7001, "pw", 2)
    assert not [i for i in settings.ignored if "redis" in i]


def test_litellm_redis_url_and_a_bad_port() -> None:
    settings = _redis_config("  redis_url: redis://10.0.0.5:7002/0")
    assert settings.state_redis is not None
    assert settings.state_redis.url == "redis://10.0.0.5:7002/0"
    with pytest.raises(ConfigError) as caught:
        _redis_config("  redis_host: h\n  redis_port: not-a-port")
    assert any(p.startswith("router_settings.redis_port") for p in caught.value.problems)


def test_switchboard_redis_wins_and_sets_the_local_share() -> None:
    settings = _redis_config(
        "  redis_host: 10.0.0.5",
        "  redis:\n    url: redis://127.0.0.1:7003\n    replicas: 4",
    )
    redis = settings.state_redis
    assert redis is not None
    assert redis.url == "redis://127.0.0.1:7003"
    assert redis.local_share == 0.25
    assert redis.timeout_s == 0.1
    assert "router_settings.redis_host" in settings.ignored
    explicit = _redis_config("  {}", "  redis:\n    replicas: 4\n    local_share: 0.5")
    assert explicit.state_redis is not None
    assert explicit.state_redis.local_share == 0.5


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
    assert "ok: 5 deployments" in capsys.readouterr().out
    assert main(["check-config", str(HERE / "bad" / "negative-rpm.yaml")]) == 1
    assert "model_list[0].litellm_params.rpm" in capsys.readouterr().err
    assert main(["check-config", str(HERE / "does-not-exist.yaml")]) == 1
    assert "cannot read the file" in capsys.readouterr().err


# Shapes LiteLLM's proxy loads, each seen in a real LiteLLM config.
LENIENT = """
model_list:
  - model_name: chat
    litellm_params:
      model: openai/a
      api_key:              # null: absent
      rpm: 10
    rpm: 3                  # beside litellm_params: LiteLLM's router reads it first
    tpm: 2000
    model_info:
    blocked: false
  - model_name: chat
    litellm_params: {model: openai/b, tpm: 500}
    model_info: {tpm: 100, mode: chat}
general_settings:
  # only comments
router_settings:
litellm_settings: null
finetune_settings:
  - custom_llm_provider: openai
    api_key: os.environ/UNSET_BECAUSE_IGNORED
model_lst: []
"""


def test_what_litellm_loads_loads_here_and_what_is_not_applied_is_listed() -> None:
    settings = parse_settings(LENIENT, source="inline", env={})
    a, b = settings.groups["chat"]
    assert (a.rpm, a.tpm) == (3, 2000)
    assert "api_key" not in a.params
    assert (b.rpm, b.tpm) == (None, 500)
    assert set(settings.ignored) == {
        "finetune_settings",
        "model_lst",
        "model_list[0].blocked",
        "model_list[1].model_info.mode",
    }
    assert settings.warnings == (
        "model_lst: LiteLLM does not know this top-level key either (a typo?)",
    )


def test_router_keys_litellm_skips_are_ignored_and_its_refusals_stay_refusals() -> None:
    text = "model_list:\n  - {model_name: chat, litellm_params: {model: openai/a}}\n"
    settings = parse_settings(text + "router_settings: {num_retires: 3}\n", source="t", env={})
    assert settings.ignored == ("router_settings.num_retires",)
    assert "a typo?" in settings.warnings[0]
    with pytest.raises(ConfigError) as caught:
        parse_settings(text + "router_settings: {health_check_interval: 3}\n", source="t", env={})
    assert caught.value.problems[0].startswith("router_settings.health_check_interval:")


def test_fallbacks_and_router_aliases_to_no_group_are_ignored_by_path() -> None:
    text = """
model_list:
  - {model_name: chat, litellm_params: {model: openai/a}}
  - {model_name: backup, litellm_params: {model: openai/b}}
router_settings:
  fallbacks: [{chat: [nowhere, backup]}, {ghost: [chat]}]
  model_group_alias: {smart: nothing}
litellm_settings:
  context_window_fallbacks: [{chat: [backup]}]
"""
    settings = parse_settings(text, source="t", env={})
    assert settings.router.fallbacks == {"chat": ("backup",)}
    assert settings.router.context_window_fallbacks == {"chat": ("backup",)}
    assert settings.resolve("smart") is None
    assert set(settings.ignored) == {
        "router_settings.fallbacks[0].chat[0]",
        "router_settings.fallbacks[1].ghost",
        "router_settings.model_group_alias.smart",
    }
    assert len(settings.warnings) == 3


def test_our_own_aliases_to_no_group_are_still_errors() -> None:
    with pytest.raises(ConfigError):
        load_settings(HERE / "bad" / "alias-to-nothing.yaml", env={})


@pytest.mark.parametrize("text", ["", "model_list: []\n", "general_settings: {master_key: k}\n"])
async def test_an_empty_model_list_loads_with_a_warning_and_serves_not_found(text: str) -> None:
    settings = parse_settings(text, source="t", env={})
    assert settings.groups == {}
    assert settings.deployments == ()
    assert settings.warnings[-1].startswith("model_list: no deployments")
    clock = FakeClock()
    gateway = build_gateway(settings, clock=clock, provider=ScriptedProvider(clock))
    request = CompletionRequest(model="chat", messages=(Message(Role.USER, "hi"),))
    with pytest.raises(ModelNotFound):
        await gateway.complete(request, deadline=None)


def test_check_config_says_an_empty_model_list_is_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("model_list: []\n")
    assert main(["check-config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "warning: model_list: no deployments" in out
    assert "ok: 0 deployments in groups (none)" in out


def test_a_yaml_error_names_line_and_column_but_never_the_line() -> None:
    secret = "sk-live-0123456789abcdef"
    text = f'model_list:\n  - model_name: chat\n    api_key: "{secret}\n  oops: [\n'
    with pytest.raises(ConfigError) as caught:
        parse_settings(text, source="inline", env={})
    (problem,) = caught.value.problems
    assert problem.startswith("not valid YAML at line ")
    assert "column" in problem
    assert secret not in str(caught.value)
    assert "sk-live" not in str(caught.value)


def test_a_yaml_error_in_a_mapping_names_its_position() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_settings("a: 1\nb: sk-abcdef: x\n", source="inline", env={})
    (problem,) = caught.value.problems
    assert problem.startswith("not valid YAML at line 2, column ")
    assert "sk-abcdef" not in problem


def test_include_merges_files_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "more.yaml").write_text(
        "model_list:\n  - {model_name: more, litellm_params: {model: openai/m}}\n"
        "router_settings: {num_retries: 4}\n"
    )
    (tmp_path / "main.yaml").write_text(
        "include: [sub/more.yaml, sub/more.yaml]\n"
        "model_list:\n  - {model_name: chat, litellm_params: {model: openai/a}}\n"
        "router_settings: {num_retries: 1}\n"
    )
    settings = load_settings(tmp_path / "main.yaml", env={})
    assert list(settings.groups) == ["chat", "more"]
    assert settings.router.num_retries == 4  # the included value replaces, as in LiteLLM
    assert settings.ignored == ()


def test_a_missing_include_is_refused_as_litellm_refuses_it(tmp_path: Path) -> None:
    (tmp_path / "main.yaml").write_text("include: [nope.yaml]\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path / "main.yaml", env={})
    assert caught.value.problems[0].startswith("include 'nope.yaml': cannot read the file")


def test_an_unset_variable_in_a_used_value_is_still_an_error() -> None:
    text = """
model_list:
  - {model_name: chat, litellm_params: {model: openai/a, api_key: os.environ/SB_UNSET_X}}
router_settings: {redis_password: os.environ/SB_UNSET_Y}
"""
    with pytest.raises(ConfigError) as caught:
        parse_settings(text, source="t", env={})
    assert caught.value.problems == (
        "model_list[0].litellm_params.api_key: environment variable SB_UNSET_X is not set",
    )


def test_default_fallbacks_serve_every_group_without_a_chain_of_its_own() -> None:
    settings = parse_settings(
        """
model_list:
  - {model_name: a, litellm_params: {model: openai/a}}
  - {model_name: b, litellm_params: {model: openai/b}}
  - {model_name: spare, litellm_params: {model: openai/s}}
router_settings:
  fallbacks: [{b: [a]}]
  default_fallbacks: [spare, nowhere]
""",
        source="test",
        env={},
    )
    assert settings.router.fallbacks == {"a": ("spare",), "b": ("a",)}
    assert "router_settings.default_fallbacks[1]" in settings.ignored


async def test_round_robin_is_selectable_and_takes_each_deployment_in_turn() -> None:
    settings = parse_settings(
        """
model_list:
  - {model_name: chat, litellm_params: {model: openai/x}, model_info: {id: x}}
  - {model_name: chat, litellm_params: {model: openai/y}, model_info: {id: y}}
router_settings:
  routing_strategy: round-robin
""",
        source="test",
        env={},
    )
    clock = FakeClock()
    gateway = build_gateway(settings, clock=clock, provider=ScriptedProvider(clock))
    request = CompletionRequest(model="chat", messages=(Message(Role.USER, "hi"),))
    served = [(await gateway.complete(request, deadline=None)).route.deployment for _ in range(4)]
    assert served in (["x", "y", "x", "y"], ["y", "x", "y", "x"])
