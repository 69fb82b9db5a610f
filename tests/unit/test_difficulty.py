"""The `auto` alias's difficulty classifier: its features, its bounds, and its accuracy floor.

The labelled set (tests/data/difficulty/prompts.jsonl, described in its
README) is split by a hash of each id into a tune part, which the weights
were fitted on, and a held-out part, which only measures them; the floor
below is asserted on the held-out part, so a change that breaks the
classifier fails here. `bench.auto` reports the same figures in full and
imports this module's loader and split.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from switchboard.domain import Message, Role
from switchboard.routing.difficulty import (
    EXPLAIN_MAX_CHARS,
    Difficulty,
    DifficultyClassifier,
    DifficultySettings,
)

DATASET = Path(__file__).resolve().parents[1] / "data" / "difficulty" / "prompts.jsonl"
LABELS = ("simple", "hard")
SPLITS = ("tune", "heldout")
TUNE_PERCENT = 60

# The acceptance bound is under 10% of hard prompts sent to the cheap group.
MAX_HARD_AS_SIMPLE = 0.10
MIN_SIMPLE_AS_SIMPLE = 0.70


@dataclass(frozen=True, slots=True)
class Prompt:
    id: str
    label: str
    category: str
    prompt: str
    system: str = ""

    @property
    def split(self) -> str:
        return split_of(self.id)

    def messages(self) -> tuple[Message, ...]:
        user = Message(Role.USER, self.prompt)
        return (Message(Role.SYSTEM, self.system), user) if self.system else (user,)


def split_of(prompt_id: str) -> str:
    """Tune or held-out, by a hash of the id: stable, and blind to the prompt and its label."""
    bucket = int(hashlib.sha256(prompt_id.encode()).hexdigest()[:8], 16) % 100
    return "tune" if bucket < TUNE_PERCENT else "heldout"


def load_prompts(path: Path = DATASET) -> list[Prompt]:
    """The labelled set; strict, so a malformed line fails loudly rather than shrinking it."""
    prompts = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        row = json.loads(line)
        unknown = set(row) - {"id", "label", "category", "prompt", "system"}
        if unknown:
            raise ValueError(f"{path.name}:{number}: unknown fields {sorted(unknown)}")
        prompts.append(Prompt(**row))
    return prompts


@pytest.fixture(scope="module")
def classifier() -> DifficultyClassifier:
    return DifficultyClassifier()


@pytest.fixture(scope="module")
def prompts() -> list[Prompt]:
    return load_prompts()


def ask(classifier: DifficultyClassifier, text: str, system: str = "") -> Difficulty:
    messages = [Message(Role.USER, text)]
    if system:
        messages.insert(0, Message(Role.SYSTEM, system))
    return classifier.classify(messages)


# --- the verdicts that define the feature -------------------------------------------


@pytest.mark.parametrize("text", ["hi", "Hello! How are you today?", "thanks so much :)"])
def test_a_greeting_is_simple(classifier: DifficultyClassifier, text: str) -> None:
    difficulty = ask(classifier, text)
    assert not difficulty.hard
    assert difficulty.tier == "simple"


def test_a_greeting_stays_simple_under_an_expert_system_prompt(
    classifier: DifficultyClassifier,
) -> None:
    difficulty = ask(classifier, "Hello!", system="You are an expert tax advisor. Be rigorous.")
    assert not difficulty.hard
    assert "greeting" in difficulty.reasons


def test_a_proof_request_is_hard(classifier: DifficultyClassifier) -> None:
    difficulty = ask(classifier, "Prove there are infinitely many primes of the form 4k+3.")
    assert difficulty.hard
    assert difficulty.tier == "hard"
    assert difficulty.reasons[0] == "proof"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("```python\ndef f(x):\n    return x\n```\nWhat does this do?", "code"),
        ("Compute the integral of x^2 e^x from 0 to 1.", "math"),
        ("Find the eigenvalues of this matrix.", "math"),
        ("Walk me through it step by step and analyse each option.", "multi_step"),
        ("Design a notification system for 50M users.", "design"),
        ("Kafka vs RabbitMQ: what are the trade-offs?", "tradeoffs"),
        ("Write a comprehensive, detailed report on our cloud spend.", "long_output"),
        ("Write a 2000-word essay on the causes of the 2008 crisis.", "size_asked"),
        ("Implement an LRU cache with O(1) get and put.", "code_task"),
        (
            "Traceback (most recent call last):\n  File \"a.py\", line 3\nKeyError: 'x'\nWhy?",
            "debugging",
        ),
        ("Summarise the evidence and the research literature on fasting.", "research"),
        ("Is a non-compete clause in this contract enforceable under GDPR?", "expertise"),
        ("Why did the Roman Republic fall?", "open_ended"),
        (
            "Write a script that must retry each call at most 3 times, handle timeouts, "
            "keep a log, and never block the loop.",
            "constraints",
        ),
    ],
)
def test_each_reason_fires_for_what_it_names(
    classifier: DifficultyClassifier, text: str, reason: str
) -> None:
    difficulty = ask(classifier, text)
    assert reason in difficulty.reasons, difficulty.contributions
    assert difficulty.hard


@pytest.mark.parametrize(
    "text",
    [
        "Translate 'Where is the train station?' into Spanish.",
        "Fix the typos: 'teh meeting is on tusday'",
        "Summarise this in one sentence: the office is closed on Monday for the holiday.",
    ],
)
def test_a_quick_task_is_simple(classifier: DifficultyClassifier, text: str) -> None:
    difficulty = ask(classifier, text)
    assert not difficulty.hard
    assert "quick_task" in difficulty.reasons


def test_a_long_paste_with_a_short_question_is_read_by_its_question(
    classifier: DifficultyClassifier,
) -> None:
    # Words of design and judgement in the material, a lookup in the request.
    material = (
        "The architect said the design of the new park had to weigh the trade-offs between "
        "play areas and gardens, and the council will compare three plans to decide which "
        "strategy to adopt before construction starts in the spring. "
    ) * 4
    difficulty = ask(classifier, f"{material}\n\nWhat time does the park open?")
    assert not difficulty.hard, difficulty.contributions
    assert not {"design", "tradeoffs"} & set(difficulty.reasons)
    # The same words in the request itself count.
    request = ask(classifier, f"{material}\n\nDesign a better plan and compare the trade-offs.")
    assert {"design", "tradeoffs"} <= set(request.reasons)
    assert request.hard


def test_an_expert_system_prompt_counts(classifier: DifficultyClassifier) -> None:
    text = "We are thinking of entering the Brazilian market next year."
    plain = ask(classifier, text)
    expert = ask(classifier, text, system="You are a senior strategy consultant. Be rigorous.")
    assert "expert_system" in expert.reasons
    assert expert.score > plain.score
    assert expert.hard


def test_a_system_prompt_asking_for_brevity_counts_against(
    classifier: DifficultyClassifier,
) -> None:
    brief = ask(classifier, "Do you ship to Canada?", system="Be concise.")
    assert "brief_system" in brief.reasons
    assert not brief.hard


def test_the_last_user_message_is_the_one_classified(classifier: DifficultyClassifier) -> None:
    conversation = [
        Message(Role.USER, "Prove that the halting problem is undecidable."),
        Message(Role.ASSISTANT, "Suppose a decider H exists..."),
        Message(Role.USER, "thanks!"),
    ]
    assert not classifier.classify(conversation).hard


def test_earlier_turns_weigh_lightly(classifier: DifficultyClassifier) -> None:
    follow_up = Message(Role.USER, "And what about the second one?")
    alone = classifier.classify([follow_up])
    turns = [
        Message(Role.USER if index % 2 == 0 else Role.ASSISTANT, f"turn {index}")
        for index in range(10)
    ]
    long = classifier.classify([*turns, follow_up])
    assert "long_conversation" in long.reasons
    assert long.score > alone.score
    code = classifier.classify(
        [Message(Role.ASSISTANT, "```go\nfunc main() {}\n```"), Message(Role.USER, "ok, why?")]
    )
    assert "code_in_context" in code.reasons


def test_no_user_message_is_simple(classifier: DifficultyClassifier) -> None:
    assert classifier.classify([]) == Difficulty(0.0, False, ())
    only_system = classifier.classify([Message(Role.SYSTEM, "You are helpful.")])
    assert not only_system.hard


# --- bounds ------------------------------------------------------------------------------


def test_a_megabyte_prompt_is_read_by_its_ends(classifier: DifficultyClassifier) -> None:
    filler = "The quick brown fox jumps over the lazy dog. " * 23_000  # ~1 MB
    assert len(filler) > 1_000_000
    tail = ask(classifier, f"{filler}\n\nProve that the square root of 2 is irrational.")
    head = ask(classifier, f"Prove that the square root of 2 is irrational.\n\n{filler}")
    for difficulty in (tail, head):
        assert difficulty.hard
        assert "proof" in difficulty.reasons
        assert "long_prompt" in difficulty.reasons
        assert 0.0 <= difficulty.score <= 1.0


def test_many_tiny_messages_classify(classifier: DifficultyClassifier) -> None:
    messages = [Message(Role.ASSISTANT, "x")] * 200_000 + [Message(Role.USER, "hi")]
    difficulty = classifier.classify(messages)
    assert not difficulty.hard
    assert "long_conversation" in difficulty.reasons


_ROLES = st.sampled_from(list(Role))
_TEXT = st.text(
    alphabet=st.sampled_from(list("abcdefgh xyz?!.,'`^{}();:\n\t0123456789")), max_size=600
) | st.sampled_from(
    ["prove", "why", "step by step", "```", "translate", "hi", "2000 words", "trade-offs"]
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(_ROLES, st.lists(_TEXT, max_size=6).map(" ".join)), max_size=6))
def test_any_conversation_gets_a_bounded_explained_verdict(
    turns: list[tuple[Role, str]],
) -> None:
    classifier = DifficultyClassifier()
    messages = [Message(role, text) for role, text in turns]
    difficulty = classifier.classify(messages)
    assert 0.0 <= difficulty.score <= 1.0
    assert difficulty.hard == (difficulty.score >= difficulty.threshold)
    assert len(set(difficulty.reasons)) == len(difficulty.reasons)
    assert difficulty.reasons == tuple(name for name, _ in difficulty.contributions)
    assert len(difficulty.explain()) <= EXPLAIN_MAX_CHARS
    assert classifier.classify(messages) == difficulty  # deterministic


# --- the result and the settings ----------------------------------------------------------


def test_reasons_come_weightiest_first_towards_the_verdict(
    classifier: DifficultyClassifier,
) -> None:
    difficulty = ask(classifier, "Prove it formally, step by step, in a 3000-word essay.")
    amounts = [amount for _, amount in difficulty.contributions]
    assert difficulty.hard
    assert amounts == sorted(amounts, reverse=True)
    simple = ask(classifier, "Translate 'why' into French, in one word.")
    amounts = [amount for _, amount in simple.contributions]
    assert not simple.hard
    assert amounts == sorted(amounts)


def test_explain_is_one_short_line() -> None:
    hard = Difficulty(0.71, True, ("code", "multi_step"), threshold=0.45)
    assert hard.explain() == "hard: score 0.71 >= 0.45 (code, multi_step)"
    simple = Difficulty(0.1, False, (), threshold=0.3)
    assert simple.explain() == "simple: score 0.10 < 0.30 (no features)"
    crowded = Difficulty(0.9, True, tuple(f"feature_number_{i}" for i in range(40)))
    line = crowded.explain()
    assert len(line) <= EXPLAIN_MAX_CHARS
    assert line.endswith("more)")
    assert "\n" not in line


def test_results_and_settings_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        DifficultySettings().threshold = 0.9  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        Difficulty(0.5, True, ()).hard = False  # type: ignore[misc]


def test_the_threshold_decides(classifier: DifficultyClassifier) -> None:
    text = "Why is the sky blue?"
    score = ask(classifier, text).score
    assert 0.0 < score < 1.0
    at = DifficultyClassifier(DifficultySettings(threshold=score))
    above = DifficultyClassifier(DifficultySettings(threshold=min(1.0, score + 0.01)))
    assert at.classify([Message(Role.USER, text)]).hard
    assert not above.classify([Message(Role.USER, text)]).hard


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("threshold", 0.0),
        ("threshold", 1.5),
        ("threshold", float("nan")),
        ("threshold", True),
        ("threshold", "0.3"),
        ("long_prompt_chars", 0),
        ("long_prompt_chars", 1.5),
        ("long_prompt_chars", True),
        ("max_chars_per_message", 100),
        ("long_conversation_messages", 0),
        ("long_conversation_chars", -1),
    ],
)
def test_bad_settings_name_their_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"^{field}: "):
        DifficultySettings(**{field: value})  # type: ignore[arg-type]


# --- the labelled set and the accuracy floor ---------------------------------------------


def test_the_labelled_set_is_whole(prompts: list[Prompt]) -> None:
    assert len(prompts) >= 300
    ids = [p.id for p in prompts]
    assert len(set(ids)) == len(ids)
    assert {p.label for p in prompts} == set(LABELS)
    assert all(p.prompt.strip() and p.category for p in prompts)
    assert len({p.prompt for p in prompts}) == len(prompts)
    simple_share = sum(p.label == "simple" for p in prompts) / len(prompts)
    assert 0.5 <= simple_share <= 0.65


def test_the_split_is_stable_and_near_sixty_forty(prompts: list[Prompt]) -> None:
    assert split_of("s001") == split_of("s001")
    counts = Counter(p.split for p in prompts)
    assert set(counts) == set(SPLITS)
    assert 0.5 <= counts["tune"] / len(prompts) <= 0.7
    # Both labels in both splits, so each split can measure both errors.
    assert {(p.split, p.label) for p in prompts} == {(s, lab) for s in SPLITS for lab in LABELS}


def test_the_held_out_split_meets_the_floor(
    classifier: DifficultyClassifier, prompts: list[Prompt]
) -> None:
    held_out = [p for p in prompts if p.split == "heldout"]
    hard = [p for p in held_out if p.label == "hard"]
    simple = [p for p in held_out if p.label == "simple"]
    hard_as_simple = [p.id for p in hard if not classifier.classify(p.messages()).hard]
    simple_as_simple = [p.id for p in simple if not classifier.classify(p.messages()).hard]
    assert len(hard_as_simple) / len(hard) < MAX_HARD_AS_SIMPLE, hard_as_simple
    assert len(simple_as_simple) / len(simple) >= MIN_SIMPLE_AS_SIMPLE
