"""CPU and memory of process trees over a measuring window, read from /proc.

A system under test may be one process or several (`switchboard serve
--workers N` forks workers; LiteLLM's proxy may run uvicorn in a child), so
every figure is summed over the tree under a root pid, found by parent pid.
CPU is utime+stime, so `cores` is CPU-seconds per wall second; memory is the
peak of the tree's summed RSS, sampled a few times a second (shared pages of
forked workers count once per process, as `ps` would add them).

The machine is shared with whatever else runs on it, so the window also
records the CPU that processes outside this harness's own tree used
(`background_cores`): a step measured while something else was busy says so.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
PROC = Path("/proc")
SAMPLE_EVERY_S = 0.25
RESCAN_EVERY_S = 2.0


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    return text[text.rindex(")") + 2 :].split()


def _parents() -> dict[int, int]:
    parents: dict[int, int] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit() and (fields := _stat_fields(int(entry.name))) is not None:
            parents[int(entry.name)] = int(fields[1])
    return parents


def tree(root: int) -> list[int]:
    """`root` and all its descendants alive now."""
    children: dict[int, list[int]] = {}
    for pid, parent in _parents().items():
        children.setdefault(parent, []).append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


def cpu_seconds(pids: Iterable[int]) -> dict[int, float]:
    """utime+stime of each live pid."""
    seconds = {}
    for pid in pids:
        if (fields := _stat_fields(pid)) is not None:
            # After the command name: state is [0], utime [11], stime [12].
            seconds[pid] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return seconds


def rss_bytes(pids: Iterable[int]) -> int:
    total = 0
    for pid in pids:
        try:
            total += int((PROC / str(pid) / "statm").read_text().split()[1]) * PAGE_BYTES
        except (OSError, IndexError, ValueError):
            continue
    return total


def machine_busy_seconds() -> float:
    """CPU-seconds the whole machine spent not idle since boot."""
    fields = [int(x) for x in (PROC / "stat").read_text().splitlines()[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


@dataclass(frozen=True)
class TreeUsage:
    cores: float
    peak_rss_mb: float


@dataclass(frozen=True)
class WindowUsage:
    wall_s: float
    trees: dict[str, TreeUsage]
    background_cores: float


class Window:
    """Measures named process trees between `start()` and `stop()`."""

    def __init__(self, roots: Mapping[str, int]) -> None:
        self._roots = dict(roots)
        self._pids: dict[str, list[int]] = {}
        self._cpu0: dict[str, dict[int, float]] = {}
        self._peak: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = 0.0
        self._busy0 = 0.0
        self._own0: dict[int, float] = {}

    def start(self) -> None:
        self._scan()
        self._t0 = time.perf_counter()
        self._busy0 = machine_busy_seconds()
        self._own0 = cpu_seconds(tree(os.getpid()))
        self._cpu0 = {name: cpu_seconds(pids) for name, pids in self._pids.items()}
        self._peak = {name: rss_bytes(pids) for name, pids in self._pids.items()}
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def stop(self) -> WindowUsage:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        wall = time.perf_counter() - self._t0
        busy = machine_busy_seconds() - self._busy0
        own = _delta(self._own0, cpu_seconds(tree(os.getpid())))
        trees = {}
        for name in self._pids:
            used = _delta(self._cpu0[name], cpu_seconds(tree(self._roots[name])))
            trees[name] = TreeUsage(cores=used / wall, peak_rss_mb=self._peak[name] / 2**20)
        return WindowUsage(wall_s=wall, trees=trees, background_cores=max(0.0, busy - own) / wall)

    def _scan(self) -> None:
        self._pids = {name: tree(root) for name, root in self._roots.items()}

    def _sample(self) -> None:
        last_scan = time.perf_counter()
        while not self._stop.wait(SAMPLE_EVERY_S):
            if time.perf_counter() - last_scan > RESCAN_EVERY_S:
                self._scan()
                last_scan = time.perf_counter()
            for name, pids in self._pids.items():
                self._peak[name] = max(self._peak[name], rss_bytes(pids))


def _delta(before: Mapping[int, float], after: Mapping[int, float]) -> float:
    """CPU used between two readings; a process born in between counts from zero."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())
