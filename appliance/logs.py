"""Logging set-up: one line per event, with key=value context.

Modules log through `logging.getLogger(__name__)` and pass context as
`key=value` pairs in the message. Handlers are configured here, once, by the
entry point; under systemd stderr goes to the journal, so no timestamp is added
there.

`KeyValueFormatter` applies one quoting rule to every line: the value of a
``key=%s`` pair that contains a space, a quote, an equals sign or a line break,
or is empty, is written as a JSON string, such as ``error="cannot open the
catalog"``. Other values and free text after the pairs are written as they are.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from typing import Any

_PLACEHOLDER = re.compile(
    r"%(?:\([^)]*\))?[-#0 +]*(?:\*|\d+)?(?:\.(?:\*|\d+))?[a-zA-Z%]"
)
_KEY_BEFORE = re.compile(r"[A-Za-z0-9_.\]]=$")
_NEEDS_QUOTES = re.compile(r"[\s\"=]")


def quoted(text: str) -> str:
    """Return `text` as a ``key=value`` value: a JSON string when it contains
    a space, a quote, an equals sign or a line break, or is empty.

    A text that is a JSON string already, as `appliance.serving` quotes a
    request's error, is returned as it is.
    """
    if _is_json_string(text):
        return text
    if not text or _NEEDS_QUOTES.search(text):
        return json.dumps(text, ensure_ascii=False)
    return text


def _is_json_string(text: str) -> bool:
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        return False
    try:
        return isinstance(json.loads(text), str)
    except ValueError:
        return False


class KeyValueFormatter(logging.Formatter):
    """Formatter that quotes the values of ``key=%s`` pairs by `quoted`."""

    def format(self, record: logging.LogRecord) -> str:
        args = record.args
        if isinstance(args, tuple) and args and isinstance(record.msg, str):
            record.args = _quoted_args(record.msg, args)
            try:
                return super().format(record)
            finally:
                record.args = args
        return super().format(record)


def _quoted_args(msg: str, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """Return `args` with the value of each ``key=%s`` pair of `msg` quoted."""
    result = list(args)
    index = 0
    for match in _PLACEHOLDER.finditer(msg):
        if match.group() == "%%":
            continue
        if index >= len(result):
            break
        before = msg[: match.start()]
        if match.group() == "%s" and _KEY_BEFORE.search(before):
            result[index] = quoted(str(result[index]))
        index += 1
    return tuple(result)


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
    handler.setFormatter(KeyValueFormatter(fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("uvicorn.access", "apscheduler"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
