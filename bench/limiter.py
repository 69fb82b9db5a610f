"""The limiter from Python: speed beside a pure-Python twin, and utilisation.

Run from the repository root, after ``maturin develop --release``::

    .venv/bin/python bench/limiter.py            # about 15 s
    .venv/bin/python bench/limiter.py --pairs 200000   # quicker

Prints, in one run:

1. ns per ``try_acquire`` + ``commit`` pair from Python (the loop included),
   on 1 key, spread over 10,000 keys, and on 2 keys per call (a deployment
   and a caller, the gateway's usual shape): for the native limiter naming
   keys by str and by ``Handle`` (resolved once with ``RateLimiter.handle``),
   measured alternately in the same run, and for ``TwinLimiter`` below (the
   same algorithm in pure Python, by str), with its ratio to the handle path.
2. Utilisation in saturating workloads: the tokens (or requests) the native
   limiter admits over the ones an exact sliding log admits, fed the same
   offered load at the same explicit times; the most the native limiter
   admitted in any window (never above the limit); that the twin decided
   exactly as the native limiter did on every request; and the worst case,
   whole-window requests back to back, where each bucket's lateness shows.
"""

from __future__ import annotations

import argparse
import math
import random
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from switchboard.limits import Handle, RateLimiter, Ticket

TICKS = 1 << 30  # ticks per second, as in the native core
BUCKETS = 1024  # per window


# --- the pure-Python twin ----------------------------------------------------


@dataclass
class _Window:
    rpm: int | None
    tpm: int | None
    buckets: deque[list[int]] = field(default_factory=deque)  # [index, requests, tokens]
    requests: int = 0
    tokens: int = 0
    latest: int = -(1 << 63)


@dataclass(frozen=True)
class TwinDenied:
    key: str
    retry_after: float
    never: bool

    def __bool__(self) -> bool:
        return False


@dataclass
class TwinTicket:
    tokens: int
    holds: list[tuple[_Window, int]]
    settled: bool = False


class TwinLimiter:
    """The native limiter's algorithm, line for line, in pure Python."""

    def __init__(self, window_seconds: float = 60.0) -> None:
        self._window = math.ceil(window_seconds * TICKS)
        self._width = -(-self._window // BUCKETS)
        self._keys: dict[str, _Window] = {}

    def configure(self, key: str, rpm: int | None, tpm: int | None) -> None:
        if (rpm is not None and rpm < 1) or (tpm is not None and tpm < 1):
            raise ValueError("a limit must be at least 1")
        w = self._keys.get(key)
        if w is None:
            self._keys[key] = _Window(rpm, tpm)
        else:
            w.rpm, w.tpm = rpm, tpm

    def _advance(self, w: _Window, now: int) -> None:
        if now > w.latest:
            w.latest = now
        buckets, width, window = w.buckets, self._width, self._window
        while buckets and (buckets[0][0] + 1) * width + window <= w.latest:
            _, requests, tokens = buckets.popleft()
            w.requests -= requests
            w.tokens -= tokens

    def _fit(self, w: _Window, tokens: int) -> int | None:
        """0: fits now; a time in ticks: fits then; None: never."""
        excess_requests = max(0, w.requests + 1 - w.rpm) if w.rpm is not None else 0
        if w.tpm is not None and tokens > w.tpm:
            return None
        excess_tokens = max(0, w.tokens + tokens - w.tpm) if w.tpm is not None else 0
        if not excess_requests and not excess_tokens:
            return 0
        freed_requests = freed_tokens = 0
        for index, requests, used in w.buckets:
            freed_requests += requests
            freed_tokens += used
            if freed_requests >= excess_requests and freed_tokens >= excess_tokens:
                return (index + 1) * self._width + self._window
        raise AssertionError("sums out of step with buckets")

    def try_acquire(
        self, keys: Iterable[str], tokens: int, now: float | None = None
    ) -> TwinTicket | TwinDenied:
        at = math.floor((time.monotonic() if now is None else now) * TICKS)
        named = [(k, self._keys[k]) for k in dict.fromkeys(keys) if k in self._keys]
        worst: tuple[float, str] | None = None
        for key, w in named:
            self._advance(w, at)
            fits = self._fit(w, tokens)
            if fits == 0:
                continue
            wait = math.inf if fits is None else float(fits)
            if worst is None or wait > worst[0]:
                worst = (wait, key)
        if worst is not None:
            wait, key = worst
            after = math.inf if wait == math.inf else (wait - at) / TICKS
            return TwinDenied(key, after, wait == math.inf)
        holds = []
        for _, w in named:
            index = w.latest // self._width
            w.requests += 1
            w.tokens += tokens
            if w.buckets and w.buckets[-1][0] == index:
                w.buckets[-1][1] += 1
                w.buckets[-1][2] += tokens
            else:
                w.buckets.append([index, 1, tokens])
            holds.append((w, index))
        return TwinTicket(tokens, holds)

    def _settle(self, ticket: TwinTicket, now: float | None, requests: int, tokens: int) -> None:
        if ticket.settled:
            raise ValueError("ticket already committed or released")
        ticket.settled = True
        for w, index in ticket.holds:
            if now is not None:
                self._advance(w, math.floor(now * TICKS))
            for bucket in reversed(w.buckets):
                if bucket[0] == index:
                    bucket[1] -= requests
                    bucket[2] += tokens
                    w.requests -= requests
                    w.tokens += tokens
                    break
                if bucket[0] < index:
                    break

    def commit(self, ticket: TwinTicket, actual_tokens: int, now: float | None = None) -> None:
        self._settle(ticket, now, 0, actual_tokens - ticket.tokens)

    def release(self, ticket: TwinTicket, now: float | None = None) -> None:
        self._settle(ticket, now, 1, -ticket.tokens)


# --- speed ---------------------------------------------------------------------


Keys = tuple[str, ...] | tuple[Handle, ...] | Handle


def key_sets(keys: int, per_call: int) -> list[tuple[str, ...]]:
    """The keys of each call: one deployment each, or one and a caller."""
    callers = ("key:caller",) * (per_call - 1)
    return [(f"deployment:{i}", *callers) for i in range(keys)]


def configure(limiter: RateLimiter | TwinLimiter, sets: list[tuple[str, ...]]) -> None:
    for names in sets:
        for name in names:
            limiter.configure(name, 10**15, 10**15)


def as_handles(limiter: RateLimiter, sets: list[tuple[str, ...]]) -> list[Keys]:
    """Each call's keys as handles: one alone, several in a tuple."""
    handles = [tuple(limiter.handle(name) for name in names) for names in sets]
    return [hs[0] if len(hs) == 1 else hs for hs in handles]


def run_pairs(limiter: RateLimiter | TwinLimiter, calls: list[Keys], pairs: int) -> float:
    """One timed run: ns per try_acquire + commit, the loop included."""
    acquire, commit = limiter.try_acquire, limiter.commit
    cycle = calls * (pairs // len(calls)) if len(calls) > 1 else None
    start = time.perf_counter_ns()
    if cycle is None:
        one = calls[0]
        for _ in range(pairs):
            ticket = acquire(one, 500)  # type: ignore[arg-type]
            commit(ticket, 420)  # type: ignore[arg-type]
    else:
        for keys in cycle:
            ticket = acquire(keys, 500)  # type: ignore[arg-type]
            commit(ticket, 420)  # type: ignore[arg-type]
    return (time.perf_counter_ns() - start) / pairs


def native_ns(keys: int, per_call: int, pairs: int) -> tuple[float, float]:
    """Best of three runs each, by str and by handle, alternating."""
    sets = key_sets(keys, per_call)
    by_str, by_handle = RateLimiter(60.0), RateLimiter(60.0)
    configure(by_str, sets)
    configure(by_handle, sets)
    str_calls: list[Keys] = list(sets)
    handle_calls = as_handles(by_handle, sets)
    best_str = best_handle = math.inf
    for _ in range(3):
        best_str = min(best_str, run_pairs(by_str, str_calls, pairs))
        best_handle = min(best_handle, run_pairs(by_handle, handle_calls, pairs))
    return best_str, best_handle


def twin_ns(keys: int, per_call: int, pairs: int) -> float:
    """Best of three runs: the pure-Python twin, by str."""
    sets = key_sets(keys, per_call)
    twin = TwinLimiter(60.0)
    configure(twin, sets)
    calls: list[Keys] = list(sets)
    return min(run_pairs(twin, calls, pairs) for _ in range(3))


# --- utilisation ---------------------------------------------------------------


class ExactLog:
    """The exact sliding log for one key: every admission with its time."""

    def __init__(self, window: float, rpm: int | None, tpm: int | None) -> None:
        self.window, self.rpm, self.tpm = window, rpm, tpm
        self.log: deque[tuple[float, int]] = deque()
        self.tokens = 0

    def try_acquire(self, tokens: int, now: float) -> bool:
        while self.log and self.log[0][0] <= now - self.window:
            self.tokens -= self.log.popleft()[1]
        if self.rpm is not None and len(self.log) + 1 > self.rpm:
            return False
        if self.tpm is not None and self.tokens + tokens > self.tpm:
            return False
        self.log.append((now, tokens))
        self.tokens += tokens
        return True


def most_in_any_window(admitted: list[tuple[float, int]], window: float) -> tuple[int, int]:
    """The most requests and tokens admitted in any (t - window, t]."""
    inside: deque[tuple[float, int]] = deque()
    tokens = most_requests = most_tokens = 0
    for t, n in admitted:
        inside.append((t, n))
        tokens += n
        while inside[0][0] <= t - window:
            tokens -= inside.popleft()[1]
        most_requests = max(most_requests, len(inside))
        most_tokens = max(most_tokens, tokens)
    return most_requests, most_tokens


@dataclass
class Utilisation:
    name: str
    native: int
    exact: int
    most: tuple[int, int]
    twin_agrees: bool


def utilisation(
    name: str,
    rpm: int | None,
    tpm: int | None,
    gap: Callable[[random.Random], float],
    size: Callable[[random.Random], int],
    windows: int = 20,
    window: float = 60.0,
) -> Utilisation:
    """Offer more than the limits allow for ``windows`` windows; count what gets in."""
    rng = random.Random(7)
    native, twin = RateLimiter(window), TwinLimiter(window)
    native.configure("k", rpm, tpm)
    twin.configure("k", rpm, tpm)
    exact = ExactLog(window, rpm, tpm)
    admitted: list[tuple[float, int]] = []
    native_total = exact_total = 0
    twin_agrees = True
    now = 1000.0
    while now < 1000.0 + windows * window:
        now += gap(rng)
        tokens = size(rng)
        unit = 1 if tpm is None else tokens
        ticket = native.try_acquire(["k"], tokens, now=now)
        twin_ticket = twin.try_acquire(["k"], tokens, now=now)
        twin_agrees &= bool(ticket) == bool(twin_ticket)
        if isinstance(ticket, Ticket):
            native_total += unit
            admitted.append((now, tokens))
        if exact.try_acquire(tokens, now):
            exact_total += unit
    return Utilisation(
        name, native_total, exact_total, most_in_any_window(admitted, window), twin_agrees
    )


def worst_case(windows: int = 100, window: float = 60.0) -> tuple[float, float]:
    """Requests of a whole window's tokens, offered every 5 ms: each is admitted
    as soon as the previous one has left the window. Returns the mean time
    between admissions for the native limiter and the exact log; their ratio
    is the utilisation in the limiter's worst case (bound: window / (window + q))."""
    tpm, gap = 1_000, 0.005
    native = RateLimiter(window)
    native.configure("k", None, tpm)
    exact = ExactLog(window, None, tpm)
    native_at: list[float] = []
    exact_at: list[float] = []
    for i in range(int(windows * window / gap)):
        now = 1000.0 + i * gap
        if native.try_acquire(["k"], tpm, now=now):
            native_at.append(now)
        if exact.try_acquire(tpm, now):
            exact_at.append(now)

    def mean_gap(at: list[float]) -> float:
        return (at[-1] - at[0]) / (len(at) - 1)

    return mean_gap(native_at), mean_gap(exact_at)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=1_000_000, help="pairs timed per run")
    args = parser.parse_args()
    pairs = args.pairs - args.pairs % 10_000 or 10_000

    print(f"try_acquire + commit from Python, ns per pair (best of 3 x {pairs:,}):")
    print(
        f"  {'keys':>13} {'native str':>11} {'native handle':>14} {'python twin':>12}"
        f" {'twin/handle':>12}"
    )
    for label, keys, per_call in (("1", 1, 1), ("10,000", 10_000, 1), ("2 per call", 1, 2)):
        str_ns, handle_ns = native_ns(keys, per_call, pairs)
        twin = twin_ns(keys, per_call, max(pairs // 10, 10_000))
        print(
            f"  {label:>13} {str_ns:>11.0f} {handle_ns:>14.0f} {twin:>12.0f}"
            f" {twin / handle_ns:>11.1f}x"
        )
    loop = min(_empty_loop(pairs) for _ in range(3))
    print(f"  (the bare Python loop costs {loop:.0f} ns of each pair)")

    print("\nutilisation against an exact sliding log (saturating, 20 windows of 60 s):")
    runs = [
        utilisation(
            "tokens-bound (tpm 100,000)",
            None,
            100_000,
            gap=lambda r: r.expovariate(1 / 0.007),
            size=lambda r: r.randint(100, 2_000),
        ),
        utilisation(
            "requests-bound (rpm 600)",
            600,
            None,
            gap=lambda r: r.expovariate(1 / 0.02),
            size=lambda r: r.randint(1, 100),
        ),
        utilisation(
            "both (rpm 3,000, tpm 400,000)",
            3_000,
            400_000,
            gap=lambda r: r.expovariate(1 / 0.004),
            size=lambda r: r.choice([10, 50, 200, 1_500, 4_000]),
        ),
    ]
    for run in runs:
        ratio = run.native / run.exact
        print(
            f"  {run.name:<30} native {run.native:>10,}  exact {run.exact:>10,}"
            f"  utilisation {ratio:7.3%}"
        )
        print(
            f"  {'':<30} most in any window: {run.most[0]:,} requests,"
            f" {run.most[1]:,} tokens; twin agrees: {run.twin_agrees}"
        )
    native_gap, exact_gap = worst_case()
    bound = 60.0 / (60.0 + RateLimiter(60.0).bucket_seconds)
    print(
        f"  {'worst case (whole-window asks)':<30} mean gap native {native_gap:.4f} s,"
        f" exact {exact_gap:.4f} s  utilisation {exact_gap / native_gap:7.3%}"
        f" (bound {bound:.3%})"
    )


def _empty_loop(pairs: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(pairs):
        pass
    return (time.perf_counter_ns() - start) / pairs


if __name__ == "__main__":
    main()
