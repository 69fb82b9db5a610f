"""A batch of increments, applied by one Lua script at most once.

Why a script rather than one HINCRBY per field: redis-py spends about
14 µs of the event loop per pipelined command (packing it, then parsing
its reply), and a stats field goes to four hashes (hour, day, month, all
time), so a flush of 1000 active entities was some 14 000 commands and
190 ms. The script takes each field once with the hashes it goes to, and
answers once: the same flush costs a few milliseconds.

Why at most once: each batch carries a sequence number, and the script
first sets it in this process's marker hash (HSETNX); a batch whose
number is already there was applied before, and is answered "applied"
again without touching anything. So a batch whose reply was lost (the
connection dropped after it was sent) can be sent again safely, and a
client that retries by itself does no harm either. The markers of
batches known to be applied are deleted in the next flush; the hash
expires when its process has been gone for MARKER_TTL_S.

A refused increment (a key of another type, an overflow) does not stop
the others: the script collects (entry, target, error) for each and
carries on. A refusal of the whole script (OOM, READONLY) happens before
the marker is set, so the batch is simply sent again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from redis.exceptions import MasterDownError, OutOfMemoryError, ReadOnlyError, TryAgainError

Amount = int | float
Targets = tuple[str, ...]  # the hashes a field goes to
Entry = tuple[Targets, str]  # (hashes, field)

MARKER_TTL_S = 7 * 86_400

_PASSING = (ReadOnlyError, OutOfMemoryError, TryAgainError, MasterDownError)
_PASSING_PREFIXES = ("OOM", "READONLY", "BUSY", "LOADING", "TRYAGAIN", "MASTERDOWN", "NOREPLICAS")

# KEYS[1]: the marker hash; KEYS[2..]: the hashes written.
# ARGV[1]: the batch's number; ARGV[2]: the marker's TTL; ARGV[k + 1]: KEYS[k]'s TTL (0: none);
# then groups: m, m indices into KEYS, f, f pairs (field, amount).
# Returns {0} (applied) or {1} (applied before), then (entry, target, error) per refusal.
SCRIPT = """
if redis.call('HSETNX', KEYS[1], ARGV[1], '1') == 0 then
  return {1}
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
local result = {0}
local i = #KEYS + 2
local entry = 0
while i <= #ARGV do
  local m = tonumber(ARGV[i])
  local targets = {}
  for t = 1, m do
    targets[t] = KEYS[tonumber(ARGV[i + t])]
  end
  i = i + m + 1
  local f = tonumber(ARGV[i])
  i = i + 1
  for _ = 1, f do
    local name, amount = ARGV[i], ARGV[i + 1]
    local command = 'HINCRBY'
    if string.find(amount, '[.eE]') then
      command = 'HINCRBYFLOAT'
    end
    entry = entry + 1
    for t = 1, m do
      local reply = redis.pcall(command, targets[t], name, amount)
      if type(reply) == 'table' and reply.err then
        result[#result + 1] = entry
        result[#result + 1] = t
        result[#result + 1] = reply.err
      end
    end
    i = i + 2
  end
end
for k = 2, #KEYS do
  local ttl = tonumber(ARGV[k + 1])
  if ttl > 0 then
    redis.call('EXPIRE', KEYS[k], ttl)
  end
end
return result
"""


@dataclass(slots=True)
class Batch:
    seq: int
    entries: dict[Entry, Amount]
    # In the order the script numbers them (from 1).
    order: list[Entry] = field(default_factory=list)

    def arguments(self, marker: str, ttl_of: Mapping[str, int | None]) -> tuple[int, list[str]]:
        """EVAL's numkeys, then its keys and arguments."""
        groups: dict[Targets, list[tuple[str, Amount]]] = {}
        for (targets, name), amount in self.entries.items():
            groups.setdefault(targets, []).append((name, amount))
        keys: dict[str, int] = {}
        for targets in groups:
            for key in targets:
                keys.setdefault(key, len(keys) + 2)
        args = [str(self.seq), str(MARKER_TTL_S)]
        args.extend(str(ttl_of.get(key) or 0) for key in keys)
        self.order = []
        for targets, fields in groups.items():
            args.append(str(len(targets)))
            args.extend(str(keys[key]) for key in targets)
            args.append(str(len(fields)))
            for name, amount in fields:
                args.append(name)
                args.append(repr(amount) if isinstance(amount, float) else str(amount))
                self.order.append((targets, name))
        return len(keys) + 1, [marker, *keys, *args]

    def refusals(self, reply: list[object]) -> list[tuple[str, str, Amount, str]]:
        """The increments the script refused: (hash, field, amount, error)."""
        refused = []
        for n in range(1, len(reply) - 2, 3):
            entry, target, error = reply[n], reply[n + 1], reply[n + 2]
            if not (isinstance(entry, int) and isinstance(target, int)):
                continue
            targets, name = self.order[entry - 1]
            text = error.decode("utf-8", "replace") if isinstance(error, bytes) else str(error)
            refused.append((targets[target - 1], name, self.entries[targets, name], text))
        return refused


def may_pass(error: Exception | str) -> bool:
    """Whether a refusal may pass if sent again (a failover, memory, loading), not for good."""
    if isinstance(error, _PASSING):
        return True
    return str(error).startswith(_PASSING_PREFIXES)
