"""The server's transport settings: TLS files checked at load, keepalive, plaintext warning."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import grpc
import pytest

from switchboard.api.server import STREAMS_PER_CONNECTION, GatewayServer, Slots, _options
from switchboard.app import DEFAULT_DRAIN_S, build_gateway, drain_seconds
from switchboard.config import (
    Address,
    ConfigError,
    Settings,
    TlsSettings,
    TransportSettings,
    load_settings,
    parse_settings,
)

from .fakes import FakeClock, ScriptedProvider

HERE = Path(__file__).parent / "configs"
BASE = """
model_list:
  - model_name: chat
    litellm_params:
      model: openai/fast
"""


def _settings(server: str = "") -> Settings:
    text = BASE + ("switchboard:\n  server:\n" + server if server else "")
    return parse_settings(text, source="inline", env={})


def test_without_a_tls_section_the_port_is_plaintext_with_default_keepalive() -> None:
    settings = parse_settings(BASE, source="inline", env={})
    transport = settings.transport
    assert transport.tls is None
    assert (transport.keepalive_time_s, transport.keepalive_timeout_s) == (60.0, 20.0)
    assert transport.max_message_bytes == 8 * 1024 * 1024


def test_tls_files_that_exist_are_kept_by_path(tmp_path: Path) -> None:
    for name in ("cert.pem", "key.pem", "ca.pem"):
        (tmp_path / name).write_text("PEM")
    settings = parse_settings(
        BASE
        + f"""
switchboard:
  server:
    keepalive_time_seconds: 30
    tls:
      cert_file: {tmp_path / "cert.pem"}
      key_file: {tmp_path / "key.pem"}
      client_ca_file: {tmp_path / "ca.pem"}
""",
        source="inline",
        env={},
    )
    assert settings.transport.tls == TlsSettings(
        tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    )
    assert settings.transport.keepalive_time_s == 30


def test_each_missing_tls_file_is_named_with_its_path() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(HERE / "bad" / "tls-missing-files.yaml", env={})
    problems = caught.value.problems
    for field, name in (
        ("cert_file", "server.pem"),
        ("key_file", "server.key"),
        ("client_ca_file", "ca.pem"),
    ):
        expected = (
            f"switchboard.server.tls.{field}: cannot read /nonexistent/switchboard-test/{name}"
        )
        assert any(p.startswith(expected) for p in problems), problems


@pytest.mark.parametrize(
    ("server", "field"),
    [
        ("    tls: {cert_file: a.pem}\n", "switchboard.server.tls.key_file"),
        ("    keepalive_time_seconds: 0\n", "switchboard.server.keepalive_time_seconds"),
        ("    keepalive_timeout_seconds: -1\n", "switchboard.server.keepalive_timeout_seconds"),
        ("    max_message_bytes: 100\n", "switchboard.server.max_message_bytes"),
    ],
)
def test_bad_transport_settings_are_named(server: str, field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _settings(server)
    assert any(p.startswith(field) for p in caught.value.problems), caught.value.problems


@pytest.mark.parametrize(
    ("host", "warned"), [("0.0.0.0", True), ("127.0.0.1", False), ("localhost", False)]
)
async def test_plaintext_off_loopback_is_a_warning(
    host: str, warned: bool, caplog: pytest.LogCaptureFixture
) -> None:
    settings = parse_settings(BASE, source="inline", env={})
    gateway = build_gateway(settings, provider=ScriptedProvider(FakeClock()))
    server = GatewayServer(gateway, clock=time.monotonic, max_concurrent_calls=4)
    with caplog.at_level(logging.WARNING, logger="switchboard.api.server"):
        await server.start(Address(host, 0))
    await server.stop(0)
    assert any("PLAINTEXT" in r.getMessage() for r in caplog.records) is warned


def test_keepalive_and_message_size_reach_grpc_options() -> None:
    """The settings are only useful if they reach grpc core under its own names."""
    options = dict(
        _options(
            TransportSettings(
                max_message_bytes=1 << 20, keepalive_time_s=30, keepalive_timeout_s=5
            ),
            reuse_port=False,
        )
    )
    assert options["grpc.so_reuseport"] == 0
    assert dict(_options(TransportSettings(), reuse_port=True))["grpc.so_reuseport"] == 1
    assert options["grpc.max_receive_message_length"] == 1 << 20
    assert options["grpc.keepalive_time_ms"] == 30_000
    assert options["grpc.keepalive_timeout_ms"] == 5_000
    assert options["grpc.keepalive_permit_without_calls"] == 1
    assert options["grpc.http2.max_pings_without_data"] == 0


def test_one_connection_cannot_open_every_stream() -> None:
    options = dict(_options(TransportSettings(), reuse_port=False))
    assert options["grpc.max_concurrent_streams"] == STREAMS_PER_CONNECTION
    # Gateway calls are bounded by the server's own budget, not grpc's shared one.
    assert "grpc.max_concurrent_rpcs" not in options


@pytest.mark.parametrize(
    ("server", "host", "drain"),
    [
        ("", "127.0.0.1", 0.0),
        ("", "::1", 0.0),
        ("", "0.0.0.0", DEFAULT_DRAIN_S),
        ("", "10.1.2.3", DEFAULT_DRAIN_S),
        ("    drain_seconds: 1.5\n", "127.0.0.1", 1.5),
        ("    drain_seconds: 0\n", "0.0.0.0", 0.0),
    ],
)
def test_the_drain_defaults_to_none_on_loopback_only(server: str, host: str, drain: float) -> None:
    assert drain_seconds(_settings(server), Address(host, 50051)) == drain


def test_a_budget_counts_and_refuses_past_its_limit() -> None:
    slots = Slots("server.test", 2)
    assert slots.take()
    assert slots.take()
    assert not slots.take()
    refusal = slots.full()
    assert refusal.status is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert refusal.info() == {"limit": "server.test"}
    slots.give()
    assert slots.take()
    with pytest.raises(ValueError, match="at least one slot"):
        Slots("server.none", 0)
