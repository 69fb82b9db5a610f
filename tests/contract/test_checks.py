"""The contract checks can fail: every named fact moved or changed, every other mode's
request, every credential dropped, added or forged, every mode's header dropped or
sent in another mode, and every structured answer that is not the one the schema
and the provider allow are caught.

The checks run on requests synthesized from the contracts (no server): the
pinned request passes, and each way of breaking it fails, naming what broke.
"""

from __future__ import annotations

import base64
import dataclasses
import itertools
import json
import re

import pytest

from .canonical import ANSWER_SCHEMA, IMAGE_PNG, JSON_ANSWER, Mode
from .checks import (
    CREDENTIAL_HEADERS,
    MISSING,
    at,
    check_request,
    check_structured_answer,
    replaced,
    synthesize,
    without,
)
from .contracts import CONTRACTS, Contract


def _id(value: object) -> str:
    if isinstance(value, Contract):
        return value.name
    if isinstance(value, Mode):
        return value.value
    return str(value).replace(" ", "_")


@pytest.mark.parametrize(("contract", "mode"), list(itertools.product(CONTRACTS, Mode)), ids=_id)
def test_the_pinned_request_passes(contract: Contract, mode: Mode) -> None:
    check_request(contract, mode, [synthesize(contract, mode)])


FACTS = [
    (contract, mode, fact)
    for contract in CONTRACTS
    for mode in Mode
    for fact in contract.facts_for(mode)
]


@pytest.mark.parametrize(("contract", "mode", "fact"), FACTS, ids=_id)
def test_a_fact_missing_from_its_place_fails(contract: Contract, mode: Mode, fact: str) -> None:
    pointer = contract.facts_for(mode)[fact]
    moved = without(contract.body_for(mode), pointer)
    with pytest.raises(AssertionError, match=re.escape(f"the {fact} at {pointer}")):
        check_request(contract, mode, [synthesize(contract, mode, moved)])


@pytest.mark.parametrize(("contract", "mode", "fact"), FACTS, ids=_id)
def test_a_fact_changed_in_its_place_fails(contract: Contract, mode: Mode, fact: str) -> None:
    """A schema that lost a keyword, an image in another encoding, another prompt."""
    pointer = contract.facts_for(mode)[fact]
    changed = replaced(contract.body_for(mode), pointer, {"changed": True})
    with pytest.raises(AssertionError, match=re.escape(f"the {fact} at {pointer}")):
        check_request(contract, mode, [synthesize(contract, mode, changed)])


def test_every_contract_names_where_the_system_prompt_and_max_tokens_go() -> None:
    for contract in CONTRACTS:
        for mode in Mode:
            body = contract.body_for(mode)
            assert at(body, contract.where["system prompt"]) is not MISSING, contract.name
            assert at(body, contract.where["max tokens"]) is not MISSING, contract.name
            for fact, pointer in contract.mode_where.get(mode, {}).items():
                assert at(body, pointer) is not MISSING, f"{contract.name} {mode.value} {fact}"
        tools = contract.body_for(Mode.TOOLS)
        assert at(tools, contract.where["tool schema"]) is not MISSING, contract.name
        assert "answer schema" in contract.facts_for(Mode.JSON_SCHEMA), contract.name
        assert {"image", "image prompt"} <= contract.facts_for(Mode.IMAGE).keys(), contract.name


@pytest.mark.parametrize("contract", CONTRACTS, ids=_id)
def test_the_answer_schema_reaches_every_provider_whole(contract: Contract) -> None:
    """No keyword of the schema is dropped on the way (its name and `strict` may be)."""
    pointer = contract.facts_for(Mode.JSON_SCHEMA)["answer schema"]
    assert at(contract.body_for(Mode.JSON_SCHEMA), pointer) == ANSWER_SCHEMA


@pytest.mark.parametrize("contract", CONTRACTS, ids=_id)
def test_the_image_reaches_every_provider_as_its_bytes(contract: Contract) -> None:
    """The pinned image part carries the canonical PNG, base64-encoded, and nothing else."""
    image = json.dumps(at(contract.body_for(Mode.IMAGE), contract.facts_for(Mode.IMAGE)["image"]))
    encoded = re.findall(r"[A-Za-z0-9+/]{40,}={0,2}", image)
    assert [base64.b64decode(e) for e in encoded] == [IMAGE_PNG]


@pytest.mark.parametrize(
    ("contract", "mode", "other"),
    [(c, m, o) for c in CONTRACTS for m in Mode for o in Mode if m is not o],
    ids=_id,
)
def test_another_modes_request_fails(contract: Contract, mode: Mode, other: Mode) -> None:
    """A stream request without its stream flag or endpoint, a tools request without its tools."""
    with pytest.raises(AssertionError):
        check_request(contract, mode, [synthesize(contract, other)])


def test_more_than_one_request_fails() -> None:
    contract = CONTRACTS[0]
    once = synthesize(contract, Mode.PLAIN)
    with pytest.raises(AssertionError, match="expected one request"):
        check_request(contract, Mode.PLAIN, [once, once])


MODE_HEADERS = [
    (contract, mode, header)
    for contract in CONTRACTS
    for mode, headers in contract.mode_headers.items()
    for header in headers
]


@pytest.mark.parametrize(("contract", "mode", "header"), MODE_HEADERS, ids=_id)
def test_a_modes_header_dropped_or_sent_in_another_mode_fails(
    contract: Contract, mode: Mode, header: str
) -> None:
    pinned = synthesize(contract, mode)
    dropped = {k: v for k, v in pinned.headers.items() if k != header}
    with pytest.raises(AssertionError, match=f"header {header}"):
        check_request(contract, mode, [dataclasses.replace(pinned, headers=dropped)])
    for other in Mode:
        if header in contract.mode_headers.get(other, {}):
            continue
        sent = synthesize(contract, other)
        added = {**sent.headers, header: pinned.headers[header]}
        with pytest.raises(AssertionError, match=f"header {header}"):
            check_request(contract, other, [dataclasses.replace(sent, headers=added)])


def test_the_structured_answer_passes() -> None:
    check_structured_answer(json.dumps(JSON_ANSWER), ANSWER_SCHEMA, JSON_ANSWER)


@pytest.mark.parametrize(
    ("text", "broken"),
    [
        ("Sunny in Paris.", "not JSON"),
        (json.dumps({"city": "Paris", "conditions": "sunny"}), "conform"),  # one missing
        (json.dumps({**JSON_ANSWER, "windy": "no"}), "conform"),  # a wrong type
        (json.dumps({**JSON_ANSWER, "conditions": "foggy"}), "conform"),  # not in the enum
        (json.dumps({**JSON_ANSWER, "humidity": 40}), "conform"),  # not allowed
        (json.dumps([JSON_ANSWER]), "conform"),  # not an object
        (json.dumps({**JSON_ANSWER, "city": "Lyon"}), "not what the provider answered"),
    ],
    ids=["text", "missing", "type", "enum", "extra", "array", "another"],
)
def test_a_structured_answer_that_is_not_the_answer_fails(text: str, broken: str) -> None:
    with pytest.raises(AssertionError, match=broken):
        check_structured_answer(text, ANSWER_SCHEMA, JSON_ANSWER)


@pytest.mark.parametrize("contract", CONTRACTS, ids=_id)
def test_a_credential_header_dropped_or_added_fails(contract: Contract) -> None:
    pinned = synthesize(contract, Mode.PLAIN)
    for header in CREDENTIAL_HEADERS:
        if header in pinned.headers:
            headers = {k: v for k, v in pinned.headers.items() if k != header}
        else:
            headers = {**pinned.headers, header: "Bearer stray"}
        changed = dataclasses.replace(pinned, headers=headers)
        with pytest.raises(AssertionError, match="credential"):
            check_request(contract, Mode.PLAIN, [changed])


@pytest.mark.parametrize("contract", [c for c in CONTRACTS if c.sigv4], ids=_id)
def test_a_forged_signature_fails(contract: Contract) -> None:
    pinned = synthesize(contract, Mode.PLAIN)
    assert contract.sigv4 is not None
    for changed in (
        # Signed for another body, region or key.
        dataclasses.replace(pinned, raw=pinned.raw + b" "),
        dataclasses.replace(
            pinned,
            headers={
                **pinned.headers,
                "authorization": dataclasses.replace(
                    contract.sigv4, region="us-east-1"
                ).authorization(pinned),
            },
        ),
        dataclasses.replace(
            pinned,
            headers={
                **pinned.headers,
                "authorization": dataclasses.replace(
                    contract.sigv4, secret_key="another"
                ).authorization(pinned),
            },
        ),
    ):
        with pytest.raises(AssertionError, match="SigV4"):
            check_request(contract, Mode.PLAIN, [changed])
