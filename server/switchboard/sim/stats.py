"""Counters the tests and benchmarks read to see what the upstream saw.

Above all: disconnects. The gateway promises to close the upstream call as soon as
its own client cancels; the only witness is the upstream, so the simulator records
when it noticed each disconnect (on the injected clock) and lets tests await one
instead of sleeping.
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeAlias

_Waiter: TypeAlias = "tuple[Callable[[SimStats], bool], asyncio.Future[None]]"

# Arrivals kept for /sim/arrivals, newest last: enough for a test's windows, bounded for benches.
MAX_ARRIVALS = 100_000


@dataclass(slots=True)
class SimStats:
    """Live counters of one simulator; mutated only by its request handlers."""

    clock: Callable[[], float]
    requests: int = 0
    """Chat-completion requests received (valid or not)."""
    in_flight: int = 0
    completed: int = 0
    """Responses written to the end, whatever their status."""
    disconnects: int = 0
    """Clients that went away before their response was complete."""
    disconnect_times: list[float] = field(default_factory=list)
    faults: Counter[str] = field(default_factory=Counter)
    """Faults injected, by kind (including TPM-budget 429s as `tpm_budget`)."""
    statuses: Counter[int] = field(default_factory=Counter)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    arrivals: deque[float] = field(default_factory=lambda: deque(maxlen=MAX_ARRIVALS))
    """When each chat-completion request arrived, on `clock`."""
    served: deque[tuple[float, int, int]] = field(
        default_factory=lambda: deque(maxlen=MAX_ARRIVALS)
    )
    """(arrival, prompt tokens, completion tokens) of each answer served whole."""
    disconnected: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    """Set at the first disconnect; tests may `clear()` it to await the next."""
    _waiters: list[_Waiter] = field(default_factory=list, init=False, repr=False)

    def request_started(self) -> float:
        """Counts a request in; returns its arrival time."""
        self.requests += 1
        self.in_flight += 1
        arrived_at = self.clock()
        self.arrivals.append(arrived_at)
        self._notify()
        return arrived_at

    def request_finished(self) -> None:
        self.in_flight -= 1
        self._notify()

    def response_completed(self, status: int) -> None:
        self.completed += 1
        self.statuses[status] += 1
        self._notify()

    def fault_injected(self, kind: str) -> None:
        self.faults[kind] += 1
        self._notify()

    def tokens_served(
        self, prompt_tokens: int, completion_tokens: int, *, arrived_at: float = 0.0
    ) -> None:
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens
        self.served.append((arrived_at, prompt_tokens, completion_tokens))

    def disconnect_noticed(self) -> None:
        self.disconnects += 1
        self.disconnect_times.append(self.clock())
        self.disconnected.set()
        self._notify()

    def _notify(self) -> None:
        for predicate, future in self._waiters:
            if not future.done() and predicate(self):
                future.set_result(None)

    async def wait_for(self, predicate: Callable[[SimStats], bool]) -> None:
        """Return once `predicate(self)` holds; wrap in `asyncio.timeout` to bound it."""
        if predicate(self):
            return
        waiter: _Waiter = (predicate, asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        try:
            await waiter[1]
        finally:
            self._waiters.remove(waiter)

    async def wait_for_disconnects(self, count: int = 1) -> None:
        await self.wait_for(lambda stats: stats.disconnects >= count)

    async def wait_idle(self) -> None:
        await self.wait_for(lambda stats: stats.in_flight == 0)

    def arrivals_snapshot(self) -> dict[str, object]:
        """What `GET /sim/arrivals` returns: each request's arrival, and each answer's tokens,
        so a test can count any window of a provider's rpm/tpm as the provider saw it."""
        return {"arrivals": list(self.arrivals), "served": [list(s) for s in self.served]}

    def snapshot(self) -> dict[str, object]:
        """JSON-ready counters, as `GET /sim/stats` returns them."""
        return {
            "requests": self.requests,
            "in_flight": self.in_flight,
            "completed": self.completed,
            "disconnects": self.disconnects,
            "disconnect_times": list(self.disconnect_times),
            "faults": dict(self.faults),
            "statuses": {str(status): count for status, count in sorted(self.statuses.items())},
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
        }
