"""Choosing deployments: strategies, candidate plans, fallback chains."""

from switchboard.routing.plan import FallbackKind, Planner
from switchboard.routing.strategies import SimpleShuffle, Strategy, build_strategy

__all__ = ["FallbackKind", "Planner", "SimpleShuffle", "Strategy", "build_strategy"]
