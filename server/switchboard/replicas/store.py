"""Where replica state lives in Redis, and how a joining replica reads it back.

    {prefix}replicas                        the channel every replica publishes on
    {prefix}cooldown:{deployment}           "1" (quota) or "0"; expires when the cooldown ends
    {prefix}latency:{kind}:{deployment}     a stream of the newest samples, capped at the window

A cooldown key keeps the longer of two cooldowns (`KEEP_LONGER`), so its
time to live is always what is left of the longest one begun. A sample's
stream entry id is Redis's own time when it was added, so a joiner ages the
samples on Redis's clock (`TIME`) and no replica's wall clock matters.
Streams expire once their newest sample would be stale.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from switchboard.replicas.events import Decoder, Rejected, StoredSample
from switchboard.routing.strategy import CallKind

# KEYS[1]: the cooldown key; ARGV[1]: milliseconds left; ARGV[2]: its value.
# PTTL is -2 for no key and -1 for a key without expiry: both are replaced.
KEEP_LONGER = """
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[1])
  return 1
end
return 0
"""
# A stream id from further ahead of Redis's clock than this was not made by XADD *.
_FUTURE_SLACK_MS = 1_000


class Layout:
    def __init__(self, prefix: str) -> None:
        self._prefix = prefix
        self.channel = f"{prefix}replicas"

    def cooldown_key(self, deployment_id: str) -> str:
        return f"{self._prefix}cooldown:{deployment_id}"

    def samples_key(self, deployment_id: str, kind: CallKind) -> str:
        return f"{self._prefix}latency:{kind.value}:{deployment_id}"


@dataclass(frozen=True, slots=True)
class Loaded:
    deployment_id: str
    kind: CallKind
    sample: StoredSample
    age_s: float  # now, on Redis's clock


@dataclass(slots=True)
class CatchUp:
    """What a joining replica reads: cooldowns still running, samples still fresh."""

    cooldowns: list[tuple[str, float, bool]] = field(default_factory=list)
    samples: list[Loaded] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    refused: list[Exception] = field(default_factory=list)  # errors Redis replied


def queue_catch_up(pipe: Any, layout: Layout, deployments: Sequence[str], window: int) -> None:
    """Adds the reads to a pipeline: TIME, then each cooldown, then each stream."""
    pipe.time()
    for deployment_id in deployments:
        key = layout.cooldown_key(deployment_id)
        pipe.get(key)
        pipe.pttl(key)
    for deployment_id in deployments:
        for kind in CallKind:
            pipe.xrevrange(layout.samples_key(deployment_id, kind), count=window)


def parse_catch_up(
    replies: Sequence[Any],
    deployments: Sequence[str],
    decoder: Decoder,
    *,
    stale_after_s: float,
) -> CatchUp:
    """The replies of `queue_catch_up`'s pipeline (run with raise_on_error=False)."""
    out = CatchUp()
    now_ms = _time_ms(replies[0])
    if isinstance(replies[0], Exception):
        out.refused.append(replies[0])
    at = 1
    for deployment_id in deployments:
        value, pttl = replies[at], replies[at + 1]
        at += 2
        if isinstance(value, Exception) or isinstance(pttl, Exception):
            out.refused.append(value if isinstance(value, Exception) else pttl)
            continue
        if value is None:
            continue  # no cooldown (or it ended between the two reads)
        stored = decoder.stored_cooldown(value, pttl)
        if isinstance(stored, Rejected):
            out.rejected.append(stored)
        else:
            out.cooldowns.append((deployment_id, *stored))
    for deployment_id in deployments:
        for kind in CallKind:
            entries = replies[at]
            at += 1
            if isinstance(entries, Exception):
                out.refused.append(entries)
            elif now_ms is not None:
                _samples(out, deployment_id, kind, entries, now_ms, decoder, stale_after_s)
    return out


def _samples(
    out: CatchUp,
    deployment_id: str,
    kind: CallKind,
    entries: Any,
    now_ms: int,
    decoder: Decoder,
    stale_after_s: float,
) -> None:
    for entry in entries:
        added_ms = _entry_ms(entry[0])
        if added_ms is None or added_ms > now_ms + _FUTURE_SLACK_MS:
            out.rejected.append(Rejected("a stream entry id is not a time"))
            continue
        values = entry[1]
        stored = decoder.stored_sample(values.get(b"v") if isinstance(values, dict) else None)
        if isinstance(stored, Rejected):
            out.rejected.append(stored)
            continue
        age_s = max(0, now_ms - added_ms) / 1000 + stored.age_s
        if age_s <= stale_after_s:
            out.samples.append(Loaded(deployment_id, kind, stored, age_s))


def _time_ms(reply: Any) -> int | None:
    """Redis's TIME, parsed by redis-py into (seconds, microseconds)."""
    if isinstance(reply, tuple | list) and len(reply) == 2:
        seconds, micros = reply
        if isinstance(seconds, int) and isinstance(micros, int):
            return seconds * 1000 + micros // 1000
    return None


def _entry_ms(entry_id: object) -> int | None:
    if isinstance(entry_id, str):
        entry_id = entry_id.encode()
    if not isinstance(entry_id, bytes):
        return None
    millis, _, _ = entry_id.partition(b"-")
    return int(millis) if millis.isdigit() and len(millis) <= 16 else None
