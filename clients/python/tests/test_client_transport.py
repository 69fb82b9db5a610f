"""The transport a client picks: TLS unless asked otherwise, plaintext by default on loopback."""

from __future__ import annotations

import grpc
import pytest

from switchboard_client._transport import channel_credentials, is_local


@pytest.mark.parametrize(
    ("target", "local"),
    [
        ("127.0.0.1:50051", True),
        ("127.8.9.10:50051", True),
        ("localhost:50051", True),
        ("[::1]:50051", True),
        ("dns:///localhost:50051", True),
        ("ipv4:127.0.0.1:50051", True),
        ("unix:/run/switchboard.sock", True),
        ("gateway.internal:443", False),
        ("10.0.0.7:50051", False),
        ("[2001:db8::1]:443", False),
        ("dns:///gateway.example.com:443", False),
        ("gateway.example.com", False),
    ],
)
def test_what_counts_as_this_machine(target: str, local: bool) -> None:
    assert is_local(target) is local


def test_a_remote_target_gets_tls_unless_plaintext_is_asked_for() -> None:
    assert isinstance(
        channel_credentials("gateway.example.com:443", None, insecure=False),
        grpc.ChannelCredentials,
    )
    assert channel_credentials("gateway.example.com:443", None, insecure=True) is None
    assert channel_credentials("127.0.0.1:50051", None, insecure=False) is None


def test_given_credentials_win_and_cannot_be_combined_with_insecure() -> None:
    given = grpc.local_channel_credentials()
    assert channel_credentials("127.0.0.1:1", given, insecure=False) is given
    with pytest.raises(ValueError, match="contradict"):
        channel_credentials("127.0.0.1:1", given, insecure=True)
