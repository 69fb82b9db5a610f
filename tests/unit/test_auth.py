"""Caller keys: configured by digest, compared in constant time, scoped to models."""

from __future__ import annotations

import hashlib
import hmac
import logging
from pathlib import Path

import grpc
import pytest

from switchboard.api.auth import Authenticator
from switchboard.app import announce_keys
from switchboard.config import ConfigError, Settings, load_settings, parse_settings
from switchboard.domain import Caller
from switchboard.errors import PermissionDenied, Unauthenticated

BAD = Path(__file__).parent / "configs" / "bad"

ALPHA = "sk-alpha-7d1e0c"
BETA = "sk-beta-93b2aa"
GAMMA = "sk-gamma-1f00d5"


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _settings() -> Settings:
    text = f"""
model_list:
  - {{model_name: chat, litellm_params: {{model: openai/a}}}}
  - {{model_name: code, litellm_params: {{model: openai/b}}}}
  - {{model_name: vision, litellm_params: {{model: openai/c}}}}
switchboard:
  aliases: {{quick: chat, coder: code}}
  keys:
    - name: alpha
      sha256: {_digest(ALPHA)}
      models: [chat, coder]
      rpm: 2
      metadata: {{team: search, tags: "prod,eu"}}
    - name: beta
      sha256: {_digest(BETA)}
      models: ["*"]
    - name: gamma
      sha256: {_digest(GAMMA)}
      tpm: 500
"""
    return parse_settings(text, source="test", env={})


@pytest.fixture
def auth() -> Authenticator:
    return Authenticator.from_settings(_settings())


def _bearer(key: str) -> list[tuple[str, str | bytes]]:
    return [("user-agent", "test"), ("authorization", f"Bearer {key}")]


# ---------------------------------------------------------------- config


def test_keys_load_with_their_models_resolved_to_groups() -> None:
    alpha, beta, gamma = _settings().keys
    assert alpha.name == "alpha"
    assert alpha.sha256 == _digest(ALPHA)
    # `coder` is an alias: the key is scoped to the group it stands for.
    assert alpha.groups == frozenset({"chat", "code"})
    assert alpha.models == ("chat", "coder")
    assert (alpha.rpm, alpha.tpm) == (2, None)
    assert alpha.metadata == {"team": "search", "tags": "prod,eu"}
    assert beta.groups is None, "'*' allows every model"
    assert gamma.groups is None, "no models listed allows every model"
    assert (gamma.rpm, gamma.tpm) == (None, 500)


def test_no_keys_configured_is_an_empty_tuple() -> None:
    text = "model_list: [{model_name: chat, litellm_params: {model: openai/a}}]"
    assert parse_settings(text, source="test", env={}).keys == ()


# One fixture file per failure mode, and the path each must name.
BAD_KEYS = {
    "key-not-a-digest.yaml": "switchboard.keys[0].sha256: Value error, expected the key's SHA-256",
    "key-duplicate-name.yaml": "switchboard.keys[1].name: duplicate name (also keys[0])",
    "key-duplicate-digest.yaml": "switchboard.keys[1].sha256: the same key as keys[0]",
    "key-unknown-model.yaml": "switchboard.keys[0].models[1]: 'nope' is not a model group or alias",
    "key-star-not-alone.yaml": "switchboard.keys[0].models[1]: '*' allows every model",
    "key-zero-rpm.yaml": "switchboard.keys[0].rpm: Input should be greater than 0",
    "key-bad-name.yaml": "switchboard.keys[0].name: Value error, expected 1-64 letters",
    "key-unknown-field.yaml": "switchboard.keys[0].limit: unknown key",
}


@pytest.mark.parametrize(("name", "expected"), sorted(BAD_KEYS.items()))
def test_each_bad_key_names_its_field(name: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(BAD / name, env={})
    assert any(p.startswith(expected) for p in caught.value.problems), caught.value.problems


def test_a_key_pasted_in_clear_is_not_repeated_in_the_error() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(BAD / "key-not-a-digest.yaml", env={})
    assert "sk-live-in-clear" not in str(caught.value)


# ---------------------------------------------------------------- authenticate


def test_a_configured_key_authenticates_as_its_caller(auth: Authenticator) -> None:
    caller = auth.authenticate(_bearer(ALPHA))
    assert caller == Caller(
        name="alpha",
        limit_key="key:alpha",
        metadata={"team": "search", "tags": "prod,eu"},
        groups=frozenset({"chat", "code"}),
    )
    assert auth.authenticate(_bearer(GAMMA)) == Caller(name="gamma", limit_key="key:gamma")


def test_a_key_without_limits_has_no_limit_key(auth: Authenticator) -> None:
    caller = auth.authenticate(_bearer(BETA))
    assert caller is not None
    assert (caller.name, caller.limit_key) == ("beta", None)


def test_the_scheme_is_case_insensitive(auth: Authenticator) -> None:
    caller = auth.authenticate([("authorization", f"bearer  {BETA} ")])
    assert caller is not None
    assert caller.name == "beta"


@pytest.mark.parametrize(
    "metadata",
    [
        pytest.param([], id="no metadata"),
        pytest.param([("user-agent", "test")], id="no authorization"),
        pytest.param([("authorization", f"Basic {ALPHA}")], id="another scheme"),
        pytest.param([("authorization", ALPHA)], id="no scheme"),
        pytest.param([("authorization", "Bearer")], id="no key"),
        pytest.param([("authorization", f"Bearer {ALPHA} extra")], id="two words"),
        pytest.param([("authorization", f"Bearer {ALPHA}".encode())], id="bytes"),
        pytest.param(_bearer(ALPHA) + _bearer(BETA), id="two headers"),
        pytest.param(_bearer("sk-nobody"), id="unknown key"),
        pytest.param(_bearer(ALPHA.upper()), id="the key in the wrong case"),
        pytest.param(_bearer(_digest(ALPHA)), id="the digest itself"),
    ],
)
def test_missing_malformed_or_unknown_keys_are_unauthenticated(
    auth: Authenticator, metadata: list[tuple[str, str | bytes]]
) -> None:
    with pytest.raises(Unauthenticated) as caught:
        auth.authenticate(metadata)
    err = caught.value
    assert err.status is grpc.StatusCode.UNAUTHENTICATED
    # The message never repeats what was sent.
    for _, value in metadata:
        sent = value.decode() if isinstance(value, bytes) else value
        words = [w for w in sent.split() if w.lower() != "bearer"]
        assert not any(w in err.message for w in words if len(w) > 4), err.message


def test_every_digest_is_compared_in_constant_time(
    auth: Authenticator, monkeypatch: pytest.MonkeyPatch
) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    # ALPHA is the first key: the loop must still compare the other two.
    caller = auth.authenticate(_bearer(ALPHA))
    assert caller is not None
    assert caller.name == "alpha"
    assert len(compared) == 3
    assert all(a == hashlib.sha256(ALPHA.encode()).digest() for a, _ in compared)
    compared.clear()
    with pytest.raises(Unauthenticated):
        auth.authenticate(_bearer("sk-nobody"))
    assert len(compared) == 3


def test_no_keys_configured_admits_every_caller() -> None:
    text = "model_list: [{model_name: chat, litellm_params: {model: openai/a}}]"
    open_auth = Authenticator.from_settings(parse_settings(text, source="test", env={}))
    assert not open_auth.enabled
    assert open_auth.authenticate([]) is None
    assert open_auth.authenticate(_bearer("anything")) is None
    open_auth.authorize(None, "chat")
    assert open_auth.allows_group(None, "chat")


def test_an_open_gateway_warns_at_start_and_a_keyed_one_names_its_keys(
    caplog: pytest.LogCaptureFixture,
) -> None:
    text = "model_list: [{model_name: chat, litellm_params: {model: openai/a}}]"
    with caplog.at_level(logging.INFO, logger="switchboard.app"):
        announce_keys(parse_settings(text, source="test", env={}))
        announce_keys(_settings())
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.WARNING, "no caller keys configured: every caller is admitted"),
        (logging.INFO, "caller keys: alpha, beta, gamma"),
    ]


# ---------------------------------------------------------------- authorize


def test_allowing_a_group_allows_its_aliases_and_the_reverse(auth: Authenticator) -> None:
    alpha = auth.authenticate(_bearer(ALPHA))
    # alpha lists the group `chat` and the alias `coder`.
    for model in ("chat", "quick", "code", "coder"):
        auth.authorize(alpha, model)
    assert auth.allows_group(alpha, "chat")
    assert auth.allows_group(alpha, "code")
    assert not auth.allows_group(alpha, "vision")


@pytest.mark.parametrize("model", ["vision", "no-such-model"])
def test_a_model_outside_the_key_is_permission_denied(auth: Authenticator, model: str) -> None:
    alpha = auth.authenticate(_bearer(ALPHA))
    with pytest.raises(PermissionDenied) as caught:
        auth.authorize(alpha, model)
    err = caught.value
    assert err.status is grpc.StatusCode.PERMISSION_DENIED
    assert err.reason == "MODEL_NOT_ALLOWED"
    assert err.info() == {"model": model, "key": "alpha"}
    assert "'chat', 'coder'" in err.message, "it says what the key may use"
    assert ALPHA not in err.message


def test_an_unscoped_key_may_use_every_model(auth: Authenticator) -> None:
    for key in (BETA, GAMMA):
        caller = auth.authenticate(_bearer(key))
        for model in ("chat", "quick", "vision", "no-such-model"):
            auth.authorize(caller, model)
