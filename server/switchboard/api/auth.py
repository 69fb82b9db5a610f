"""Caller keys: who may call the gateway, and which models each caller may use.

A caller sends `authorization: Bearer <key>`. The config holds only each
key's SHA-256, so neither the file nor this process's memory of it holds a
key in clear. The presented key is hashed once and its digest compared with
every configured digest through `hmac.compare_digest`, without stopping at
the first match, so the time taken says nothing about which key (or how
much of one) matched. The key itself is never put in a message, a log line
or an error; the key's configured name is, because it is not a secret.

With no keys configured the gateway is open: `authenticate` returns None
and `authorize` admits every model.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable, Sequence

from switchboard.config import CallerKey, Settings
from switchboard.domain import Caller
from switchboard.errors import NotAdmin, PermissionDenied, Unauthenticated
from switchboard.limits.admission import caller_key

HEADER = "authorization"
SCHEME = "bearer"

Metadata = Iterable[tuple[str, str | bytes]]


class Authenticator:
    """Turns request metadata into a `Caller` and checks the models it may use."""

    def __init__(
        self, keys: Sequence[CallerKey], targets: Callable[[str], tuple[str, ...]]
    ) -> None:
        """`targets`: the model groups a model name may reach (an auto alias reaches two)."""
        self._keys = tuple(keys)
        self._digests = tuple(bytes.fromhex(k.sha256) for k in self._keys)
        self._by_name = {k.name: k for k in self._keys}
        self._targets = targets
        self._callers = {
            k.name: Caller(
                name=k.name,
                limit_key=caller_key(k.name) if k.rpm or k.tpm else None,
                metadata=k.metadata,
                groups=k.groups,
                admin=k.admin,
            )
            for k in self._keys
        }

    @classmethod
    def from_settings(cls, settings: Settings) -> Authenticator:
        return cls(settings.keys, settings.targets)

    @property
    def enabled(self) -> bool:
        """False when no keys are configured: every caller is admitted."""
        return bool(self._keys)

    def authenticate(self, metadata: Metadata | None) -> Caller | None:
        """The caller whose key the metadata carries; None when no keys are configured.

        Raises Unauthenticated when the header is missing, malformed or names
        no configured key; the message never repeats what was sent.
        """
        if not self._keys:
            return None
        values = [v for k, v in metadata or () if k.lower() == HEADER]
        if not values:
            raise Unauthenticated("missing caller key: send metadata `authorization: Bearer <key>`")
        if len(values) > 1:
            raise Unauthenticated("several `authorization` metadata entries; send one")
        presented = _bearer(values[0])
        digest = hashlib.sha256(presented.encode("utf-8")).digest()
        found: CallerKey | None = None
        # Every digest is compared, whatever matched earlier: no early exit.
        for key, expected in zip(self._keys, self._digests, strict=True):
            if hmac.compare_digest(digest, expected):
                found = key
        if found is None:
            raise Unauthenticated("unknown caller key")
        return self._callers[found.name]

    def authorize(self, caller: Caller | None, model: str) -> None:
        """Raise PermissionDenied unless the caller may use `model` (a group or an alias).

        A model is compared by the groups it may reach, so allowing a group
        allows its aliases and allowing an alias allows its group; an auto
        alias needs both of its groups. A key
        limited to some models is refused any other name, known or not, so
        a restricted caller learns nothing about models it may not use.
        """
        if caller is None:
            return
        key = self._by_name[caller.name]
        if key.groups is None:
            return
        groups = self._targets(model)
        if not groups or not key.groups.issuperset(groups):
            raise PermissionDenied(model, key_name=key.name, allowed=key.models)

    def require_admin(self, caller: Caller | None, rpc: str) -> None:
        """Operators' RPCs: open when no keys are configured, else for admin keys only."""
        if caller is not None and not caller.admin:
            raise NotAdmin(rpc, key_name=caller.name)

    def allows_group(self, caller: Caller | None, group: str) -> bool:
        """Whether ListModels shows `group` to this caller."""
        if caller is None:
            return True
        allowed = self._by_name[caller.name].groups
        return allowed is None or group in allowed


def _bearer(value: str | bytes) -> str:
    """The key from `Bearer <key>`; Unauthenticated, without echoing it, otherwise."""
    parts = value.split() if isinstance(value, str) else []
    if len(parts) != 2 or parts[0].lower() != SCHEME:
        raise Unauthenticated("malformed `authorization` metadata: expected `Bearer <key>`")
    return parts[1]
