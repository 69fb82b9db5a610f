"""`switchboard.cache`, and LiteLLM's `litellm_settings.cache` mapped onto it."""

from __future__ import annotations

import pytest

from switchboard.config import ConfigError, Settings, parse_settings

MODELS = """
model_list:
  - {model_name: chat, litellm_params: {model: openai/a}}
  - {model_name: code, litellm_params: {model: openai/b}}
"""


def _parse(extra: str, env: dict[str, str] | None = None) -> Settings:
    return parse_settings(MODELS + extra, source="test", env=env or {})


def test_no_cache_unless_asked() -> None:
    assert _parse("").cache is None


def test_our_section_with_every_field() -> None:
    settings = _parse(
        """
switchboard:
  aliases: {smart: code}
  cache:
    backend: redis
    ttl_seconds: 120
    scope: team
    redis: {url: "redis://127.0.0.1:6390/2", prefix: "sb:", timeout_seconds: 0.5}
    semantic: {groups: [smart], threshold: 0.9, max_entries: 500}
"""
    )
    cache = settings.cache
    assert cache is not None
    assert (cache.backend, cache.ttl_s, cache.scope) == ("redis", 120, "team")
    assert cache.redis.url == "redis://127.0.0.1:6390/2"
    assert (cache.redis.prefix, cache.redis.timeout_s) == ("sb:", 0.5)
    # An alias in `groups` stands for its group.
    assert cache.semantic.on_for("code")
    assert not cache.semantic.on_for("chat")
    assert cache.semantic.configured
    assert (cache.semantic.threshold, cache.semantic.max_entries) == (0.9, 500)


def test_enabled_false_turns_it_off() -> None:
    assert _parse("switchboard: {cache: {enabled: false}}").cache is None


@pytest.mark.parametrize(
    ("section", "path"),
    [
        ("{scope: everyone}", "switchboard.cache.scope"),
        ("{backend: disk}", "switchboard.cache.backend"),
        ("{ttl_seconds: 0}", "switchboard.cache.ttl_seconds"),
        ("{semantic: {threshold: 1.5}}", "switchboard.cache.semantic.threshold"),
        ("{semantic: {groups: [nope]}}", "switchboard.cache.semantic.groups[0]"),
        ("{semantic: {model_dir: /no/such/dir}}", "switchboard.cache.semantic.model_dir"),
        ("{redis: {port: 0}}", "switchboard.cache.redis.port"),
    ],
)
def test_bad_fields_are_named(section: str, path: str) -> None:
    with pytest.raises(ConfigError) as err:
        _parse(f"switchboard: {{cache: {section}}}")
    assert any(p.startswith(path) for p in err.value.problems), err.value.problems


def test_litellm_redis_cache_maps_onto_ours() -> None:
    settings = _parse(
        """
litellm_settings:
  cache: true
  cache_params:
    type: redis
    host: os.environ/REDIS_HOST
    port: 6380
    password: os.environ/REDIS_PASSWORD
    ttl: 600
    namespace: litellm.caching
""",
        env={"REDIS_HOST": "10.0.0.5", "REDIS_PASSWORD": "pw"},
    )
    cache = settings.cache
    assert cache is not None
    assert (cache.backend, cache.ttl_s) == ("redis", 600)
    assert (cache.redis.host, cache.redis.port, cache.redis.password) == ("10.0.0.5", 6380, "pw")
    assert cache.redis.prefix == "litellm.caching:"
    assert not cache.semantic.configured
    assert not [i for i in settings.ignored if "cache" in i]


def test_litellm_semantic_cache_turns_semantic_on_with_its_threshold() -> None:
    settings = _parse(
        """
litellm_settings:
  cache: true
  cache_params: {type: redis-semantic, similarity_threshold: 0.8}
"""
    )
    assert settings.cache is not None
    assert settings.cache.semantic.on_for("chat")
    assert settings.cache.semantic.threshold == 0.8


@pytest.mark.parametrize("kind", ["s3", "disk", "gcs"])
def test_litellm_cache_types_we_lack_are_reported_and_served_in_process(kind: str) -> None:
    settings = _parse(f"litellm_settings: {{cache: true, cache_params: {{type: {kind}}}}}")
    assert settings.cache is not None
    assert settings.cache.backend == "memory"
    assert "litellm_settings.cache_params.type" in settings.ignored


def test_litellm_cache_for_embeddings_only_leaves_completions_uncached() -> None:
    settings = _parse(
        "litellm_settings: {cache: true, cache_params: {supported_call_types: [embedding]}}"
    )
    assert settings.cache is None


def test_unknown_litellm_cache_params_are_reported() -> None:
    settings = _parse(
        "litellm_settings: {cache: true, cache_params: {type: local, s3_bucket_name: b}}"
    )
    assert settings.cache is not None
    assert "litellm_settings.cache_params.s3_bucket_name" in settings.ignored


def test_our_section_wins_and_theirs_is_reported() -> None:
    settings = _parse(
        """
litellm_settings: {cache: true, cache_params: {type: redis}}
switchboard: {cache: {backend: memory}}
"""
    )
    assert settings.cache is not None
    assert settings.cache.backend == "memory"
    assert {"litellm_settings.cache", "litellm_settings.cache_params"} <= set(settings.ignored)


def test_admin_keys() -> None:
    digest = "a" * 64
    settings = _parse(f"switchboard: {{keys: [{{name: ops, sha256: '{digest}', admin: true}}]}}")
    assert settings.keys[0].admin
