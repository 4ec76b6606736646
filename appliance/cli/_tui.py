"""Terminal UI command: ``tui``."""

from __future__ import annotations

import argparse
import logging
import math
import sys
from pathlib import Path
from typing import Any

from appliance.cli._output import add_command
from appliance.config import Config


def register(commands: Any) -> None:
    """Add the ``tui`` command."""
    tui = add_command(
        commands, "tui", _tui, "open the operator's terminal UI of the running daemon"
    )
    # The daemon may run elsewhere (--url), so the home is not checked.
    tui.set_defaults(skip_home_check=True)
    tui.add_argument(
        "--url",
        type=_url_argument,
        help="daemon address such as http://127.0.0.1:8765 (default: the daemon "
        "running on [storage] home, else [server] host and port)",
    )
    tui.add_argument(
        "--api-key",
        help="API key sent as a bearer token (default: APPLIANCE_API_KEY); "
        "a key with role reader shows every screen, and operator also "
        "promotes, rolls back and retrains",
    )
    tui.add_argument(
        "--refresh",
        type=_refresh_seconds,
        default=2.0,
        help="seconds between two refreshes of the screen on show (default: 2)",
    )
    tui.add_argument("--light", action="store_true", help="start with the light theme")
    tui.add_argument(
        "--log-file",
        type=Path,
        help="file that receives the UI's log; without it the log is discarded, "
        "because lines on stderr would overwrite the screen",
    )


def daemon_url(config: Config, url: str | None) -> str:
    """Return `url`, else the address of the daemon running on the home, else
    the ``[server]`` address of the configuration."""
    if url:
        return url
    from appliance.homelock import DaemonAddress, read_address

    address = read_address(config.storage.home)
    if address is not None and address.port:
        return address.base_url
    return DaemonAddress(0, config.server.host, config.server.port).base_url


def _url_argument(text: str) -> str:
    from tui import check_daemon_url

    try:
        return check_daemon_url(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _refresh_seconds(text: str) -> float:
    """Parse ``--refresh``: a finite number of seconds above 0."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not 0 < seconds < math.inf:
        raise argparse.ArgumentTypeError(
            f"invalid refresh {text!r}; use a number of seconds above 0, such as 2"
        )
    return seconds


def _tui(config: Config, args: argparse.Namespace) -> int:
    from tui import EXIT_NO_TERMINAL, ApplianceApp, UiClient, terminal_problem

    problem = terminal_problem()
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_NO_TERMINAL
    _log_to_file(args.log_file)
    api_key = args.api_key or config.api_key
    client = UiClient(daemon_url(config, args.url), api_key=api_key)
    ApplianceApp(client, refresh_seconds=args.refresh, light=args.light).run()
    return 0


def _log_to_file(path: Path | None) -> None:
    root = logging.getLogger()
    handler: logging.Handler
    if path is None:
        handler = logging.NullHandler()
    else:
        handler = logging.FileHandler(path, encoding="utf-8")
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
        )
    root.handlers[:] = [handler]
