"""What replicas tell each other, as compact JSON, and the checks on everything read back.

Two messages travel on the channel, each naming its sender:

    {"v":1,"e":"cool","r":SENDER,"d":DEPLOYMENT,"s":SECONDS_LEFT,"q":QUOTA}
    {"v":1,"e":"lat","r":SENDER,"b":SEQ,"x":[[DEPLOYMENT,"c"|"s",SECONDS,TOKENS|null,AGE_S],...]}

and two things are stored for replicas that join later: a cooldown key's
value ("1" for a quota pause, "0" for failures; its time to live is the time
left) and one stream entry per sample, `[SENDER,SEQ,SECONDS,TOKENS|null,AGE_S]`
(the deployment and kind are in the key's name, the time in the entry id).

Only durations travel: a cooldown's time left, a sample's age when sent.
Monotonic clocks differ between processes, and wall clocks drift apart.

Anyone who can write to Redis can write here, so nothing read is trusted:
the size, the shape, every type and bound is checked, and a deployment this
replica does not serve is ignored (a config being rolled out names new
ones). Decoding never raises; what fails a check comes back as `Rejected`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from switchboard.routing.strategy import CallKind

VERSION = 1
MAX_MESSAGE_BYTES = 64 * 1024
MAX_BATCH = 256  # samples per message
MAX_SENDER_CHARS = 64
MAX_SEQ = 2**63 - 1
# Sanity bounds on what another replica may claim; nothing real comes near them.
MAX_SAMPLE_S = 86_400.0
MAX_AGE_S = 86_400.0
MAX_TOKENS = 10**9

_KINDS = {"c": CallKind.COMPLETE, "s": CallKind.STREAM}
_KIND_CODES = {kind: code for code, kind in _KINDS.items()}
_COOL_KEYS = frozenset(("v", "e", "r", "d", "s", "q"))
_SAMPLES_KEYS = frozenset(("v", "e", "r", "b", "x"))


@dataclass(frozen=True, slots=True)
class Sample:
    deployment_id: str
    kind: CallKind
    seconds: float
    output_tokens: int | None
    # How long before it was sent the call ended.
    age_s: float


@dataclass(frozen=True, slots=True)
class Cooldown:
    sender: str
    deployment_id: str
    seconds: float  # left when sent, capped at the receiver's max_cooldown_s
    quota: bool


@dataclass(frozen=True, slots=True)
class Samples:
    sender: str
    seq: int  # increases with every message a sender publishes
    samples: tuple[Sample, ...]
    unknown: int  # samples left out: deployments this replica does not serve


@dataclass(frozen=True, slots=True)
class StoredSample:
    sender: str
    seq: int
    seconds: float
    output_tokens: int | None
    age_s: float  # when stored


@dataclass(frozen=True, slots=True)
class Rejected:
    reason: str
    # Well formed, but about a deployment this replica does not serve.
    unknown: bool = False


class _Invalid(Exception):
    pass


def encode_cooldown(sender: str, deployment_id: str, seconds: float, quota: bool) -> bytes:
    return _dumps(
        {"v": VERSION, "e": "cool", "r": sender, "d": deployment_id, "s": seconds, "q": quota}
    )


def encode_samples(sender: str, seq: int, samples: Sequence[Sample]) -> bytes:
    rows = [
        [s.deployment_id, _KIND_CODES[s.kind], s.seconds, s.output_tokens, round(s.age_s, 6)]
        for s in samples
    ]
    return _dumps({"v": VERSION, "e": "lat", "r": sender, "b": seq, "x": rows})


def batches(samples: Sequence[Sample]) -> Iterator[Sequence[Sample]]:
    """`samples` in runs that each fit one message; a sample that never fits is left out."""
    for start in range(0, len(samples), MAX_BATCH):
        yield from _fitting(samples[start : start + MAX_BATCH])


def _fitting(samples: Sequence[Sample]) -> Iterator[Sequence[Sample]]:
    # Only absurdly long deployment ids come here more than once.
    if len(encode_samples("x" * MAX_SENDER_CHARS, MAX_SEQ, samples)) <= MAX_MESSAGE_BYTES:
        yield samples
    elif len(samples) > 1:
        half = len(samples) // 2
        yield from _fitting(samples[:half])
        yield from _fitting(samples[half:])


def encode_stored(sender: str, seq: int, sample: Sample) -> bytes:
    return _dumps([sender, seq, sample.seconds, sample.output_tokens, round(sample.age_s, 6)])


def cooldown_value(quota: bool) -> bytes:
    return b"1" if quota else b"0"


class Decoder:
    """Checks what other replicas (or anyone) wrote, against this replica's deployments."""

    def __init__(self, deployments: Collection[str], *, max_cooldown_s: float) -> None:
        if not (math.isfinite(max_cooldown_s) and max_cooldown_s > 0):
            raise ValueError(f"max_cooldown_s must be positive and finite, not {max_cooldown_s!r}")
        self._deployments = frozenset(deployments)
        self._max_cooldown_s = max_cooldown_s

    def message(self, data: object) -> Cooldown | Samples | Rejected:
        """One message from the channel."""
        try:
            body = _loads(data)
            if not isinstance(body, dict):
                _fail("not an object")
            if body.get("v") != VERSION:
                _fail("unknown version")
            kind = body.get("e")
            if kind == "cool":
                return self._cooldown(body)
            if kind == "lat":
                return self._samples(body)
            _fail("unknown event")
        except _Invalid as exc:
            return Rejected(str(exc))

    def stored_sample(self, data: object) -> StoredSample | Rejected:
        """One stream entry's value."""
        try:
            row = _loads(data)
            if not (isinstance(row, list) and len(row) == 5):
                _fail("a stored sample is not a list of 5")
            sender, seq, seconds, tokens, age = row
            return StoredSample(
                _sender(sender),
                _seq(seq),
                _number(seconds, "seconds", MAX_SAMPLE_S),
                _tokens(tokens),
                _number(age, "age", MAX_AGE_S),
            )
        except _Invalid as exc:
            return Rejected(str(exc))

    def stored_cooldown(self, value: object, pttl_ms: object) -> tuple[float, bool] | Rejected:
        """A cooldown key's value and PTTL: (seconds left, quota)."""
        if value == b"1":
            quota = True
        elif value == b"0":
            quota = False
        else:
            return Rejected("a stored cooldown's value is not 0 or 1")
        if isinstance(pttl_ms, bool) or not isinstance(pttl_ms, int) or pttl_ms <= 0:
            # -1: a key that never expires was not written by a replica.
            return Rejected("a stored cooldown has no time to live")
        return (min(pttl_ms / 1000, self._max_cooldown_s), quota)

    def _cooldown(self, body: dict[str, Any]) -> Cooldown | Rejected:
        if body.keys() != _COOL_KEYS:
            _fail("a cooldown's fields are not v, e, r, d, s, q")
        sender = _sender(body["r"])
        deployment_id = body["d"]
        if not isinstance(deployment_id, str):
            _fail("a deployment id is not a string")
        seconds = _number(body["s"], "seconds", math.inf)
        quota = body["q"]
        if not isinstance(quota, bool):
            _fail("quota is not true or false")
        if seconds <= 0:
            _fail("a cooldown of no time")
        if deployment_id not in self._deployments:
            return Rejected("a cooldown of an unknown deployment", unknown=True)
        return Cooldown(sender, deployment_id, min(seconds, self._max_cooldown_s), quota)

    def _samples(self, body: dict[str, Any]) -> Samples:
        if body.keys() != _SAMPLES_KEYS:
            _fail("a batch's fields are not v, e, r, b, x")
        sender, seq, rows = _sender(body["r"]), _seq(body["b"]), body["x"]
        if not isinstance(rows, list) or len(rows) > MAX_BATCH:
            _fail(f"a batch is not a list of at most {MAX_BATCH}")
        samples: list[Sample] = []
        for row in rows:
            if not (isinstance(row, list) and len(row) == 5):
                _fail("a sample is not a list of 5")
            deployment_id, code, seconds, tokens, age = row
            if not isinstance(deployment_id, str):
                _fail("a deployment id is not a string")
            if not isinstance(code, str) or code not in _KINDS:
                _fail("a call kind is not c or s")
            samples.append(
                Sample(
                    deployment_id,
                    _KINDS[code],
                    _number(seconds, "seconds", MAX_SAMPLE_S),
                    _tokens(tokens),
                    _number(age, "age", MAX_AGE_S),
                )
            )
        known = tuple(s for s in samples if s.deployment_id in self._deployments)
        return Samples(sender, seq, known, len(samples) - len(known))


def _dumps(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()


def _loads(data: object) -> Any:
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    if not isinstance(data, bytes | bytearray):
        _fail("not bytes")
    if len(data) > MAX_MESSAGE_BYTES:
        _fail(f"over {MAX_MESSAGE_BYTES} bytes")
    try:
        return json.loads(bytes(data).decode("utf-8"), parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise _Invalid(f"not JSON: {type(exc).__name__}") from None


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a number")


def _fail(reason: str) -> NoReturn:
    raise _Invalid(reason)


def _sender(value: object) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= MAX_SENDER_CHARS:
        _fail(f"a sender is not a string of 1 to {MAX_SENDER_CHARS} characters")
    return value


def _seq(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEQ:
        _fail("a sequence number is not an integer in range")
    return value


def _number(value: object, name: str, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        _fail(f"{name} is not a number")
    try:
        number = float(value)
    except OverflowError:
        _fail(f"{name} is out of range")
    if not (math.isfinite(number) and 0 <= number <= high):
        _fail(f"{name} is not a finite number in range")
    return number


def _tokens(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TOKENS:
        _fail("an output token count is not an integer in range")
    return value
