"""Generate the client's own stubs of the gRPC API into src/switchboard_client/_pb.

The client never imports the server package, so it carries its own stubs.
They are committed (as the Go and TypeScript stubs are) so that
`pip install ./clients/python` needs no grpcio-tools; tests/test_client_stubs.py
fails when they differ from a fresh generation.

protoc names modules after the proto package (`switchboard.v1`), so the stubs
are generated into a scratch directory, moved under `switchboard_client._pb`
and their imports made relative. `generate(out)` writes anywhere, so the
staleness test can compare a fresh run with the committed files.

    .venv/bin/python clients/python/generate.py
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "src" / "switchboard_client" / "_pb"
# The server's generator (tools/genproto.py) does the work: one recipe for both copies.
sys.path.insert(0, str(HERE.parent.parent / "tools"))

from genproto import generate as _generate  # noqa: E402


def generate(out: Path) -> None:
    """Writes the stubs into `out`, replacing it whole."""
    _generate(out, "clients/python/generate.py")


def main() -> int:
    generate(OUT)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
