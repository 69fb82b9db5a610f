"""Faults injected per request: parsed strictly, applied where asked, then routed for real."""

from __future__ import annotations

import dataclasses
import random

import pytest

from switchboard.app import build_gateway
from switchboard.config import parse_settings
from switchboard.domain import CompletionRequest, Message, Outcome, Role
from switchboard.errors import UpstreamTimeout
from switchboard.faults import InjectedFault, parse_fault
from switchboard.gateway import Gateway
from tests.unit.fakes import FakeClock, ScriptedProvider

CONFIG = """
model_list:
  - {model_name: chat, litellm_params: {model: openai/a}, model_info: {id: a}}
  - {model_name: chat, litellm_params: {model: openai/b}, model_info: {id: b}}
router_settings: {routing_strategy: simple-shuffle, num_retries: 1}
"""


def _gateway() -> tuple[Gateway, ScriptedProvider]:
    clock = FakeClock()
    provider = ScriptedProvider(clock)
    gateway = build_gateway(
        parse_settings(CONFIG, source="test", env={}),
        clock=clock,
        rng=random.Random(2),
        provider=provider,
        sleep=clock.sleep,
    )
    return gateway, provider


def test_parse_kind_and_deployment() -> None:
    assert parse_fault("unavailable") == InjectedFault("unavailable")
    assert parse_fault(" rate_limit@a ") == InjectedFault("rate_limit", "a")


def test_an_unknown_kind_names_the_accepted_ones() -> None:
    with pytest.raises(ValueError, match="server_error"):
        parse_fault("meltdown")


@pytest.mark.parametrize("kind", ["rate_limit", "server_error", "unavailable", "timeout"])
async def test_the_first_attempt_fails_as_injected_and_the_other_deployment_answers(
    kind: str,
) -> None:
    gateway, provider = _gateway()
    request = CompletionRequest(
        model="chat", messages=(Message(Role.USER, "hi"),), fault=parse_fault(kind)
    )
    completion = await gateway.complete(request, deadline=None)
    first, second = completion.route.attempts
    assert first.outcome is not Outcome.SUCCESS
    assert second.outcome is Outcome.SUCCESS
    # The injected attempt never reached the provider.
    assert [call[0] for call in provider.calls] == [second.deployment]


async def test_a_fault_pinned_to_a_deployment_fails_every_attempt_there() -> None:
    gateway, provider = _gateway()
    base = CompletionRequest(model="chat", messages=(Message(Role.USER, "hi"),))
    pinned = dataclasses.replace(base, fault=parse_fault("timeout@a"))
    for _ in range(10):
        completion = await gateway.complete(pinned, deadline=None)
        assert completion.route.deployment == "b"
    assert "a" not in {call[0] for call in provider.calls}
    assert isinstance(parse_fault("timeout@a").error("a"), UpstreamTimeout)
