"""The Redis layout of the ledger, and the reading of it back.

Keys (`P` is the prefix):

    P stats:<period>:<id>   hash per period, e.g. `P stats:day:2026-12-03`, `P stats:total:all`
    P budget:<window id>    hash per budget window, e.g. `P budget:86400s:20425`

Fields name an entity as `<dimension>:<length>:<name>`, the length being
the name's in characters, so no character of a name (not even `:`) can
make two entities share a field. A stats field appends `:<metric>`:
`requests`, `input_tokens`, `output_tokens`, `spend_usd`, `saved_usd`,
`cache_hits`, `errors:<kind>` or `latency:<bucket>` (`histogram.py`); an
error kind is the field's whole tail, so it needs no escaping either.
Budget fields are the entity alone, valued in USD.

Every value is a sum (HINCRBY, HINCRBYFLOAT), so processes merge by adding.
What cannot be read back (a field of another layout, a value that is not
a number) is skipped.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from switchboard.accounting.periods import Period
from switchboard.accounting.records import Dimension
from switchboard.accounting.tally import Counters, Entity, Tally

MAX_NAME = 512

_ERRORS = "errors:"
_LATENCY = "latency:"


def stats_key(prefix: str, period: Period, period_id: str) -> str:
    return f"{prefix}stats:{period.value}:{period_id}"


def budget_key(prefix: str, window_id: str) -> str:
    return f"{prefix}budget:{window_id}"


def entity_field(entity: Entity) -> str:
    dimension, name = entity
    name = clean(name)
    return f"{dimension.value}:{len(name)}:{name}"


def clean(text: str, limit: int = MAX_NAME) -> str:
    """`text` as UTF-8 can carry it (lone surrogates replaced), at most `limit` characters."""
    if not text.isascii():
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text[:limit]


def metrics(counters: Counters) -> Iterator[tuple[str, int | float]]:
    """The non-zero increments a counters object makes, by metric."""
    if counters.requests:
        yield "requests", counters.requests
    for kind, count in counters.errors.items():
        yield _ERRORS + kind, count
    for index, count in counters.latency.items():
        yield f"{_LATENCY}{index}", count
    if counters.input_tokens:
        yield "input_tokens", counters.input_tokens
    if counters.output_tokens:
        yield "output_tokens", counters.output_tokens
    if counters.spend_usd:
        yield "spend_usd", counters.spend_usd
    if counters.saved_usd:
        yield "saved_usd", counters.saved_usd
    if counters.cache_hits:
        yield "cache_hits", counters.cache_hits


def parse_entity(text: str) -> tuple[Entity, str] | None:
    """An entity field's entity and what follows it (the metric, `""` for none)."""
    dimension_text, _, rest = text.partition(":")
    length_text, colon, rest = rest.partition(":")
    if not colon or not length_text.isdigit():
        return None
    length = int(length_text)
    try:
        dimension = Dimension(dimension_text)
    except ValueError:
        return None
    if len(rest) < length or (len(rest) > length and rest[length] != ":"):
        return None
    return (dimension, rest[:length]), rest[length + 1 :]


def parse_stats(fields: Mapping[bytes | str, bytes | str]) -> Tally:
    """A period's hash (HGETALL) back as counters per entity."""
    tally: Tally = {}
    for raw_field, raw_value in fields.items():
        parsed = parse_entity(_text(raw_field))
        if parsed is None:
            continue
        entity, metric = parsed
        try:
            counters = tally.get(entity) or Counters()
            if not _add(counters, metric, _text(raw_value)):
                continue
        except (ValueError, OverflowError):
            continue
        tally[entity] = counters
    return tally


def _add(counters: Counters, metric: str, value: str) -> bool:
    if metric.startswith(_ERRORS):
        counters.errors[metric[len(_ERRORS) :]] = int(value)
    elif metric.startswith(_LATENCY):
        counters.latency[int(metric[len(_LATENCY) :])] = int(value)
    elif metric == "requests":
        counters.requests = int(value)
    elif metric == "input_tokens":
        counters.input_tokens = int(value)
    elif metric == "output_tokens":
        counters.output_tokens = int(value)
    elif metric == "spend_usd":
        counters.spend_usd = _usd(value)
    elif metric == "saved_usd":
        counters.saved_usd = _usd(value)
    elif metric == "cache_hits":
        counters.cache_hits = int(value)
    else:
        return False
    return True


def parse_usd(value: bytes | str | None) -> float:
    """A budget field's value; 0 when absent or unreadable."""
    if value is None:
        return 0.0
    try:
        return _usd(_text(value))
    except ValueError:
        return 0.0


def _usd(value: str) -> float:
    amount = float(value)
    if not amount >= 0.0 or amount == float("inf"):
        raise ValueError(value)
    return amount


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
