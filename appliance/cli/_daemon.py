"""Daemon commands: ``serve``."""

from __future__ import annotations

import argparse
from typing import Any

from appliance.cli._output import add_command
from appliance.config import Config
from appliance.hangup import defer_hangups


def register(commands: Any) -> None:
    """Add the daemon commands."""
    serve = add_command(commands, "serve", _serve, "run the daemon")
    serve.set_defaults(skip_home_check=True)
    serve.add_argument("--host", help="address to bind (default: [server] host)")
    serve.add_argument(
        "--port", type=_port, help="port to bind (default: [server] port)"
    )


def _port(text: str) -> int:
    """Parse a TCP port number for argparse."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid port {text!r}; use 0..65535"
        ) from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"invalid port {port}; use 0..65535")
    return port


def _serve(config: Config, args: argparse.Namespace) -> None:
    # Importing the daemon takes most of a second, and SIGHUP would end the
    # process meanwhile; the daemon reloads a recorded one once it runs.
    defer_hangups()
    from appliance.daemon import serve

    serve(config, args.host, args.port)
