"""Daemon commands: ``serve``."""

from __future__ import annotations

import argparse
from typing import Any

from appliance.cli._output import add_command
from appliance.config import Config


def register(commands: Any) -> None:
    """Add the daemon commands."""
    serve = add_command(commands, "serve", _serve, "run the daemon")
    serve.add_argument("--host", help="address to bind (default: [server] host)")
    serve.add_argument("--port", type=int, help="port to bind (default: [server] port)")


def _serve(config: Config, args: argparse.Namespace) -> None:
    from appliance.daemon import serve

    serve(config, args.host, args.port)
