"""One system at one upstream delay: a warm-up, then its ladder or its fixed rates.

Every step becomes a Record (the step's figures, whether it was sustained and
why not) handed to a callback as soon as it is measured, so a run that is cut
short still leaves everything it measured. Before each step the runner waits
(a bounded time) for the rest of the machine to go quiet, since other work on
the same two cores would be measured as the system's own slowness.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from bench.compare.ladder import Plan, climb, shortfalls
from bench.compare.loadgen import Step, run_step
from bench.compare.meter import cpu_seconds, machine_busy_seconds, tree
from bench.compare.systems import Running, System, Upstream


@dataclass
class Record:
    system: str
    delay_ms: float
    phase: str  # warmup, ladder, point, or an experiment's own name
    sustained: bool
    shortfalls: list[str]
    step: Step

    def to_json(self) -> dict[str, object]:
        return {
            "system": self.system,
            "delay_ms": self.delay_ms,
            "phase": self.phase,
            "sustained": self.sustained,
            "shortfalls": self.shortfalls,
            **dataclasses.asdict(self.step),
        }


@dataclass(frozen=True)
class Settings:
    duration_s: float
    warmup_s: float
    vus: int
    cap: float
    fine_steps: int
    confirm: bool
    max_steps: int
    logs: Path
    # Wait before a step while processes outside this harness use more than this.
    quiet_cores: float = 0.3
    quiet_wait_s: float = 15.0
    # The most a whole run waits for quiet, so a machine that never is costs bounded time.
    quiet_budget_s: float = 120.0
    # A step that fails while others used more than this is measured again.
    disturbed_cores: float = 0.5


class Runner:
    def __init__(self, settings: Settings, on_record: Callable[[Record], None]) -> None:
        self.settings = settings
        self._on_record = on_record
        self._count = 0
        self._quiet_left = settings.quiet_budget_s

    def warm_up(self, system: System, running: Running, upstream: Upstream, rate: float) -> None:
        self.step(
            system, running, upstream, rate, phase="warmup", duration_s=self.settings.warmup_s
        )

    def ladder(self, system: System, running: Running, upstream: Upstream) -> None:
        s = self.settings
        plan = Plan(
            start=system.start_rate,
            cap=s.cap,
            fine_steps=s.fine_steps,
            confirm=s.confirm,
            max_steps=s.max_steps,
        )
        climb(plan, lambda rate: self.step(system, running, upstream, rate, "ladder").sustained)

    def points(
        self,
        system: System,
        running: Running,
        upstream: Upstream,
        rates: Iterable[float],
        required: float | None,
    ) -> None:
        """Each rate in turn, stopping at the first that is not sustained once `required` ran."""
        done_required = required is None
        for rate in rates:
            record = self.step(system, running, upstream, rate, "point")
            done_required = done_required or rate == required
            if not record.sustained and done_required:
                return

    def step(
        self,
        system: System,
        running: Running,
        upstream: Upstream,
        rate: float,
        phase: str,
        *,
        duration_s: float | None = None,
        vus: int | None = None,
        cpu_skip_s: float = 0.0,
    ) -> Record:
        """Measure one step; one that failed while the machine was busy is measured again."""
        record = self._measure(system, running, upstream, rate, phase, duration_s, vus, cpu_skip_s)
        disturbed = (record.step.background_cores or 0.0) > self.settings.disturbed_cores
        if not record.sustained and disturbed and phase != "warmup":
            record.phase = "disturbed"  # kept in the results, left out of the summary
            self._on_record(record)
            print(
                "    (other processes were busy during that step: measuring it again)", flush=True
            )
            self._wait_quiet(self.settings.quiet_wait_s * 2)
            args = (system, running, upstream, rate, phase, duration_s, vus, cpu_skip_s)
            record = self._measure(*args)
        self._on_record(record)
        return record

    def _measure(
        self,
        system: System,
        running: Running,
        upstream: Upstream,
        rate: float,
        phase: str,
        duration_s: float | None,
        vus: int | None,
        cpu_skip_s: float,
    ) -> Record:
        s = self.settings
        self._wait_quiet(s.quiet_wait_s)
        self._count += 1
        name = f"{self._count:03d}-{system.name}-{upstream.delay_ms:g}ms-{phase}-{rate:g}"
        roots = {"sut": running.pid}
        if system.uses_upstream:
            roots["upstream"] = upstream.proc.popen.pid
        step = run_step(
            running.target,
            rate=rate,
            duration_s=duration_s or s.duration_s,
            vus=vus or s.vus,
            roots=roots,
            upstream_port=upstream.port if system.uses_upstream else None,
            log_path=s.logs / f"{name}.log",
            cpu_skip_s=cpu_skip_s,
        )
        reasons = shortfalls(step, upstream.delay_ms)
        record = Record(system.name, upstream.delay_ms, phase, not reasons, reasons, step)
        print(_line(record), flush=True)
        if reasons:
            time.sleep(2.0)  # let an overloaded server drain before the next step
        return record

    def _wait_quiet(self, most_s: float) -> None:
        start = time.monotonic()
        most_s = min(most_s, self._quiet_left)
        limit = self.settings.quiet_cores
        busy = background_cores(0.5)
        if busy <= limit or most_s <= 0:
            return
        print(
            f"    (other processes use {busy:.2f} cores: waiting up to {most_s:.0f} s)", flush=True
        )
        while busy > limit and time.monotonic() - start < most_s:
            busy = background_cores(1.0)
        self._quiet_left -= time.monotonic() - start


def background_cores(seconds: float) -> float:
    """CPU cores used by processes outside this harness's tree over the next `seconds`."""
    own = os.getpid()
    busy0, own0 = machine_busy_seconds(), cpu_seconds(tree(own))
    time.sleep(seconds)
    busy1, own1 = machine_busy_seconds(), cpu_seconds(tree(own))
    used = sum(v - own0.get(pid, 0.0) for pid, v in own1.items())
    return max(0.0, busy1 - busy0 - used) / seconds


def _line(record: Record) -> str:
    step = record.step
    head = (
        f"  {record.system:21s} {record.delay_ms:3g}ms {record.phase:7s} {step.offered_rate:6g}/s"
    )
    if step.error:
        return f"{head}: ERROR {step.error}"
    lat = step.latency_ms
    ttfc = f" ttfc50 {step.ttfc_ms['p50']:.2f}" if step.ttfc_ms else ""
    return (
        f"{head}: ok {step.success_rate:7.2%} done {step.completed_rate:7.1f}/s "
        f"drop {step.dropped:4d} p50 {lat.get('p50', 0):7.2f} p99 {lat.get('p99', 0):8.2f} ms"
        f"{ttfc} | sut {step.sut_cores or 0:.2f}c {step.sut_rss_mb or 0:.0f}MB "
        f"up {step.upstream_cores or 0:.2f}c k6 {step.k6_cores or 0:.2f}c "
        f"bg {step.background_cores or 0:.2f}c conns {step.client_conns} "
        f"-> {'held' if record.sustained else 'NOT: ' + '; '.join(record.shortfalls)}"
    )
