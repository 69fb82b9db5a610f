"""Choosing deployments: eligibility, strategies, cooldowns, fallback chains."""

from switchboard.routing.cost import CostBased
from switchboard.routing.health import DeploymentHealth, HealthState, HealthView
from switchboard.routing.latency import LatencyRouting, LatencyTracker
from switchboard.routing.least_busy import LeastBusy
from switchboard.routing.load import InFlight
from switchboard.routing.plan import FallbackKind, Planner
from switchboard.routing.round_robin import RoundRobin
from switchboard.routing.router import Eligible, Router, RouterObserver
from switchboard.routing.shuffle import SimpleShuffle
from switchboard.routing.strategies import build_strategy, latency_tracker_from_args
from switchboard.routing.strategy import CallKind, Decision, Strategy
from switchboard.routing.usage import UsageBased

__all__ = [
    "CallKind",
    "CostBased",
    "Decision",
    "DeploymentHealth",
    "Eligible",
    "FallbackKind",
    "HealthState",
    "HealthView",
    "InFlight",
    "LatencyRouting",
    "LatencyTracker",
    "LeastBusy",
    "Planner",
    "RoundRobin",
    "Router",
    "RouterObserver",
    "SimpleShuffle",
    "Strategy",
    "UsageBased",
    "build_strategy",
    "latency_tracker_from_args",
]
