"""Which transport a client gets when the caller does not say: TLS, except on loopback.

A key sent in plaintext across a network is a key given away, so a target
that is not this machine gets TLS with the system's roots unless the caller
asks for plaintext (`insecure=True`, for a trusted network or a sidecar that
terminates TLS). A gateway on loopback (local development, the tests) is
plaintext by default, as the server itself only warns about plaintext off
loopback. The Go and TypeScript clients take TLS unless told otherwise.
"""

from __future__ import annotations

import ipaddress

import grpc

# grpc target schemes that name the host after them (`dns:///host:443`, `ipv4:1.2.3.4:5`).
_SCHEMES = ("dns:///", "dns:", "ipv4:", "ipv6:")


def channel_credentials(
    target: str, credentials: grpc.ChannelCredentials | None, *, insecure: bool
) -> grpc.ChannelCredentials | None:
    """The credentials to open `target` with; None means plaintext."""
    if insecure:
        if credentials is not None:
            raise ValueError("credentials and insecure=True contradict each other")
        return None
    if credentials is not None:
        return credentials
    if is_local(target):
        return None
    return grpc.ssl_channel_credentials()


def is_local(target: str) -> bool:
    """True for a unix socket or a loopback host, however the target is written."""
    if target.startswith(("unix:", "unix-abstract:")):
        return True
    for scheme in _SCHEMES:
        if target.startswith(scheme):
            target = target[len(scheme) :]
            break
    host = target.split(",", 1)[0]
    if host.startswith("["):  # [::1]:50051
        host = host[1 : host.find("]")] if "]" in host else host
    elif host.count(":") == 1:  # host:port
        host = host.rsplit(":", 1)[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
