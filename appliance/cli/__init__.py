"""Command-line interface: ``appliance COMMAND``.

Each area of the appliance adds its commands in a module of this package that
defines ``register(commands)``; `COMMAND_MODULES` lists them in help order.

Exit status: 0 on success, 1 when an `ApplianceError` explains what went wrong
(printed as one line on stderr), 2 for bad usage, 141 when the reader of the
output closed the pipe early (as ``appliance ... | head`` does).

Every command except those that may start a new home (``serve``, ``ingest``,
``keys create``, ``tui``) exits with status 1 when the home folder does not
exist, and warns on stderr when the home has no catalog, so a mistyped
``APPLIANCE_HOME`` does not read as an empty appliance.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from appliance.cli import (
    _access,
    _daemon,
    _data,
    _disk,
    _erase,
    _explain,
    _models,
    _monitoring,
    _orphans,
    _predictions,
    _retrain,
    _runs,
    _tui,
)
from appliance.config import DEFAULT_CONFIG, LOG_LEVELS, Config, load_config
from appliance.errors import ApplianceError, ConfigError
from appliance.logs import configure_logging

COMMAND_MODULES = (
    _data,
    _erase,
    _models,
    _explain,
    _runs,
    _predictions,
    _monitoring,
    _retrain,
    _daemon,
    _disk,
    _orphans,
    _access,
    _tui,
)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command and return its exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return 2
    try:
        config = load_config(args.config)
        configure_logging(args.log_level or config.log_level)
        if not getattr(args, "skip_home_check", False):
            _check_home(config)
        status = int(args.handler(config, args) or 0)
        sys.stdout.flush()
        return status
    except ApplianceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # Later writes, including the flush at exit, go to /dev/null so Python
        # does not print a second BrokenPipeError while shutting down.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


def _check_home(config: Config) -> None:
    """Reject a home folder that does not exist, and warn about one without a
    catalog, naming the home and the setting it came from.

    Raises:
        ConfigError: The home folder does not exist.
    """
    home = config.storage.home
    if not home.is_dir():
        raise ConfigError(
            f"appliance home {home} (from {config.home_origin}) does not exist; "
            "fix that setting, or run 'appliance ingest' or 'appliance serve' "
            "to start a new home there"
        )
    if not (home / "catalog.duckdb").exists():
        print(
            f"warning: appliance home {home} (from {config.home_origin}) has no "
            "catalog.duckdb, so it is read as empty; check the setting if you "
            "expected data there",
            file=sys.stderr,
        )


def build_parser() -> argparse.ArgumentParser:
    """Build the parser of every command."""
    parser = argparse.ArgumentParser(
        prog="appliance", description="Edge MLOps appliance: ingest, train, serve."
    )
    parser.add_argument(
        "--config",
        help="configuration file (default: APPLIANCE_CONFIG, else "
        f"{DEFAULT_CONFIG}, not a config.toml in the current folder)",
    )
    parser.add_argument(
        "--log-level",
        type=_log_level,
        help=f"lowest log level shown: one of {', '.join(LOG_LEVELS)}",
    )
    commands = parser.add_subparsers(metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(commands)
    return parser


def _log_level(text: str) -> str:
    """Parse a ``--log-level`` value: a level name in any case."""
    if text.upper() not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(
            f"invalid log level {text!r}; use one of {', '.join(LOG_LEVELS)}"
        )
    return text.upper()
