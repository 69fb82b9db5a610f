"""Attribute and instrument names: the GenAI semantic conventions and Switchboard's own.

One place, so the spans, the metrics, the dashboard and the tests agree on
every name. GenAI names follow the current conventions
(`gen_ai.provider.name`, not the older `gen_ai.system`).
"""

from __future__ import annotations

from typing import Final

# GenAI semantic conventions.
OPERATION_NAME: Final = "gen_ai.operation.name"
PROVIDER_NAME: Final = "gen_ai.provider.name"
REQUEST_MODEL: Final = "gen_ai.request.model"
REQUEST_MAX_TOKENS: Final = "gen_ai.request.max_tokens"
REQUEST_TEMPERATURE: Final = "gen_ai.request.temperature"
REQUEST_TOP_P: Final = "gen_ai.request.top_p"
RESPONSE_MODEL: Final = "gen_ai.response.model"
RESPONSE_ID: Final = "gen_ai.response.id"
RESPONSE_FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
TOKEN_TYPE: Final = "gen_ai.token.type"
INPUT_MESSAGES: Final = "gen_ai.input.messages"
OUTPUT_MESSAGES: Final = "gen_ai.output.messages"
ERROR_TYPE: Final = "error.type"
SERVER_ADDRESS: Final = "server.address"
SERVER_PORT: Final = "server.port"
RPC_SYSTEM: Final = "rpc.system"
RPC_SERVICE: Final = "rpc.service"
RPC_METHOD: Final = "rpc.method"
RPC_GRPC_STATUS_CODE: Final = "rpc.grpc.status_code"

OPERATION_CHAT: Final = "chat"

# Bounded values. Metric labels take only values the config or the code names,
# so series cannot grow with what callers or providers send:
# a model name that is no configured group or alias is recorded as this,
UNKNOWN_MODEL: Final = "unknown"
# and a value past a label's bound (the conventions' name for "none of the known ones") as this.
OTHER: Final = "_OTHER"
# Distinct response models kept per deployment (a provider may answer with any string;
# a few dated snapshots of the configured model are what honest ones send).
RESPONSE_MODELS_PER_DEPLOYMENT: Final = 4
# Longest text a span attribute, a status description or a label keeps.
MAX_VALUE_CHARS: Final = 256

# Switchboard's own.
DEPLOYMENT: Final = "switchboard.deployment"
MODEL_GROUP: Final = "switchboard.model_group"
ROUTING_STRATEGY: Final = "switchboard.routing.strategy"
ROUTING_EXPLORED: Final = "switchboard.routing.explored"
ROUTING_CANDIDATES: Final = "switchboard.routing.candidates"
RATELIMIT_WAIT_MS: Final = "switchboard.ratelimit.wait_ms"
CACHE_HIT: Final = "switchboard.cache.hit"
CACHE_KIND: Final = "switchboard.cache.kind"
CACHE_SIMILARITY: Final = "switchboard.cache.similarity"
CACHE_COST_SAVED: Final = "switchboard.cache.cost_saved_usd"
CACHE_RESULT: Final = "switchboard.cache.result"
COST_USD: Final = "switchboard.cost.usd"
FALLBACK_DEPTH: Final = "switchboard.fallback.depth"
FALLBACK: Final = "switchboard.fallback"
ATTEMPTS: Final = "switchboard.attempts"
OUTCOME: Final = "switchboard.outcome"
CALLER: Final = "switchboard.caller"
# The request's own metadata and its caller key's (team, tags), one attribute per key.
METADATA_PREFIX: Final = "switchboard.metadata."
CALLER_METADATA_PREFIX: Final = "switchboard.caller."
# The request's options an attempt's provider does not take (not sent).
DROPPED_PARAMS: Final = "switchboard.dropped_params"
# GenAI semconv: the requested output type (`text`, `json`).
OUTPUT_TYPE: Final = "gen_ai.output.type"
TIME_TO_FIRST_CHUNK_MS: Final = "switchboard.time_to_first_chunk_ms"
LIMIT_UNIT: Final = "switchboard.limit.unit"
ALIAS: Final = "switchboard.alias"
AUTO_TIER: Final = "switchboard.auto.tier"
AUTO_SCORE: Final = "switchboard.auto.score"
AUTO_REASON: Final = "switchboard.auto.reason"

# Instruments.
M_OPERATION_DURATION: Final = "gen_ai.client.operation.duration"
M_TOKEN_USAGE: Final = "gen_ai.client.token.usage"
M_TIME_TO_FIRST_CHUNK: Final = "switchboard.time_to_first_chunk"
M_REQUESTS: Final = "switchboard.requests"
M_COST: Final = "switchboard.cost"
M_RATELIMIT_WAIT: Final = "switchboard.ratelimit.wait"
M_CACHE_LOOKUPS: Final = "switchboard.cache.lookups"
M_CACHE_COST_SAVED: Final = "switchboard.cache.cost_saved"
M_RATELIMIT_HEADROOM: Final = "switchboard.ratelimit.headroom"
M_RATELIMIT_LIMIT: Final = "switchboard.ratelimit.limit"
M_COOLING_DOWN: Final = "switchboard.deployment.cooling_down"
M_IN_FLIGHT: Final = "switchboard.deployment.in_flight"
# Shared limits: how each admission was decided, and Redis lost (a fallback to local shares).
M_RATELIMIT_DECISIONS: Final = "switchboard.ratelimit.decisions"
M_RATELIMIT_FALLBACKS: Final = "switchboard.ratelimit.redis.fallbacks"
DECIDED_BY: Final = "switchboard.ratelimit.decided_by"

# Bucket boundaries the GenAI conventions advise.
DURATION_BUCKETS: Final = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)  # fmt: skip
TOKEN_BUCKETS: Final = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
)  # fmt: skip

# litellm's provider prefixes -> the conventions' well-known provider names.
PROVIDERS: Final = {
    "openai": "openai",
    "azure": "azure.ai.openai",
    "azure_ai": "azure.ai.inference",
    "anthropic": "anthropic",
    "bedrock": "aws.bedrock",
    "vertex_ai": "gcp.vertex_ai",
    "gemini": "gcp.gemini",
    "groq": "groq",
    "mistral": "mistral_ai",
    "cohere": "cohere",
    "deepseek": "deepseek",
    "perplexity": "perplexity",
    "xai": "x_ai",
    "watsonx": "ibm.watsonx.ai",
}
