"""The contract checks can fail: every named fact moved, every other mode's request,
every credential dropped, added or forged is caught.

The checks run on requests synthesized from the contracts (no server): the
pinned request passes, and each way of breaking it fails, naming what broke.
"""

from __future__ import annotations

import dataclasses
import itertools
import re

import pytest

from .canonical import Mode
from .checks import CREDENTIAL_HEADERS, MISSING, at, check_request, synthesize, without
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
    for fact, pointer in contract.where.items()
    if at(contract.body_for(mode), pointer) is not MISSING
]


@pytest.mark.parametrize(("contract", "mode", "fact"), FACTS, ids=_id)
def test_a_fact_missing_from_its_place_fails(contract: Contract, mode: Mode, fact: str) -> None:
    pointer = contract.where[fact]
    moved = without(contract.body_for(mode), pointer)
    with pytest.raises(AssertionError, match=re.escape(f"the {fact} at {pointer}")):
        check_request(contract, mode, [synthesize(contract, mode, moved)])


def test_every_contract_names_where_the_system_prompt_and_max_tokens_go() -> None:
    for contract in CONTRACTS:
        for mode in Mode:
            body = contract.body_for(mode)
            assert at(body, contract.where["system prompt"]) is not MISSING, contract.name
            assert at(body, contract.where["max tokens"]) is not MISSING, contract.name
        tools = contract.body_for(Mode.TOOLS)
        assert at(tools, contract.where["tool schema"]) is not MISSING, contract.name


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
