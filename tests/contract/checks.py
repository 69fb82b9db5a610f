"""How a recorded request is held to its provider's contract (`contracts.py`).

`check_request` compares, in this order, so that a failure names what moved:
the target (method, path as sent, query), the credential headers (which
ones, and their exact values; a SigV4 signature is recomputed with botocore
from the fake keys), every other pinned header (exact, or absent in the modes
that do not pin it), each named fact of the mode (the system prompt, max
tokens, the tool schema, the answer's schema, the image, ...) at its JSON
pointer, and then the whole body, exactly.

`check_structured_answer` holds a JSON_SCHEMA answer's text to the schema
(with jsonschema) and to the facts the provider answered.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from jsonschema import Draft202012Validator

from .capture import Recorded

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .canonical import Mode
    from .contracts import Contract

# Headers that carry a credential: a provider sends exactly the ones its contract names.
CREDENTIAL_HEADERS = ("authorization", "api-key", "x-api-key", "x-goog-api-key")


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


MISSING = _Missing()


def _steps(pointer: str) -> list[str]:
    """An RFC 6901 JSON pointer's reference tokens."""
    if not pointer.startswith("/"):
        raise ValueError(f"not a JSON pointer: {pointer!r}")
    return [s.replace("~1", "/").replace("~0", "~") for s in pointer[1:].split("/")]


def at(document: Any, pointer: str) -> Any:
    """The value at `pointer` in `document`, or MISSING."""
    value = document
    for step in _steps(pointer):
        if isinstance(value, dict) and step in value:
            value = value[step]
        elif isinstance(value, list) and step.isdigit() and int(step) < len(value):
            value = value[int(step)]
        else:
            return MISSING
    return value


def _holder(document: Any, pointer: str) -> tuple[Any, Any, Any]:
    """A copy of `document`, the object or list that holds `pointer`'s value, and its key."""
    out = copy.deepcopy(document)
    *parents, last = _steps(pointer)
    holder = out
    for step in parents:
        holder = holder[int(step)] if isinstance(holder, list) else holder[step]
    return out, holder, int(last) if isinstance(holder, list) else last


def without(document: Any, pointer: str) -> Any:
    """A copy of `document` with the value at `pointer` removed."""
    out, holder, key = _holder(document, pointer)
    del holder[key]
    return out


def replaced(document: Any, pointer: str, value: Any) -> Any:
    """A copy of `document` with `value` at `pointer` instead."""
    out, holder, key = _holder(document, pointer)
    holder[key] = value
    return out


@dataclass(frozen=True)
class SigV4:
    """AWS Signature Version 4 with fake keys: the header's shape, and the signature itself."""

    access_key: str
    secret_key: str
    region: str
    service: str
    signed_headers: tuple[str, ...]

    def _signer(self) -> SigV4Auth:
        return SigV4Auth(Credentials(self.access_key, self.secret_key), self.service, self.region)

    def _aws_request(self, recorded: Recorded) -> AWSRequest:
        query = f"?{urlencode(recorded.query)}" if recorded.query else ""
        request = AWSRequest(
            method=recorded.method,
            url=f"http://{recorded.headers['host']}{recorded.raw_path}{query}",
            data=recorded.raw,
            headers={h: recorded.headers[h] for h in self.signed_headers if h in recorded.headers},
        )
        request.context["timestamp"] = recorded.headers.get("x-amz-date", "")
        return request

    def signature(self, recorded: Recorded) -> str:
        """What the signature of `recorded` must be, computed as AWS would."""
        signer = self._signer()
        request = self._aws_request(recorded)
        canonical = signer.canonical_request(request)
        return str(signer.signature(signer.string_to_sign(request, canonical), request))

    def authorization(self, recorded: Recorded) -> str:
        """The whole Authorization header `recorded` must carry."""
        date = recorded.headers.get("x-amz-date", "")
        return (
            f"AWS4-HMAC-SHA256 Credential={self.access_key}/{date[:8]}/{self.region}/"
            f"{self.service}/aws4_request, SignedHeaders={';'.join(self.signed_headers)}, "
            f"Signature={self.signature(recorded)}"
        )

    def check(self, recorded: Recorded) -> None:
        assert re.fullmatch(r"\d{8}T\d{6}Z", recorded.headers.get("x-amz-date", "")), (
            "x-amz-date is missing or malformed"
        )
        assert recorded.headers.get("authorization") == self.authorization(recorded), (
            "the SigV4 Authorization header (credential scope, signed headers or signature)"
        )


def check_request(contract: Contract, mode: Mode, requests: list[Recorded]) -> None:
    """`requests` is exactly the one request `contract` pins for `mode`."""
    where = f"{contract.name} {mode.value}"
    assert len(requests) == 1, f"{where}: expected one request, the server saw {requests}"
    recorded = requests[0]

    path, _, query = contract.target_for(mode).partition("?")
    assert (recorded.method, recorded.raw_path) == ("POST", path), f"{where}: method and path"
    assert recorded.query == dict(parse_qsl(query)), f"{where}: query string"

    expected_credentials = {h for h in CREDENTIAL_HEADERS if h in contract.headers}
    if contract.sigv4 is not None:
        expected_credentials.add("authorization")
    sent_credentials = {h for h in CREDENTIAL_HEADERS if h in recorded.headers}
    assert sent_credentials == expected_credentials, f"{where}: which headers carry credentials"
    headers = contract.headers_for(mode)
    for name in contract.header_names():
        assert recorded.headers.get(name) == headers.get(name), f"{where}: header {name}"
    if contract.sigv4 is not None:
        contract.sigv4.check(recorded)

    body = contract.body_for(mode)
    for fact, pointer in contract.facts_for(mode).items():
        assert at(recorded.body, pointer) == at(body, pointer), f"{where}: the {fact} at {pointer}"
    assert recorded.body == body, f"{where}: the whole body"


def check_structured_answer(text: str, schema: Mapping[str, Any], answered: Any) -> None:
    """`text` is JSON that conforms to `schema`, and is what the provider `answered`."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise AssertionError(f"the answer is not JSON: {text!r}") from exc
    errors = [e.message for e in Draft202012Validator(dict(schema)).iter_errors(value)]
    assert errors == [], f"the answer does not conform to the schema: {errors}"
    assert value == answered, "the answer is not what the provider answered"


def synthesize(contract: Contract, mode: Mode, body: Any = MISSING) -> Recorded:
    """The request `contract` pins for `mode` (with `body` instead, if given), signed if
    the provider signs: what `check_request` must accept, before a test breaks it."""
    body = contract.body_for(mode) if body is MISSING else body
    path, _, query = contract.target_for(mode).partition("?")
    raw = json.dumps(body).encode()
    headers = {"host": "127.0.0.1:1", **contract.headers_for(mode)}
    recorded = Recorded(
        method="POST",
        path=path,
        raw_path=path,
        query=dict(parse_qsl(query)),
        headers=headers,
        body=body,
        raw=raw,
    )
    if contract.sigv4 is None:
        return recorded
    headers["x-amz-date"] = "20250102T030405Z"
    headers["authorization"] = contract.sigv4.authorization(recorded)
    return recorded
