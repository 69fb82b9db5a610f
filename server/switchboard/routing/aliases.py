"""Aliases: a name for a model group, with sampling defaults, or chosen by difficulty.

An alias is expanded once, at the start of a call, into the request the rest
of the gateway sees: `model` names a group, unset sampling fields take the
alias's defaults, and `alias` remembers what the caller asked for (and how an
`auto` alias decided) for the response, the trace and the accounting. Keys,
caches and limits then deal with groups only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from switchboard.config import AutoAlias, Settings
from switchboard.domain import AliasChoice, AutoChoice, CompletionRequest, Sampling
from switchboard.routing.difficulty import DifficultyClassifier, DifficultySettings


class AliasExpander:
    def __init__(self, settings: Settings) -> None:
        self._plain = settings.aliases
        self._defaults = settings.alias_defaults
        self._auto: Mapping[str, tuple[AutoAlias, DifficultyClassifier]] = {
            name: (auto, DifficultyClassifier(_difficulty_settings(auto)))
            for name, auto in settings.auto_aliases.items()
        }

    def threshold(self, name: str) -> float:
        """The difficulty score from which an auto alias calls a prompt hard."""
        return self._auto[name][1].settings.threshold

    def expand(self, request: CompletionRequest) -> CompletionRequest:
        """The request for the group the alias stands for; anything else unchanged."""
        name = request.model
        if request.alias is not None:
            return request
        group = self._plain.get(name)
        choice: AutoChoice | None = None
        if group is None:
            auto = self._auto.get(name)
            if auto is None:
                return request
            spec, classifier = auto
            difficulty = classifier.classify(request.messages)
            group = spec.hard if difficulty.hard else spec.simple
            choice = AutoChoice(
                tier=difficulty.tier,
                score=difficulty.score,
                reason=difficulty.explain(),
                model_group=group,
            )
        defaults = self._defaults.get(name)
        sampling = request.sampling if defaults is None else _merge(request.sampling, defaults)
        return dataclasses.replace(
            request, model=group, sampling=sampling, alias=AliasChoice(name, choice)
        )


def _difficulty_settings(auto: AutoAlias) -> DifficultySettings:
    if auto.threshold is None:
        return DifficultySettings()
    return dataclasses.replace(DifficultySettings(), threshold=auto.threshold)


def _merge(asked: Sampling, defaults: Sampling) -> Sampling:
    """The caller's fields win; the alias fills only what the caller left unset."""
    return Sampling(
        max_tokens=asked.max_tokens if asked.max_tokens is not None else defaults.max_tokens,
        temperature=asked.temperature if asked.temperature is not None else defaults.temperature,
        top_p=asked.top_p if asked.top_p is not None else defaults.top_p,
        stop=asked.stop or defaults.stop,
        seed=asked.seed if asked.seed is not None else defaults.seed,
        presence_penalty=asked.presence_penalty
        if asked.presence_penalty is not None
        else defaults.presence_penalty,
        frequency_penalty=asked.frequency_penalty
        if asked.frequency_penalty is not None
        else defaults.frequency_penalty,
    )
