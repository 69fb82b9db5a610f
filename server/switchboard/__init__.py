"""Switchboard: an LLM gateway served over gRPC.

Run it with `switchboard serve`; the API is `switchboard.v1.Gateway`
(proto/switchboard/v1/gateway.proto).
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
