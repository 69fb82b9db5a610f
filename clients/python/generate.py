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

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
PROTO_ROOT = REPO / "proto"
OUT = HERE / "src" / "switchboard_client" / "_pb"
PROTOS = ["switchboard/v1/gateway.proto"]
ABSOLUTE_IMPORT = re.compile(r"^from switchboard\.v1 import ", re.MULTILINE)
INIT = '"""Generated from proto/ by clients/python/generate.py; do not edit."""\n'


def generate(out: Path) -> None:
    """Writes the stubs into `out`, replacing it whole."""
    bin_dir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory() as scratch:
        cmd = [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{PROTO_ROOT}",
            f"--python_out={scratch}",
            f"--grpc_python_out={scratch}",
            f"--plugin=protoc-gen-mypy={bin_dir / 'protoc-gen-mypy'}",
            f"--plugin=protoc-gen-mypy_grpc={bin_dir / 'protoc-gen-mypy_grpc'}",
            f"--mypy_out={scratch}",
            f"--mypy_grpc_out={scratch}",
            *PROTOS,
        ]
        subprocess.run(cmd, check=True, cwd=REPO)
        generated = Path(scratch) / "switchboard" / "v1"
        staging = out.with_name(out.name + ".new")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        for path in sorted(generated.iterdir()):
            text = ABSOLUTE_IMPORT.sub("from . import ", path.read_text())
            (staging / path.name).write_text(text)
        (staging / "__init__.py").write_text(INIT)
        # Swap in one step so an interrupted run never leaves half a package.
        shutil.rmtree(out, ignore_errors=True)
        staging.rename(out)


def main() -> int:
    generate(OUT)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
