"""A typed Python client for Switchboard, the LLM gateway served over gRPC.

    from switchboard_client import Client

    with Client("localhost:50051", api_key="sk-...") as client:
        print(client.complete("chat", [{"role": "user", "content": "Hi"}]).text)

`AsyncClient` has the same methods for asyncio. Every failed call raises a
`SwitchboardError` subclass carrying the gateway's ErrorInfo reason and
metadata (and RetryInfo's delay as `retry_after`).
"""

from ._aio import AsyncClient, AsyncStream
from ._client import Client, Stream
from ._errors import (
    Cancelled,
    DeadlineExceeded,
    FailedPrecondition,
    FieldViolation,
    Internal,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    QuotaViolation,
    RateLimited,
    SwitchboardError,
    Unauthenticated,
    Unavailable,
    Unimplemented,
)
from ._request import CompleteParams
from ._types import (
    Attempt,
    BudgetStatus,
    Cache,
    CacheHit,
    CacheStats,
    CallStats,
    Completion,
    Deployment,
    Message,
    ModelGroup,
    ModelList,
    Routing,
    Spender,
    Stats,
    StreamFinal,
    Tool,
    ToolCall,
    Usage,
)

__version__ = "0.1.0"

__all__ = [
    "AsyncClient",
    "AsyncStream",
    "Attempt",
    "BudgetStatus",
    "Cache",
    "CacheHit",
    "CacheStats",
    "CallStats",
    "Cancelled",
    "Client",
    "CompleteParams",
    "Completion",
    "DeadlineExceeded",
    "Deployment",
    "FailedPrecondition",
    "FieldViolation",
    "Internal",
    "InvalidArgument",
    "Message",
    "ModelGroup",
    "ModelList",
    "NotFound",
    "PermissionDenied",
    "QuotaViolation",
    "RateLimited",
    "Routing",
    "Spender",
    "Stats",
    "Stream",
    "StreamFinal",
    "SwitchboardError",
    "Tool",
    "ToolCall",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "Usage",
    "__version__",
]
