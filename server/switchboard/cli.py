"""`switchboard serve | sim | check-config`."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from switchboard.api.polling import prefer_poller_io
from switchboard.config import Address, ConfigError, Settings, load_settings
from switchboard.routing.strategies import check_strategy_args

DEFAULT_CONFIG = "configs/default.yaml"
DEFAULT_LISTEN = "127.0.0.1:50051"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="switchboard", description=__doc__)
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve the gRPC gateway")
    serve.add_argument("--config", default=DEFAULT_CONFIG, help="LiteLLM-format YAML config")
    serve.add_argument(
        "--listen",
        default=None,
        help=f"HOST:PORT; overrides the config (default {DEFAULT_LISTEN}); port 0 picks one",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=None,
        help="server processes sharing the port (SO_REUSEPORT); overrides the config",
    )
    # Set by the supervisor for each worker process it starts: INDEX/COUNT.
    serve.add_argument("--worker", default=None, help=argparse.SUPPRESS)

    sim = commands.add_parser("sim", help="serve the simulated OpenAI-compatible upstream")
    sim.add_argument("--listen", default="127.0.0.1:50061", help="HOST:PORT; port 0 picks one")
    sim.add_argument("--profile", default="fast", help="profile for models not named by one")
    sim.add_argument("--profiles-file", default=None, help="YAML or JSON file of extra profiles")
    sim.add_argument(
        "--allow-fault-headers",
        action="store_true",
        help="let an x-sim-fault request header force a fault (for staging tests)",
    )

    check = commands.add_parser("check-config", help="validate a config and report every problem")
    check.add_argument("path")

    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    if args.command == "check-config":
        return _check_config(args.path)
    if args.command == "sim":
        from switchboard.sim import run

        try:
            run(
                args.listen,
                args.profile,
                args.profiles_file,
                allow_fault_headers=args.allow_fault_headers,
            )
        except (ValueError, OSError) as exc:
            print(f"switchboard sim: {exc}", file=sys.stderr)
            return 2
        return 0
    # The semantic cache's matrices are small: BLAS threads of its own would only
    # compete with the event loop for the cores. Read when numpy loads, so set first.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    # Before grpc starts: its socket I/O in the completion-queue thread (api/polling.py).
    prefer_poller_io(os.environ)
    return _serve(args.config, args.listen, args.workers, args.worker, args.log_level)


# Libraries that log each upstream request (httpx and httpcore the URL, which can
# carry a key in its query) or repeat what our own log already says.
QUIET_LOGGERS = (
    "httpx",
    "httpcore",
    "LiteLLM",
    "LiteLLM Router",
    "LiteLLM Proxy",
    "aiohttp.access",
)


def configure_logging(level: str) -> None:
    """The root logger at `level`, chatty libraries at WARNING or above.

    Upstream URLs and per-request lines belong in traces, not in the server
    log; `--log-level DEBUG` does not lift them, as URLs may carry secrets.
    """
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    root = logging.getLogger()
    # Set apart from basicConfig, which changes nothing once a handler exists.
    root.setLevel(level.upper())
    floor = max(logging.WARNING, root.level)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(floor)


def _load(path: str) -> Settings | None:
    try:
        settings = load_settings(path)
        router = settings.router
        try:
            check_strategy_args(router.routing_strategy, router.routing_strategy_args)
        except ValueError as exc:
            raise ConfigError(path, [f"router_settings.routing_strategy_args: {exc}"]) from None
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return None
    return settings


def _workers_fit(path: str, settings: Settings, count: int) -> bool:
    """Whether `count` workers can serve `settings`; says why not on stderr."""
    from switchboard.workers import problems

    found = problems(settings, count)
    if found:
        print(f"{path}: cannot serve with {count} workers:", file=sys.stderr)
        for problem in found:
            print(f"  {problem}", file=sys.stderr)
    return not found


def _check_config(path: str) -> int:
    settings = _load(path)
    if settings is None or not _workers_fit(path, settings, settings.workers):
        return 1
    for ignored in settings.ignored:
        print(f"ignored: {ignored} (not applied by Switchboard)")
    for warning in settings.warnings:
        print(f"warning: {warning}")
    groups = ", ".join(f"{name} ({len(deps)})" for name, deps in settings.groups.items())
    print(f"ok: {len(settings.deployments)} deployments in groups {groups or '(none)'}")
    return 0


def _serve(
    path: str, listen: str | None, workers: int | None, worker: str | None, log_level: str
) -> int:
    import uvloop

    from switchboard.app import serve, supervise
    from switchboard.workers import parse_worker, worker_command, worker_settings

    settings = _load(path)
    if settings is None:
        return 1
    address: Address | None = None
    if listen is not None:
        host, _, port = listen.rpartition(":")
        if not host or not port.isdigit():
            print(f"--listen: expected HOST:PORT, got {listen!r}", file=sys.stderr)
            return 2
        address = Address(host.strip("[]"), int(port))
    count = settings.workers if workers is None else workers
    if not 1 <= count <= 64:
        print(f"--workers: expected 1 to 64, got {count}", file=sys.stderr)
        return 2

    def ready(port: int) -> None:
        # One machine-readable line on stdout: scripts and tests wait for it.
        print(f"switchboard: serving on {(address or settings.listen).host}:{port}", flush=True)

    if worker is not None:
        index, of = parse_worker(worker)
        mine = worker_settings(settings, index, of)
        uvloop.run(serve(mine, listen=address, on_ready=ready, worker=(index, of)))
        return 0
    if count == 1:
        uvloop.run(serve(settings, listen=address, on_ready=ready))
        return 0
    if not _workers_fit(path, settings, count):
        return 1
    return uvloop.run(
        supervise(
            settings,
            count=count,
            listen=address or settings.listen,
            command=worker_command(path, count, log_level),
            on_ready=ready,
        )
    )


if __name__ == "__main__":
    raise SystemExit(main())
