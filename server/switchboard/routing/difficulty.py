"""How hard a prompt is, for the `auto` alias: the cheap group for simple, the strong for hard.

The classifier is a weighted checklist rather than a model so that it costs
microseconds, needs nothing loaded, and can say why: every feature that fires
adds (or, for the few unmistakably easy shapes, takes away) a named amount,
the score is their sum clamped to [0, 1], and the verdict lists the names.
A hard prompt sent to the cheap group costs answer quality while a simple one
sent to the strong group only costs money, so the weights lean towards hard:
one clear sign of work (a proof, a design, a trade-off, a stated requirement,
fifteen words of instruction) is enough.

Weights and the threshold were tuned on the tune split of
tests/data/difficulty/prompts.jsonl and checked on its held-out split
(`python -m bench.auto`); the README there has the labelling rubric.

What is read: the last user message above all; the system messages, for
requests of expert or long work; earlier turns only by their number, size
and whether they hold code. Each message is read through a bounded window
(its head and tail), so a megabyte prompt costs what an eight-kilobyte one
does. Vocabulary is matched on words and phrases through set lookups rather
than by regular expressions over the text, whose cost grows with every
pattern times every character; the few regular expressions left run on
short texts only.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from switchboard.domain import Message, Role

HARD = "hard"
SIMPLE = "simple"
DEFAULT_THRESHOLD = 0.3
EXPLAIN_MAX_CHARS = 200

# Where a cue looks. The instruction is the request itself: a long ask's first and
# last lines, where people put it around the material they paste; pasted material
# says little about how hard the request is (a tenancy agreement is full of legal
# words whether the question is "what are my risks" or "what is the landlord's name").
_INSTRUCTION = "instruction"
# The whole ask (through its window): domain vocabulary, code and traces count wherever.
_ASK = "ask"
_SYSTEM = "system"


@dataclass(frozen=True, slots=True)
class _Cue:
    """A named feature that fires on distinct words and phrases of a vocabulary.

    It adds `per_hit` for each distinct word or phrase present, once there are
    `min_hits` of them, up to `cap` in magnitude (negative amounts for signs of
    an easy request). Distinct, not repeated: a word repeated through a pasted
    document must not weigh like several separate requirements. `pairs` are
    (first, second) vocabularies that count one hit when both are present,
    such as a verb of building and a kind of program.
    """

    name: str
    source: str
    per_hit: float
    cap: float
    # Space-separated words.
    words: str = ""
    # Comma-separated phrases, each several words in a row.
    phrases: str = ""
    # Pairs of space-separated vocabularies.
    pairs: tuple[tuple[str, str], ...] = ()
    min_hits: int = 1


# Words are lower case and whole. Punctuation other than ' - + # ^ separates words
# ("c++", "trade-off", "what's" and "x^2" stay whole).
_CUES: tuple[_Cue, ...] = (
    _Cue(
        "proof",
        _INSTRUCTION,
        per_hit=0.7,
        cap=1.0,
        words=(
            "prove proves proof proofs proving rigorous rigorously theorem theorems lemma lemmas "
            "derive derivation undecidable undecidability irrational justify formally"
        ),
        phrases="show that, by induction",
    ),
    _Cue(
        "math",
        _ASK,
        per_hit=0.3,
        cap=0.8,
        words=(
            "sqrt integral integrals integrate derivative derivatives differentiate eigenvalue "
            "eigenvalues eigenvector eigenvectors matrix matrices diagonalise diagonalize "
            "probability probabilities combinatorics combinatorial permutation permutations "
            "lagrange variance equation equations solve solution solutions sequence prime primes "
            "compounded compounding modulo distribution polynomial polynomials fibonacci minimise "
            "minimize maximise maximize nth regression perimeter diagonal hypotenuse "
            "circumference radius triangle rectangle polygon"
        ),
        phrases=(
            "expected number, expected value, how many ways, confidence interval, "
            "standard deviation, system of, closed form"
        ),
    ),
    _Cue(
        "multi_step",
        _INSTRUCTION,
        per_hit=0.3,
        cap=0.9,
        words=(
            "step-by-step analyse analyze analysing analyzing analysis evaluate evaluating assess "
            "assessing diagnose investigate synthesise synthesize reconcile critique estimate "
            "forecast identify implications consequences risks debug debugging troubleshoot "
            "optimal optimally precisely paradox paradoxes dilemma puzzle riddle effects impact "
            "impacts second-order knock-on"
        ),
        phrases=(
            "step by step, show your work, show your working, show the steps, explain each step, "
            "walk me through, walk us through, work out, figure out, what happens, "
            "what would happen, explain why, explain how, root cause, in detail"
        ),
    ),
    _Cue(
        "research",
        _INSTRUCTION,
        per_hit=0.4,
        cap=0.8,
        words=(
            "research literature evidence studies overview meta-analysis theory theories "
            "hypotheses hypothesis"
        ),
        phrases="state of the art, survey of, open problems",
    ),
    _Cue(
        "design",
        _INSTRUCTION,
        per_hit=0.4,
        cap=0.8,
        words=(
            "design designing architect architecture migrate migrating migration plan planning "
            "roadmap strategy outline propose schedule optimise optimize optimising optimizing "
            "optimisation optimization bottleneck bottlenecks scale scalable scaling"
        ),
        phrases="critical path, per second",
    ),
    _Cue(
        "tradeoffs",
        _INSTRUCTION,
        per_hit=0.4,
        cap=0.8,
        words=(
            "trade-off trade-offs tradeoff tradeoffs compare comparing comparison versus vs weigh "
            "consider considering recommend recommendation recommendations"
        ),
        phrases=(
            "pros and cons, which should, which would, or should, best way to, is it worth, "
            "is it better, is it wise, taking into account"
        ),
    ),
    _Cue(
        "open_ended",
        _INSTRUCTION,
        per_hit=0.3,
        cap=0.6,
        words="why",
        phrases=(
            "how should i, how should we, how would you, how would i, how would we, how could, "
            "what would, what should, what could, what's going on, what is going on, "
            "what's going wrong, where do i start, where do we start, what are my options, "
            "what are our options, doing wrong, is it ever"
        ),
    ),
    _Cue(
        "code_task",
        _INSTRUCTION,
        per_hit=0.3,
        cap=0.7,
        words=(
            "implement implementing implementation refactor refactoring thread-safe concurrency "
            "concurrent concurrently complexity algorithm algorithms efficient efficiently greedy "
            "asyncio async idempotent idempotency exactly-once effectively-once at-least-once "
            "backoff"
        ),
        phrases=(
            "race condition, race conditions, data structure, data structures, "
            "dynamic programming, unit test, unit tests, edge case, edge cases, rate limit, "
            "rate limits"
        ),
        pairs=(
            (
                "write build create develop code",
                (
                    "function class script program service module parser library cli api server "
                    "middleware hook component controller operator decorator crawler scraper "
                    "queue cache bot app tool query test tests plugin loop pipeline"
                ),
            ),
        ),
    ),
    _Cue(
        "debugging",
        _ASK,
        per_hit=0.4,
        cap=0.8,
        words=(
            "deadlock deadlocks deadlocked segfault segfaults leak leaks leaking oom ooms flaky "
            "intermittent intermittently sometimes re-renders rerenders 500s 502s 503s 504s 5xx"
        ),
        phrases=(
            "memory leak, out of memory, under load, in production, only happens, "
            "doesn't compile, does not compile, won't compile, compile error, compiler error, "
            "stack trace, segmentation fault, core dumped, exception in thread"
        ),
    ),
    _Cue(
        "long_output",
        _INSTRUCTION,
        per_hit=0.4,
        cap=0.9,
        words=(
            "detailed comprehensive in-depth thorough thoroughly exhaustive extensive full "
            "complete essay report whitepaper proposal chapter novel documentation guide "
            "curriculum playbook runbook specification story itinerary agreement contract"
        ),
        phrases=(
            "in depth, white paper, business plan, pitch deck, blog post, training plan, meal plan"
        ),
    ),
    _Cue(
        "constraints",
        _INSTRUCTION,
        per_hit=0.14,
        cap=0.7,
        min_hits=3,
        words=(
            "must without only avoid ensure handle handles handling support supports supporting "
            "respect respects respecting include includes including keep keeps keeping preserve "
            "preserves preserving can't cannot never retry retries while but each every per "
            "across budget"
        ),
        phrases=(
            "need to, needs to, has to, have to, at most, at least, no more than, not exceed, "
            "no longer than, fail open, fails open, up to"
        ),
    ),
    _Cue(
        "expertise",
        _ASK,
        # A layperson's question rarely uses two of these.
        per_hit=0.2,
        cap=0.8,
        min_hits=2,
        words=(
            # law
            "gdpr clause clauses nda contract contracts liability liabilities indemnity indemnify "
            "indemnification enforceable enforceability statute statutory jurisdiction "
            "jurisdictions lawful unlawful dismissal dismissed tenancy tenant tenants non-compete "
            "copyright copyrighted patent patents compliance compliant regulation regulations "
            "regulatory schrems sccs llc c-corp s-corp qsbs rights "
            # medicine
            "diagnosis diagnoses diagnostic differential patient patients ckd egfr inr tsh t3 t4 "
            "warfarin metformin antibiotic antibiotics allergy allergic fever rash symptom "
            "symptoms dose doses dosage contraindicated contraindication diabetes diabetic "
            "anticoagulate anticoagulation cardiovascular pneumonia therapy therapies clinical "
            "guideline guidelines cytokine "
            # finance
            "dcf wacc ebitda capex opex cogs valuation dilution safe pre-money post-money irr npv "
            "duration convexity bp sharpe sortino hedge hedging options puts collar iso isos nso "
            "nsos amt ifrs gaap mortgage tax taxes amortisation amortization inflation "
            # research and analysis
            "evidence studies literature meta-analysis experiment experiments causal statistical "
            "statistically significant significance retention ltv churn cohort cohorts"
        ),
        phrases=(
            "case law, ip assignment, fair use, prior art, ejection fraction, heart failure, "
            "atrial fibrillation, journal entries, index funds, deferred revenue, central bank, "
            "series a, series b, asc 842"
        ),
    ),
    _Cue(
        "technical",
        _ASK,
        per_hit=0.12,
        cap=0.5,
        min_hits=2,
        words=(
            "python java javascript typescript golang rust c++ sql postgres postgresql mysql "
            "mongodb dynamodb redis kafka rabbitmq sqs kubernetes k8s docker terraform aws gcp "
            "azure react django flask node nginx gunicorn grpc rest http api s3 lambda "
            "microservice microservices database caching cache queue thread threads latency "
            "throughput p99 cluster clusters sharding replica replicas replication indexes schema "
            "endpoint endpoints middleware server servers backend frontend consumer producer "
            "offset offsets memory heap cpu"
        ),
    ),
    _Cue(
        "expert_system",
        _SYSTEM,
        per_hit=0.3,
        cap=0.9,
        words=(
            "expert senior specialist board-certified attorney lawyer counsel consultant cfo "
            "physician doctor cardiologist surgeon professor researcher analyst auditor rigorous "
            "rigorously in-depth thorough thoroughly cite citations structured step-by-step cvss "
            "vulnerability vulnerabilities draft analyse analyze analysis recommendation "
            "recommendations severity risks"
        ),
        phrases="in depth, clinical reasoning, step by step, reason carefully",
    ),
    _Cue(
        "brief_system",
        _SYSTEM,
        per_hit=-0.2,
        cap=0.2,
        words="concise briefly",
        phrases=(
            "keep it short, keep answers short, keep answers brief, be brief, be concise, "
            "one or two sentences, short and friendly"
        ),
    ),
)

# Signs of a debugging request that are not words: traces and error lines, matched on
# the lower-cased ask with its layout kept.
_TRACE_MARKS = (
    "traceback (most recent call last)",
    "error:",
    "exception:",
    "panic:",
    "\n    at ",
    "\n\tat ",
)
_MATH_MARKS = ("^",)  # x^2, 2^31: exponents are written by people doing algebra
_COMPLEXITY_MARKS = (" o(", "(o(")  # O(n log n)

# Asks whose answer is short and whose difficulty does not grow with the text pasted:
# matched on the ends of the instruction only, as a pasted text may say "translate" too.
_QUICK_TASK = (
    r"\b(?:translat\w+|how do (?:you|i) say|in (?:french|spanish|german|italian|japanese"
    r"|korean|dutch|polish|portuguese)|fix (?:the )?(?:typos|spelling|grammar)|proofread"
    r"|tl;?dr|one-line summary|summari[sz]e (?:this |it )?in (?:one|a|1|two|2|three|3|a few)"
    r"|in (?:one|a|1) (?:sentence|line|word)|in a few words|in two sentences"
    r"|one[- ]sentence|one[- ]liner?|one[- ]line|two-line|yes or no|just yes"
    r"|extract|pull out|what(?:'s| is| was)? the (?:[\w']+ ){0,2}(?:date|time|name|total"
    r"|amount|salary range|email|address|url|id|title|(?:order|tracking|phone) number)\b"
    r"|rephrase|reword|paraphrase|make (?:this|it) (?:more |sound |shorter|a bit)"
    r"|more (?:polite|formal|concise|friendly)|friendlier|shorten|convert (?:this|to|into)"
    r"|format (?:this|as)|pretty-print|sort (?:these|this)|title case|uppercase"
    r"|classify|categori[sz]e|positive or negative|sentiment|is this (?:email |a |an )?"
    r"(?:spam|complaint|question)|briefly|keep it short|in short)\b"
)
_QUICK_TASK_PER_HIT = -0.4
_QUICK_TASK_CAP = 0.6
_ENDS_CHARS = 300

# "Should we ...?" opening a question asks for a judgement; "what should I bring" does not.
_SHOULD_OPENINGS = ("should ",)
_SHOULD_INSIDE = (". should ", "? should ", ": should ", "\nshould ")
_SHOULD_AMOUNT = 0.4

# The whole ask is a greeting, thanks or sign-off: nothing to reason about, whatever
# the system prompt asks for.
_GREETING = (
    r"(?:(?:hi|hello|hey|hiya|yo|good (?:morning|afternoon|evening)|thanks?|thank you"
    r"|many thanks|ok|okay|bye|goodbye|cheers|great|cool|nice)\b[\s!.,:)(]*"
    r"(?:there|so much|very much|all|team|again|a lot)?[\s!.,:)(]*)+"
)
_GREETING_AMOUNT = -0.8
_GREETING_MAX_CHARS = 80

# Line shapes of source code, matched line by line on the ask's window with its layout.
_CODE_LINE = (
    r"^[ \t]*(?:def |class |import |from \S+ import|func |fn |let |const |var |public "
    r"|private |#include|return\b|select |insert |update |delete from|create table|@\w+"
    r"|[})\]];?[ \t]*$|.*[;{][ \t]*$|.*\)[ \t]*:[ \t]*$|(?:if|for|while) .*[:{][ \t]*$)"
)
_CODE_FENCE = "```"
_CODE_SOME = 0.3  # a fence or a few code lines: snippets come with easy questions too
_CODE_MANY = 0.6  # a real listing: reading it is part of the work
_CODE_SOME_LINES = 3
_CODE_MANY_LINES = 8

# Output sizes asked for: "a 2000-word essay", "10 slides".
_SIZE_ASKED = r"\b(\d[\d,]*)\+?[- ]?(words?|pages?|slides?|chapters?)\b"
_WORDS_ASKED_FLOOR = 300
_UNITS_ASKED_FLOOR = 3
_SIZE_ASKED_AMOUNT = 0.7

# The instruction's length in words (quoted material aside): hard requests take more
# words to state. The quotes are only looked for in instructions short enough to matter.
_WORDY: tuple[tuple[int, float], ...] = ((25, 0.4), (15, 0.3))
_QUOTED = r"(?:^|(?<=[\s:(]))(?:'[^']{6,}?'|\"[^\"]{6,}?\"|“[^”]{6,}?”|`[^`]+`)(?=[\s.,;:!?)]|$)"
_QUOTED_MAX_WORDS = 80
# A short problem stated with numbers and a verb of solving: "a rectangle has perimeter 46
# and diagonal 17; find its area". Bare arithmetic ("calculate 8.5 + 3.75") is shorter.
_SOLVE_VERBS = frozenset(("find", "determine", "calculate", "compute"))
_PROBLEM_WORDS = (8, 80)
_PROBLEM_NUMBERS = 2
_PROBLEM_AMOUNT = 0.3
# Several questions in one instruction.
_QUESTIONS_SOME = 2
_QUESTIONS_AMOUNT = 0.2

# From this size an ask may be material with a request around it; a line this long is
# material rather than request; without short ends, the instruction is the ask's head
# and tail up to this size.
_SPLIT_CHARS = 400
_LINE_CHARS = 400
_INSTRUCTION_CHARS = 4096

# Long asks: more to read and usually more to do, but pasted text makes length a weak sign.
_LONG_PROMPT = 0.2
_VERY_LONG_PROMPT = 0.4
_VERY_LONG_FACTOR = 4

# Messages looked at, so that a request of many tiny messages costs no more than a few:
# the user message answered is among the last ones, system prompts among the first.
_SCAN_MESSAGES = 64
_SYSTEM_MESSAGES = 4

# Earlier turns: a long conversation carries context the answer must honour.
_LONG_CONVERSATION = 0.2
_CODE_IN_CONTEXT = 0.2
_CONTEXT_MESSAGES = 4

# Punctuation that separates words; ' - + # ^ stay inside them, and a typographic
# apostrophe is read as a plain one.
_SEPARATORS = str.maketrans(
    {
        **dict.fromkeys('!"$%&()*,./:;<=>?@[\\]_`{|}~\t\n\r\f\v\u201c\u201d\u2018', " "),
        "\u2019": "'",
    }
)

_Add = Callable[[str, float], None]


@dataclass(frozen=True, slots=True)
class DifficultySettings:
    """The classifier's tunables; the defaults are the tuned values."""

    # A score from here up is hard.
    threshold: float = DEFAULT_THRESHOLD
    # An ask this long (in characters) adds `long_prompt`; four times as long adds more.
    long_prompt_chars: int = 1500
    # Characters read from each message: a quarter from its head, the rest from its
    # tail, where the question usually is.
    max_chars_per_message: int = 8192
    # Earlier messages (or characters in them) from which the conversation counts as long.
    long_conversation_messages: int = 8
    long_conversation_chars: int = 12_000

    def __post_init__(self) -> None:
        threshold = self.threshold
        if (
            isinstance(threshold, bool)
            or not isinstance(threshold, int | float)
            or not (math.isfinite(threshold) and 0.0 < threshold <= 1.0)
        ):
            raise ValueError(f"threshold: expected a number in (0, 1], got {threshold!r}")
        _check_int("long_prompt_chars", self.long_prompt_chars, floor=1)
        _check_int("max_chars_per_message", self.max_chars_per_message, floor=1024)
        _check_int("long_conversation_messages", self.long_conversation_messages, floor=1)
        _check_int("long_conversation_chars", self.long_conversation_chars, floor=1)


def _check_int(name: str, value: object, floor: int) -> None:
    # bool is an int to Python, never a size to a config.
    if isinstance(value, bool) or not isinstance(value, int) or value < floor:
        raise ValueError(f"{name}: expected an integer >= {floor}, got {value!r}")


@dataclass(frozen=True, slots=True)
class Difficulty:
    """The verdict, with the named amounts that made it."""

    score: float
    hard: bool
    # Names of the features that fired, the weightiest towards the verdict first.
    reasons: tuple[str, ...]
    threshold: float = DEFAULT_THRESHOLD
    # (name, amount) for each feature that fired, in the order of `reasons`.
    contributions: tuple[tuple[str, float], ...] = ()

    @property
    def tier(self) -> str:
        return HARD if self.hard else SIMPLE

    def explain(self) -> str:
        """One line for a span attribute or a response field, at most 200 characters."""
        comparison = ">=" if self.hard else "<"
        head = f"{self.tier}: score {self.score:.2f} {comparison} {self.threshold:.2f}"
        if not self.reasons:
            return f"{head} (no features)"
        shown: list[str] = []
        for index, reason in enumerate(self.reasons):
            rest = len(self.reasons) - index - 1
            more = f", +{rest} more" if rest else ""
            if len(f"{head} ({', '.join([*shown, reason])}{more})") > EXPLAIN_MAX_CHARS:
                break
            shown.append(reason)
        hidden = len(self.reasons) - len(shown)
        more = (", " if shown else "") + f"+{hidden} more" if hidden else ""
        return f"{head} ({', '.join(shown)}{more})"[:EXPLAIN_MAX_CHARS]


@dataclass(frozen=True, slots=True)
class _Lexicon:
    """A cue's vocabulary in the shapes the lookups want."""

    cue: _Cue
    words: frozenset[str]
    # (phrase padded with spaces, its words): looked for only when all its words occur.
    phrases: tuple[tuple[str, frozenset[str]], ...]
    pairs: tuple[tuple[frozenset[str], frozenset[str]], ...]


@dataclass(frozen=True, slots=True)
class _Text:
    """One text, normalised once: its words as a set, and as one spaced string."""

    words: frozenset[str]
    spaced: str

    @classmethod
    def of(cls, text: str) -> _Text:
        words = text.lower().translate(_SEPARATORS).replace(" '", " ").replace("' ", " ").split()
        return cls(frozenset(words), f" {' '.join(words)} ")


_EMPTY = _Text(frozenset(), " ")


class DifficultyClassifier:
    """Scores a conversation's difficulty; pure CPU, no I/O, the same answer every time."""

    def __init__(self, settings: DifficultySettings = DifficultySettings()) -> None:
        self._settings = settings
        self._lexicons = tuple(_lexicon(cue) for cue in _CUES)
        self._quick_task = re.compile(_QUICK_TASK)
        self._greeting = re.compile(_GREETING)
        self._code_line = re.compile(_CODE_LINE, re.MULTILINE | re.IGNORECASE)
        self._size_asked = re.compile(_SIZE_ASKED)
        self._quoted = re.compile(_QUOTED)

    @property
    def settings(self) -> DifficultySettings:
        return self._settings

    def classify(self, messages: Sequence[Message]) -> Difficulty:
        settings = self._settings
        last_user = _last_user(messages)
        ask = self._window(messages[last_user].content) if last_user is not None else ""
        instruction = _instruction(ask) if len(ask) >= _SPLIT_CHARS else ask
        system = " ".join(
            self._window(m.content)
            for m in messages[:_SYSTEM_MESSAGES]
            if m.role is Role.SYSTEM and m.content
        )
        ask_text = _Text.of(ask) if ask else _EMPTY
        texts = {
            _ASK: ask_text,
            _INSTRUCTION: _Text.of(instruction) if instruction is not ask else ask_text,
            _SYSTEM: _Text.of(system) if system else _EMPTY,
        }
        amounts: dict[str, float] = {}

        def add(name: str, amount: float) -> None:
            amounts[name] = amounts.get(name, 0.0) + amount

        lowered_ask = ask.lower().replace("\u2019", "'")
        lowered = (
            instruction.lower().replace("\u2019", "'") if instruction is not ask else lowered_ask
        )
        extra_hits = {
            "debugging": _count_in(lowered_ask, _TRACE_MARKS),
            "math": _count_in(lowered_ask, _MATH_MARKS),
            "code_task": min(1, _count_in(f" {lowered}", _COMPLEXITY_MARKS)),
        }
        for lexicon in self._lexicons:
            cue = lexicon.cue
            hits = _hits(lexicon, texts[cue.source]) + extra_hits.get(cue.name, 0)
            if hits >= cue.min_hits and hits:
                add(cue.name, math.copysign(min(abs(cue.per_hit) * hits, cue.cap), cue.per_hit))
        if lowered.startswith(_SHOULD_OPENINGS) or _count_in(lowered, _SHOULD_INSIDE):
            add("tradeoffs", _SHOULD_AMOUNT)

        ends = lowered if len(lowered) <= 2 * _ENDS_CHARS else _ends(lowered)
        self._instruction_shape(ask, texts[_INSTRUCTION], lowered, ends, add)
        self._code(ask, add)
        self._size(messages, last_user, add)

        # Rounded before the comparison, so the verdict agrees with the score reported.
        score = round(min(1.0, max(0.0, sum(amounts.values()))), 4)
        hard = score >= settings.threshold
        # Towards the verdict first: the biggest push up for hard, down for simple.
        ranked = sorted(amounts.items(), key=lambda item: -item[1] if hard else item[1])
        return Difficulty(
            score=score,
            hard=hard,
            reasons=tuple(name for name, _ in ranked),
            threshold=settings.threshold,
            contributions=tuple((name, round(amount, 4)) for name, amount in ranked),
        )

    def _window(self, text: str) -> str:
        """The text a feature may read: all of it, or its head and its tail."""
        limit = self._settings.max_chars_per_message
        if len(text) <= limit:
            return text
        head = limit // 4
        return f"{text[:head]}\n{text[len(text) - (limit - head) :]}"

    def _instruction_shape(
        self, ask: str, instruction: _Text, lowered: str, ends: str, add: _Add
    ) -> None:
        """What the request's own wording says: quick asks, size asked, words, questions."""
        if len(ask) <= _GREETING_MAX_CHARS and self._greeting.fullmatch(ask.strip().lower()):
            add("greeting", _GREETING_AMOUNT)
        quick = len(set(self._quick_task.findall(ends)))
        if quick:
            add("quick_task", max(_QUICK_TASK_PER_HIT * quick, -_QUICK_TASK_CAP))
        for number, unit in self._size_asked.findall(ends):
            floor = _WORDS_ASKED_FLOOR if unit.startswith("word") else _UNITS_ASKED_FLOOR
            if int(number.replace(",", "")) >= floor:
                add("size_asked", _SIZE_ASKED_AMOUNT)
                break
        words = lowered.count(" ") + lowered.count("\n") + 1 if lowered else 0
        if words <= _QUOTED_MAX_WORDS:
            words = len(self._quoted.sub(" ", lowered).split())
        for floor, amount in _WORDY:
            if words >= floor:
                add("wordy", amount)
                break
        if _PROBLEM_WORDS[0] <= words <= _PROBLEM_WORDS[1] and not instruction.words.isdisjoint(
            _SOLVE_VERBS
        ):
            numbers = sum(1 for word in instruction.words if word[0].isdigit())
            if numbers >= _PROBLEM_NUMBERS:
                add("word_problem", _PROBLEM_AMOUNT)
        if lowered.count("?") >= _QUESTIONS_SOME:
            add("several_questions", _QUESTIONS_AMOUNT)

    def _code(self, ask: str, add: _Add) -> None:
        if not ask:
            return
        lines = len(self._code_line.findall(ask))
        if lines >= _CODE_MANY_LINES:
            add("code", _CODE_MANY)
        elif lines >= _CODE_SOME_LINES or _CODE_FENCE in ask:
            add("code", _CODE_SOME)

    def _size(self, messages: Sequence[Message], last_user: int | None, add: _Add) -> None:
        settings = self._settings
        if last_user is not None:
            length = len(messages[last_user].content)
            if length >= settings.long_prompt_chars * _VERY_LONG_FACTOR:
                add("long_prompt", _VERY_LONG_PROMPT)
            elif length >= settings.long_prompt_chars:
                add("long_prompt", _LONG_PROMPT)
        # The turns before the ask, newest first, as many as can decide "long".
        end = last_user if last_user is not None else len(messages)
        start = max(0, end - settings.long_conversation_messages)
        earlier = [m for m in messages[start:end] if m.role is not Role.SYSTEM]
        if end >= settings.long_conversation_messages or (
            sum(len(m.content) for m in earlier) >= settings.long_conversation_chars
        ):
            add("long_conversation", _LONG_CONVERSATION)
        if any(_CODE_FENCE in self._window(m.content) for m in earlier[-_CONTEXT_MESSAGES:]):
            add("code_in_context", _CODE_IN_CONTEXT)


def _lexicon(cue: _Cue) -> _Lexicon:
    return _Lexicon(
        cue=cue,
        words=frozenset(cue.words.split()),
        phrases=tuple(
            (f" {phrase} ", frozenset(phrase.split()))
            for phrase in (p.strip() for p in cue.phrases.split(","))
            if phrase
        ),
        pairs=tuple((frozenset(a.split()), frozenset(b.split())) for a, b in cue.pairs),
    )


def _hits(lexicon: _Lexicon, text: _Text) -> int:
    """Distinct words, phrases and pairs of `lexicon` present in `text`."""
    words = text.words
    if not words:
        return 0
    hits = len(lexicon.words & words)
    for spaced, needed in lexicon.phrases:
        if needed <= words and spaced in text.spaced:
            hits += 1
    for first, second in lexicon.pairs:
        if not first.isdisjoint(words) and not second.isdisjoint(words):
            hits += 1
    return hits


def _count_in(text: str, marks: tuple[str, ...]) -> int:
    return sum(1 for mark in marks if mark in text)


def _ends(text: str) -> str:
    return f"{text[:_ENDS_CHARS]}\n{text[-_ENDS_CHARS:]}"


def _instruction(ask: str) -> str:
    """The request around pasted material: a long ask's short first and last lines.

    Without short ends (one long paragraph), the whole ask up to a bound: its
    head and its tail.
    """
    text = ask.strip()
    first_end = text.find("\n")
    if first_end >= 0:
        last_start = text.rfind("\n") + 1
        ends = [line for line in (text[:first_end], text[last_start:]) if len(line) <= _LINE_CHARS]
        if ends:
            return "\n".join(ends)
    if len(text) <= _INSTRUCTION_CHARS:
        return text
    head = _INSTRUCTION_CHARS // 4
    return f"{text[:head]}\n{text[len(text) - (_INSTRUCTION_CHARS - head) :]}"


def _last_user(messages: Sequence[Message]) -> int | None:
    """The newest user message among the last few: the one being answered."""
    for index in range(len(messages) - 1, max(-1, len(messages) - 1 - _SCAN_MESSAGES), -1):
        if messages[index].role is Role.USER:
            return index
    return None
