"""`python -m switchboard.sim`: the simulator without the full CLI, for quick use."""

from __future__ import annotations

import argparse

from .server import run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m switchboard.sim",
        description="Serve a simulated OpenAI-compatible upstream.",
    )
    parser.add_argument(
        "--listen", default="127.0.0.1:8089", help="HOST:PORT (default %(default)s)"
    )
    parser.add_argument(
        "--profile", default="fast", help="profile for unknown models (default %(default)s)"
    )
    parser.add_argument("--profiles-file", help="YAML or JSON file of extra profiles")
    parser.add_argument(
        "--allow-fault-headers",
        action="store_true",
        help="let the x-sim-fault request header force a fault (for tests)",
    )
    args = parser.parse_args(argv)
    try:
        run(
            args.listen,
            args.profile,
            args.profiles_file,
            allow_fault_headers=args.allow_fault_headers,
        )
    except ValueError as exc:  # bad address, unknown profile, bad profiles file
        parser.exit(2, f"{parser.prog}: error: {exc}\n")


if __name__ == "__main__":
    main()
