"""Logging set-up: one line per event, with key=value context.

Modules log through `logging.getLogger(__name__)` and pass context as
`key=value` pairs in the message. Handlers are configured here, once, by the
entry point; under systemd stderr goes to the journal, so no timestamp is added
there.
"""

from __future__ import annotations

import logging
import os
import sys


def configure_logging(level: str = "INFO") -> None:
    """Send log records to stderr, one line each.

    Args:
        level: Name of the lowest level to show, such as ``INFO`` or ``DEBUG``.
    """
    under_journald = "JOURNAL_STREAM" in os.environ
    fmt = "%(levelname)s %(name)s %(message)s"
    if not under_journald:
        fmt = "%(asctime)s " + fmt
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("uvicorn.access", "apscheduler"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
