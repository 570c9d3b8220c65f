"""Command line entry point: ``python -m airflow_provider_dintero.emulator --port 8089``.

Prints ``Dintero emulator listening on http://127.0.0.1:PORT`` and then one JSON line with the
partner id, client id and secret (and the merchant credentials), and serves until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import ssl
import sys
import threading
from typing import TYPE_CHECKING

from airflow_provider_dintero.emulator.seed import EmulatorSeed
from airflow_provider_dintero.emulator.server import DinteroEmulator, resolve_loopback_host

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import FrameType


def build_parser() -> argparse.ArgumentParser:
    """The CLI argument parser."""
    parser = argparse.ArgumentParser(
        prog="python -m airflow_provider_dintero.emulator", description="Run the Dintero API emulator."
    )
    parser.add_argument("--port", type=int, default=0, help="TCP port (0 = any free port)")
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind (loopback only)")
    parser.add_argument("--merchants", type=int, default=None, help="number of seeded merchants (default 3)")
    parser.add_argument("--seed-file", default=None, help="JSON file with EmulatorSeed fields")
    parser.add_argument(
        "--token-lifetime", type=int, default=None, help="expires_in of tokens (default 14400)"
    )
    parser.add_argument("--tls-cert", default=None, help="serve https with this PEM certificate chain")
    parser.add_argument("--tls-key", default=None, help="the certificate's PEM private key")
    parser.add_argument("--name", default=None, help="host name of the base URL (e.g. api.dintero.test)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the emulator until SIGTERM or SIGINT.

    :param argv: command line arguments (default ``sys.argv[1:]``).
    """
    args = build_parser().parse_args(argv)
    try:
        resolve_loopback_host(args.host)
        seed = EmulatorSeed.from_file(args.seed_file) if args.seed_file else EmulatorSeed()
        if args.merchants is not None:
            seed = dataclasses.replace(seed, merchants=args.merchants)
        tls = None
        if args.tls_cert:
            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls.load_cert_chain(args.tls_cert, args.tls_key)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    defaults = {} if args.token_lifetime is None else {"token_lifetime": args.token_lifetime}
    emu = DinteroEmulator(
        seed=seed, host=args.host, port=args.port, settings_defaults=defaults, tls=tls, name=args.name
    )
    try:
        emu.start()
    except OSError as exc:
        print(f"error: cannot bind {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    try:
        print(f"Dintero emulator listening on {emu.base_url}", flush=True)
        print(json.dumps(emu.state()), flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        emu.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
