"""Which of grpc's I/O engines serves the port: iomgr's poller, chosen before grpc starts.

grpc's default EventEngine reads and writes sockets on threads of its own;
each completion then wakes grpc.aio's completion-queue thread, which wakes
the event loop. With the EventEngine's listener, client and endpoints turned
off (grpc's `GRPC_EXPERIMENTS`), iomgr's epoll poller does the socket I/O in
the completion-queue thread itself: one thread wakeup less per event. On
this project's 2-core machine (bench/compare, Switchboard's fast path)
that is about 4% more calls per second at saturation and 10-30% less CPU
per call at 300/s, with grpc's own I/O threads idle. grpc reads the
variable when its first server or channel starts, so it is set before.

An operator's own `GRPC_EXPERIMENTS` (even an empty one: grpc's defaults)
is kept as it is.
"""

from __future__ import annotations

from collections.abc import MutableMapping

VARIABLE = "GRPC_EXPERIMENTS"
POLLER_IO = "-event_engine_listener,-event_engine_for_all_other_endpoints,-event_engine_client"


def prefer_poller_io(environ: MutableMapping[str, str]) -> None:
    """Ask grpc for iomgr's poller unless `environ` says otherwise."""
    environ.setdefault(VARIABLE, POLLER_IO)
