"""The check that the terminal UI has a terminal to draw on and read keys from."""

from __future__ import annotations

import sys
from typing import TextIO

EXIT_NO_TERMINAL = 2
"""Exit status of ``appliance tui`` started without a terminal, as for bad usage."""


def terminal_problem() -> str | None:
    """Return why the UI cannot run in this process, or None when it can.

    Textual reads keys from stdin and draws on stderr, and stdout must not be
    a pipe either, as in ``appliance tui | tail``. Started without them, the
    app draws into the pipe and runs until it is killed, using about 70 % of a
    CPU core (measured with Textual 8.2.8 for 12 s with stdin on /dev/null).
    The test pilot (`App.run_test`) needs no terminal and skips this check.
    """
    streams = {
        "stdin": sys.__stdin__,
        "stdout": sys.__stdout__,
        "stderr": sys.__stderr__,
    }
    missing = [name for name, stream in streams.items() if not _is_terminal(stream)]
    if not missing:
        return None
    if len(missing) == 1:
        which = f"{missing[0]} is not a terminal"
    else:
        which = f"{', '.join(missing[:-1])} and {missing[-1]} are not terminals"
    return (
        f"appliance tui needs an interactive terminal, but {which} (redirected to "
        "a pipe, a file or /dev/null). Run it in a terminal without redirecting "
        "its input or output; scripts can call the other appliance commands or "
        "the daemon's HTTP API instead"
    )


def _is_terminal(stream: TextIO | None) -> bool:
    if stream is None:
        return False
    try:
        return stream.isatty()
    except ValueError:
        # A closed stream raises ValueError.
        return False
