"""OpenTelemetry for every call: server spans, attempt spans, GenAI metrics, and export."""

from switchboard.config import TelemetrySettings
from switchboard.telemetry.interceptor import ServerSpans
from switchboard.telemetry.recorder import AttemptSpan, Recorder
from switchboard.telemetry.settings import ExportPlan, plan_export
from switchboard.telemetry.setup import Telemetry, build_telemetry

__all__ = [
    "AttemptSpan",
    "ExportPlan",
    "Recorder",
    "ServerSpans",
    "Telemetry",
    "TelemetrySettings",
    "build_telemetry",
    "plan_export",
]
