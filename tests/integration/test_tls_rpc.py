"""TLS and mutual TLS on the gateway's port, with certificates made in the test.

The certificates come from the `openssl` command line tool (a CA, a server
certificate for 127.0.0.1 and localhost, a client certificate from the CA
and one self-signed), so the tests need no Python crypto package.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from switchboard.api.pb import gateway_pb2 as pb
from switchboard.api.pb import gateway_pb2_grpc as pb_grpc

from .procs import gateway_config, start_gateway

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl tool"),
]


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    stranger_cert: Path
    stranger_key: Path


def _openssl(directory: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)


def _key_and_request(directory: Path, name: str, subject: str) -> None:
    _openssl(
        directory,
        "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject,
    )  # fmt: skip


def _sign(directory: Path, name: str, extensions: str) -> None:
    (directory / f"{name}.ext").write_text(extensions)
    _openssl(
        directory,
        "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-out", f"{name}.pem", "-extfile", f"{name}.ext",
    )  # fmt: skip


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    _openssl(
        d,
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=switchboard test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    _key_and_request(d, "server", "/CN=localhost")
    _sign(
        d,
        "server",
        "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    _key_and_request(d, "client", "/CN=test-client")
    _sign(d, "client", "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n")
    # A client certificate no configured CA vouches for.
    _openssl(
        d,
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", "stranger.key", "-out", "stranger.pem", "-days", "2", "-subj", "/CN=stranger",
    )  # fmt: skip
    return Pki(
        ca=d / "ca.pem",
        server_cert=d / "server.pem",
        server_key=d / "server.key",
        client_cert=d / "client.pem",
        client_key=d / "client.key",
        stranger_cert=d / "stranger.pem",
        stranger_key=d / "stranger.key",
    )


def _gateway(sim: str, directory: Path, tls: dict[str, str]) -> Iterator[str]:
    config = gateway_config(sim, {"chat": ["instant"]}, switchboard={"server": {"tls": tls}})
    proc, address = start_gateway(config, directory)
    yield address
    assert proc.terminate() == 0, proc.output()


@pytest.fixture(scope="module")
def tls_gateway(sim: str, pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tls = {"cert_file": str(pki.server_cert), "key_file": str(pki.server_key)}
    yield from _gateway(sim, tmp_path_factory.mktemp("tls"), tls)


@pytest.fixture(scope="module")
def mtls_gateway(sim: str, pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tls = {
        "cert_file": str(pki.server_cert),
        "key_file": str(pki.server_key),
        "client_ca_file": str(pki.ca),
    }
    yield from _gateway(sim, tmp_path_factory.mktemp("mtls"), tls)


def _complete(channel: grpc.Channel) -> pb.CompleteResponse:
    request = pb.CompleteRequest(
        model="chat", messages=[pb.Message(role=pb.ROLE_USER, content="Say hi")], max_tokens=4
    )
    response: pb.CompleteResponse = pb_grpc.GatewayStub(channel).Complete(request, timeout=10)
    return response


def _credentials(
    pki: Pki, cert: Path | None = None, key: Path | None = None
) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=pki.ca.read_bytes(),
        private_key=key.read_bytes() if key else None,
        certificate_chain=cert.read_bytes() if cert else None,
    )


def _refused(channel: grpc.Channel) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as caught:
        _complete(channel)
    code: grpc.StatusCode = caught.value.code()
    return code


def test_a_client_trusting_the_ca_completes_over_tls(tls_gateway: str, pki: Pki) -> None:
    with grpc.secure_channel(tls_gateway, _credentials(pki)) as channel:
        assert _complete(channel).message.content


def test_the_tls_port_is_verified_by_name(tls_gateway: str, pki: Pki) -> None:
    """The certificate names 127.0.0.1 and localhost; a client expecting another host fails."""
    options = [("grpc.ssl_target_name_override", "gateway.example.com")]
    with grpc.secure_channel(tls_gateway, _credentials(pki), options=options) as channel:
        assert _refused(channel) == grpc.StatusCode.UNAVAILABLE


def test_a_plaintext_client_is_refused_by_the_tls_port(tls_gateway: str) -> None:
    with grpc.insecure_channel(tls_gateway) as channel:
        assert _refused(channel) == grpc.StatusCode.UNAVAILABLE


def test_mtls_refuses_a_client_without_a_certificate(mtls_gateway: str, pki: Pki) -> None:
    with grpc.secure_channel(mtls_gateway, _credentials(pki)) as channel:
        assert _refused(channel) == grpc.StatusCode.UNAVAILABLE


def test_mtls_refuses_a_certificate_from_another_ca(mtls_gateway: str, pki: Pki) -> None:
    credentials = _credentials(pki, pki.stranger_cert, pki.stranger_key)
    with grpc.secure_channel(mtls_gateway, credentials) as channel:
        assert _refused(channel) == grpc.StatusCode.UNAVAILABLE


def test_mtls_serves_a_client_with_a_certificate_from_the_ca(mtls_gateway: str, pki: Pki) -> None:
    credentials = _credentials(pki, pki.client_cert, pki.client_key)
    with grpc.secure_channel(mtls_gateway, credentials) as channel:
        assert _complete(channel).message.content
