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


def generate(out: Path, made_by: str) -> None:
    """Writes the stubs into `out` as a package of their own, replacing it whole.

    `made_by` names the script in the package's docstring; the Python client's
    generate.py calls this too, for its committed copy.
    """
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
        staging = out.with_name(out.name + ".new")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        for path in sorted(generated.iterdir()):
            text = ABSOLUTE_IMPORT.sub("from . import ", path.read_text())
            (staging / path.name).write_text(text)
        (staging / "__init__.py").write_text(
            f'"""Generated from proto/ by {made_by}; do not edit."""\n'
        )
        # Swap in one step so an interrupted run never leaves half a package.
        shutil.rmtree(out, ignore_errors=True)
        staging.rename(out)


def main() -> int:
    generate(OUT, "tools/genproto.py")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
