"""Generate the Python stubs of the gRPC API into server/switchboard/api/pb.

protoc names generated modules after the proto package (`switchboard.v1`),
which would collide with the `switchboard` Python package itself, so the
stubs are written to a scratch directory and moved into
`switchboard.api.pb` with their imports made relative. The stubs are never
committed: `make` regenerates them whenever the proto is newer.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
OUT = ROOT / "server" / "switchboard" / "api" / "pb"
PROTOS = ["switchboard/v1/gateway.proto"]
ABSOLUTE_IMPORT = re.compile(r"^from switchboard\.v1 import ", re.MULTILINE)


def main() -> int:
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
        subprocess.run(cmd, check=True, cwd=ROOT)
        generated = Path(scratch) / "switchboard" / "v1"
        staging = OUT.with_name("pb.new")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        for path in sorted(generated.iterdir()):
            text = ABSOLUTE_IMPORT.sub("from . import ", path.read_text())
            (staging / path.name).write_text(text)
        (staging / "__init__.py").write_text(
            '"""Generated from proto/ by tools/genproto.py; do not edit."""\n'
        )
        # Swap in one step so an interrupted run never leaves half a package.
        shutil.rmtree(OUT, ignore_errors=True)
        staging.rename(OUT)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
