"""SIGHUP outside the daemon's reload handler.

The default action of SIGHUP ends the process. The daemon reloads its
configuration on SIGHUP only while its event loop runs the ``handle_sighup``
component, yet ``systemctl reload`` may send the signal while the daemon is
still starting or already stopping. `defer_hangups` records such a signal
instead, so the process lives on. The daemon reloads a signal recorded
during the start once its handler is in place. It ignores one recorded
during the stop, because it exits without reading the configuration again.

This module imports only the standard library, so ``appliance serve`` can
install the handler before it imports the daemon.
"""

from __future__ import annotations

import signal
from typing import Any

_pending = False


def defer_hangups() -> None:
    """Record SIGHUP instead of ending the process (main thread only)."""
    signal.signal(signal.SIGHUP, _record_hangup)


def take_deferred_hangup() -> bool:
    """Return whether a SIGHUP was recorded since the last call, and clear it."""
    global _pending
    pending, _pending = _pending, False
    return pending


def _record_hangup(signum: int, frame: Any) -> None:
    global _pending
    _pending = True
