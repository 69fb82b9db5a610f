"""`make bench-validation`: the CPU one request at the size limit costs to validate.

The amplification issue's bound: any request the server accepts to parse (up
to `switchboard.server.max_message_bytes`, 8 MiB by default) is validated in
under 50 ms of CPU, so no single request can hold the event loop. The shapes
are the worst found (tests/unit/test_convert_limits.py builds them, and
bounds them loosely there); each is measured best of 7 with
time.process_time, parsing excluded (upb's C, bounded by size alone).

    python -m bench.validation
"""

from __future__ import annotations

import contextlib
import math
import sys
import time

from switchboard.api import convert
from switchboard.api.pb import gateway_pb2 as pb
from switchboard.errors import InvalidRequest
from tests.unit.test_convert_limits import SIZE_LIMIT, _worst_shapes

TARGET_MS = 50.0
RUNS = 7


def _best_ms(request: pb.CompleteRequest) -> float:
    best = math.inf
    for _ in range(RUNS):
        started = time.process_time()
        with contextlib.suppress(InvalidRequest):
            convert.request_from_proto(request)
        best = min(best, time.process_time() - started)
    return best * 1000


def main() -> int:
    print(f"validation CPU at the size limit ({SIZE_LIMIT / 2**20:.0f} MiB), best of {RUNS}")
    worst = 0.0
    for name, build in sorted(_worst_shapes().items()):
        data = build().SerializeToString()
        request = convert.decode(pb.CompleteRequest, data)
        ms = _best_ms(request)
        worst = max(worst, ms)
        print(f"  {ms:7.2f} ms  {len(data) / 2**20:5.2f} MiB  {name}")
    verdict = "under" if worst < TARGET_MS else "OVER"
    print(f"worst {worst:.2f} ms: {verdict} the {TARGET_MS:.0f} ms target")
    return 0


if __name__ == "__main__":
    sys.exit(main())
