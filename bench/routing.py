"""Routing quality: mean latency of each strategy against an oracle, in simulation.

A discrete-event simulation on a fake clock (no network, no sleeping)::

    .venv/bin/python bench/routing.py [--seed 1] [--calls 20000]

Four deployments whose true latency (lognormal around a mean) shifts over
the run, as fractions of its length::

    east   0.8 s, then 2.4 s from 50%       the fastest becomes the slowest
    west   2.0 s, then 0.9 s from 30%,      improves, then degrades
           then 1.6 s from 85%
    north  1.2 s, failing every call        a recovered deployment must be
           (0.3 s errors) from 60% to 75%   measured again to be used
    south  1.5 s throughout

Calls arrive as a Poisson process (8 a second, so about eight are in flight
and load counts); each call gets up to three attempts on distinct
deployments, a failed attempt costing its time. After three failures within
60 s a deployment cools down for 30 s. Every strategy sees the same arrivals
and the same latency draws (call i, attempt k draws the same noise whoever
routes it), so the differences are the routing alone. The oracle always
takes the truly fastest deployment that is not failing at that moment.

Latency does not depend on load here: the bench measures how fast a
strategy notices a shift, not congestion.
"""

from __future__ import annotations

import argparse
import heapq
import math
import random
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from switchboard.config import Deployment
from switchboard.routing.latency import LatencyRouting, LatencyTracker
from switchboard.routing.least_busy import LeastBusy
from switchboard.routing.load import InFlight
from switchboard.routing.round_robin import RoundRobin
from switchboard.routing.shuffle import SimpleShuffle
from switchboard.routing.strategy import CallKind, Decision, Strategy

RATE_PER_S = 8.0
SIGMA = 0.5  # lognormal shape: p95 is about 1.8 times the mean
ERROR_MEAN_S = 0.3
ATTEMPTS = 3
ALLOWED_FAILS, FAIL_WINDOW_S, COOLDOWN_S = 3, 60.0, 30.0

# id -> [(from fraction of the run, mean seconds)], and failing spans as fractions.
MEANS: Mapping[str, tuple[tuple[float, float], ...]] = {
    "east": ((0.0, 0.8), (0.5, 2.4)),
    "west": ((0.0, 2.0), (0.3, 0.9), (0.85, 1.6)),
    "north": ((0.0, 1.2),),
    "south": ((0.0, 1.5),),
}
FAILING: Mapping[str, tuple[float, float]] = {"north": (0.6, 0.75)}


class SimClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True)
class World:
    """The truth at any moment, which only the oracle may read."""

    duration_s: float

    def mean(self, deployment_id: str, at: float) -> float:
        current = MEANS[deployment_id][0][1]
        for start, mean in MEANS[deployment_id]:
            if at >= start * self.duration_s:
                current = mean
        return current

    def failing(self, deployment_id: str, at: float) -> bool:
        span = FAILING.get(deployment_id)
        return span is not None and span[0] * self.duration_s <= at < span[1] * self.duration_s


@dataclass(frozen=True)
class Workload:
    arrivals: list[float]
    # One standard normal draw per call and attempt: common random numbers.
    noise: list[tuple[float, ...]]


def workload(calls: int, rng: random.Random) -> Workload:
    at, arrivals = 0.0, []
    for _ in range(calls):
        at += rng.expovariate(RATE_PER_S)
        arrivals.append(at)
    noise = [tuple(rng.gauss(0.0, 1.0) for _ in range(ATTEMPTS)) for _ in range(calls)]
    return Workload(arrivals, noise)


class Oracle:
    name = "oracle"

    def __init__(self, world: World, clock: SimClock) -> None:
        self._world, self._clock = world, clock

    def choose(self, candidates: Sequence[Deployment], kind: CallKind) -> Decision:
        now = self._clock()
        return Decision(
            min(
                candidates,
                key=lambda d: (self._world.failing(d.id, now), self._world.mean(d.id, now)),
            )
        )


@dataclass
class Call:
    arrived: float
    tried: list[str] = field(default_factory=list)


@dataclass(order=True)
class Event:
    at: float
    seq: int
    call: int = field(compare=False)
    # Empty for an arrival; otherwise the attempt's deployment, start and outcome.
    deployment: str = field(compare=False, default="")
    started: float = field(compare=False, default=0.0)
    ok: bool = field(compare=False, default=False)


@dataclass
class Result:
    name: str
    latencies: list[float]
    errors: int
    explored: int
    decisions: int
    failed_attempts: int = 0


class Simulation:
    """One strategy through the whole workload; the bench's cooldown sits here."""

    def __init__(
        self,
        strategy: Strategy,
        clock: SimClock,
        load: InFlight,
        tracker: LatencyTracker,
        work: Workload,
        world: World,
        deployments: Sequence[Deployment],
    ) -> None:
        self._strategy, self._clock, self._load, self._tracker = strategy, clock, load, tracker
        self._work, self._world, self._deployments = work, world, deployments
        self._calls = [Call(at) for at in work.arrivals]
        self._failures: dict[str, list[float]] = {d.id: [] for d in deployments}
        self._cooling_until = dict.fromkeys((d.id for d in deployments), -math.inf)
        self._events: list[Event] = []
        self._seq = 0
        self.result = Result(strategy.name, [], 0, 0, 0)

    def run(self) -> Result:
        self._push(self._work.arrivals[0], 0)
        while self._events:
            event = heapq.heappop(self._events)
            self._clock.now = event.at
            if not event.deployment:
                if event.call + 1 < len(self._calls):
                    self._push(self._work.arrivals[event.call + 1], event.call + 1)
                self._attempt(event.call)
            else:
                self._finished(event)
        return self.result

    def _push(self, at: float, call: int, deployment: str = "", ok: bool = False) -> None:
        event = Event(at, self._seq, call, deployment, self._clock.now, ok)
        heapq.heappush(self._events, event)
        self._seq += 1

    def _attempt(self, index: int) -> bool:
        call, now = self._calls[index], self._clock.now
        candidates = [
            d
            for d in self._deployments
            if d.id not in call.tried and self._cooling_until[d.id] <= now
        ]
        if not candidates or len(call.tried) == ATTEMPTS:
            return False
        decision = self._strategy.choose(candidates, CallKind.COMPLETE)
        self.result.decisions += 1
        self.result.explored += decision.explored
        chosen = decision.deployment.id
        z = self._work.noise[index][len(call.tried)]
        call.tried.append(chosen)
        ok = not self._world.failing(chosen, now)
        mean = self._world.mean(chosen, now) if ok else ERROR_MEAN_S
        self._load.started(chosen)
        self._push(now + mean * math.exp(SIGMA * z - SIGMA**2 / 2), index, chosen, ok)
        return True

    def _finished(self, event: Event) -> None:
        self._load.finished(event.deployment)
        call = self._calls[event.call]
        if event.ok:
            self._tracker.record(event.deployment, CallKind.COMPLETE, event.at - event.started)
            self.result.latencies.append(event.at - call.arrived)
            return
        self.result.failed_attempts += 1
        recent = [t for t in self._failures[event.deployment] if t > event.at - FAIL_WINDOW_S]
        recent.append(event.at)
        if len(recent) >= ALLOWED_FAILS:
            self._cooling_until[event.deployment], recent = event.at + COOLDOWN_S, []
        self._failures[event.deployment] = recent
        if not self._attempt(event.call):
            self.result.errors += 1
            self.result.latencies.append(event.at - call.arrived)


# Each strategy from the bench's clock, load and tracker (the tracker is fed by
# the simulation whoever routes, as the gateway feeds it).
Factory = Callable[[SimClock, InFlight, LatencyTracker, random.Random, World], Strategy]
FACTORIES: Mapping[str, Factory] = {
    "latency (epsilon-greedy)": lambda c, load, t, rng, w: LatencyRouting(t, load, rng),
    "least-busy": lambda c, load, t, rng, w: LeastBusy(load, rng),
    "simple-shuffle": lambda c, load, t, rng, w: SimpleShuffle(rng),
    "round-robin": lambda c, load, t, rng, w: RoundRobin(),
    "oracle": lambda c, load, t, rng, w: Oracle(w, c),
}


def run(label: str, factory: Factory, seed: int, work: Workload, world: World) -> Result:
    deployments = [_deployment(id) for id in MEANS]
    clock, load = SimClock(), InFlight()
    tracker = LatencyTracker(clock)
    strategy = factory(clock, load, tracker, random.Random(f"strategy-{seed}"), world)
    result = Simulation(strategy, clock, load, tracker, work, world, deployments).run()
    result.name = label
    return result


def _deployment(id: str) -> Deployment:
    return Deployment(
        id=id,
        model_group="g",
        model=f"sim/{id}",
        provider="sim",
        params={},
        rpm=None,
        tpm=None,
        timeout_s=60.0,
        stream_timeout_s=60.0,
        weight=None,
        max_input_tokens=None,
        max_output_tokens=None,
        input_cost_per_token=None,
        output_cost_per_token=None,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--calls", type=int, default=20_000)
    args = parser.parse_args()
    if args.calls < 1:
        parser.error("--calls must be at least 1")
    began = time.perf_counter()
    work = workload(args.calls, random.Random(args.seed))
    world = World(duration_s=work.arrivals[-1])
    results = [run(label, f, args.seed, work, world) for label, f in FACTORIES.items()]
    oracle_mean = statistics.fmean(results[-1].latencies)

    print(f"seed {args.seed}, {args.calls} calls at {RATE_PER_S:g}/s over {world.duration_s:.0f} s")
    header = f"{'strategy':<26}{'calls':>7}{'mean s':>9}{'p95 s':>8}{'errors %':>10}"
    print(header + f"{'regret %':>10}{'explored %':>12}{'failed attempts':>17}")
    means = {}
    for r in results:
        mean = statistics.fmean(r.latencies)
        means[r.name] = mean
        p95 = statistics.quantiles(r.latencies, n=20, method="inclusive")[-1]
        print(
            f"{r.name:<26}{len(r.latencies):>7}{mean:>9.3f}{p95:>8.3f}"
            f"{100 * r.errors / len(r.latencies):>10.2f}{100 * (mean / oracle_mean - 1):>10.1f}"
            f"{100 * r.explored / max(r.decisions, 1):>12.1f}{r.failed_attempts:>17}"
        )
    greedy = means.pop("latency (epsilon-greedy)")
    means.pop("oracle")
    met = greedy <= 1.15 * oracle_mean and all(greedy < m for m in means.values())
    print(
        f"target (epsilon-greedy within 15% of the oracle, better than the rest): "
        f"{'met' if met else 'NOT met'}; {time.perf_counter() - began:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
