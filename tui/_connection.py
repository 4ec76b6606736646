"""State of the connection to the daemon, shown on the app's top line."""

from __future__ import annotations

import enum
import time

from appliance.errors import DaemonError
from tui._client import DaemonUnreachableError, KeyRejectedError, NotApplianceError


class Connection(enum.Enum):
    """State of the daemon's address, as the last finished call found it."""

    CONNECTING = "connecting"
    """No call has finished yet."""
    CONNECTED = "connected"
    """The daemon responded, with data or with an error of its own."""
    KEY_REJECTED = "key rejected"
    """The daemon responded with a 401: no API key sent, or an invalid one."""
    NOT_APPLIANCE = "not appliance"
    """Something responded at the address, but not as the appliance daemon."""
    DOWN = "down"
    """No response arrived."""


FAULTS = frozenset({Connection.DOWN, Connection.NOT_APPLIANCE})
"""States in which the UI has no working daemon at all."""


def connection_after(exc: BaseException) -> Connection | None:
    """Return the state that the failed call `exc` shows, or None if unknown.

    An exception that is not a `DaemonError` is a fault of the UI and shows
    nothing about the daemon.
    """
    if isinstance(exc, DaemonUnreachableError):
        return Connection.DOWN
    if isinstance(exc, KeyRejectedError):
        return Connection.KEY_REJECTED
    if isinstance(exc, NotApplianceError):
        return Connection.NOT_APPLIANCE
    if isinstance(exc, DaemonError):
        return Connection.CONNECTED
    return None


def top_line(
    state: Connection,
    base_url: str,
    down_since: float | None,
    refresh_seconds: float,
    key_sent: bool,
) -> str:
    """Return the app's top line for `state` of the daemon at `base_url`."""
    retry = f"retrying every {refresh_seconds:g} s"
    if state is Connection.CONNECTING:
        return f"edge-appliance · {base_url} · connecting… · ? help"
    if state is Connection.CONNECTED:
        return f"edge-appliance · {base_url} · connected · ? help"
    if state is Connection.KEY_REJECTED:
        problem = "API key rejected" if key_sent else "API key missing"
        return (
            f"edge-appliance · {base_url} · connected, {problem}: the daemon "
            "requires a valid key; set APPLIANCE_API_KEY or pass --api-key, "
            "then restart"
        )
    if state is Connection.NOT_APPLIANCE:
        return (
            f"NOT CONNECTED: {base_url} responds, but not as the appliance "
            f"daemon; check --url; {retry}"
        )
    since = time.strftime("%H:%M:%S", time.localtime(down_since or time.time()))
    return f"DAEMON DOWN since {since} at {base_url}: {retry}; screens show stale data"
