"""Client of the running daemon, for commands that must not open the catalog.

While a daemon runs it is the only writer of the catalog, and DuckDB then
refuses other processes even a read-only connection. A command therefore calls
`find_daemon` first: when it returns a client, the command goes through the
daemon's HTTP API; when it returns None, no daemon holds the home and the
command opens the catalog itself. Only the standard library is used, so the
CLI stays quick to start.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from appliance.errors import ApplianceError, DaemonError
from appliance.homelock import DaemonAddress, file_sha256, read_address

logger = logging.getLogger(__name__)

START_WAIT_SECONDS = 60.0
"""How long a call retries refused connections while a daemon starts."""
_POLL_SECONDS = 0.1
DEFAULT_TIMEOUT_SECONDS = 30.0
LONG_TIMEOUT_SECONDS = 6 * 3600.0
"""Timeout of commands that run as long as the work, such as training."""


class DaemonClient:
    """JSON calls to one running daemon.

    Args:
        address: Where the daemon listens, from its lock file.
        api_key: Sent as a bearer token when set.
    """

    def __init__(self, address: DaemonAddress, api_key: str | None = None) -> None:
        self.address = address
        self.base_url = address.base_url
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def get(
        self,
        path: str,
        params: dict[str, Any] | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        refused_wait: float = START_WAIT_SECONDS,
    ) -> Any:
        """Send a GET and return the decoded JSON body.

        Args:
            path: Path such as ``/v1/admin/runs``.
            params: Query parameters; None values are left out.
            timeout: Seconds to wait for the response.
            refused_wait: Seconds to retry a refused connection, which a
                starting daemon gives until its startup is done.

        Raises:
            DaemonError: The daemon cannot be reached or returned an error status.
        """
        query = {k: _param(v) for k, v in (params or {}).items() if v is not None}
        url = self.base_url + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        request = urllib.request.Request(url, headers=self._headers, method="GET")
        return self._send(request, timeout, refused_wait)

    def post(
        self, path: str, body: Any, timeout: float = DEFAULT_TIMEOUT_SECONDS
    ) -> Any:
        """Send a JSON POST and return the decoded JSON body.

        Raises:
            DaemonError: The daemon cannot be reached or returned an error status.
        """
        request = urllib.request.Request(
            self.base_url + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", **self._headers},
            method="POST",
        )
        return self._send(request, timeout)

    def _send(
        self,
        request: urllib.request.Request,
        timeout: float,
        refused_wait: float = START_WAIT_SECONDS,
    ) -> Any:
        logger.debug("daemon call method=%s url=%s", request.method, request.full_url)
        # A starting daemon has bound its port but accepts connections only
        # once its startup is done, so refused connections are retried.
        deadline = time.monotonic() + refused_wait
        while True:
            try:
                with urllib.request.urlopen(request, timeout=timeout) as response:
                    return json.loads(response.read() or b"null")
            except urllib.error.HTTPError as exc:
                raise DaemonError(_error_message(exc), status=exc.code) from None
            except urllib.error.URLError as exc:
                refused = isinstance(exc.reason, ConnectionRefusedError)
                if not refused or time.monotonic() > deadline:
                    raise self._unreachable(request, exc.reason, refused) from None
            except (TimeoutError, ConnectionError) as exc:
                raise self._unreachable(request, exc) from None
            time.sleep(_POLL_SECONDS)

    def _unreachable(
        self, request: urllib.request.Request, reason: Any, refused: bool = False
    ) -> DaemonError:
        return DaemonError(
            f"the daemon (pid {self.address.pid}) at {self.base_url} did not "
            f"answer {request.method} {request.selector}: {reason}; check "
            "'journalctl -u appliance' or the daemon's log",
            refused=refused,
        )


def find_daemon(
    home: Path, config: Path | None, api_key: str | None
) -> DaemonClient | None:
    """Return a client of the daemon running on `home`, or None if none runs.

    The client sends `api_key` with every call, when it is set.

    A daemon that is starting is waited for until it has bound its port.
    A warning is logged when `config`, the command's configuration file, is
    not the file the daemon runs with or has changed since the daemon read it,
    because the daemon carries out the command with its own settings.

    Raises:
        DaemonError: A daemon holds the home but did not bind a port in time.
    """
    address = read_address(home)
    if address is None:
        return None
    deadline = time.monotonic() + START_WAIT_SECONDS
    while address.port == 0:
        if time.monotonic() > deadline:
            raise DaemonError(
                f"the daemon (pid {address.pid}) holds {home} but has not started "
                f"listening after {START_WAIT_SECONDS:.0f} s; check its log"
            )
        time.sleep(_POLL_SECONDS)
        address = read_address(home)
        if address is None:
            return None
    if config is not None:
        _warn_if_config_differs(address, config)
    return DaemonClient(address, api_key)


def _warn_if_config_differs(address: DaemonAddress, config: Path) -> None:
    """Warn when the daemon at `address` does not run with `config` as it is."""
    if address.config is None:
        return
    reload = f"kill -HUP {address.pid}, or systemctl reload appliance"
    if Path(address.config) != config.resolve():
        logger.warning(
            "the daemon (pid %d) runs with %s, not %s, and carries out this "
            "command with its settings; to use %s, copy it to %s and reload the "
            "daemon (%s)",
            address.pid,
            address.config,
            config,
            config,
            address.config,
            reload,
        )
    elif address.config_sha256 != file_sha256(config):
        logger.warning(
            "%s changed after the daemon (pid %d) read it, and the daemon carries "
            "out this command with the settings it read; reload it to apply the "
            "change (%s)",
            config,
            address.pid,
            reload,
        )


def _param(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def _error_message(exc: urllib.error.HTTPError) -> str:
    """Return the message of the daemon's error response `exc`.

    A 4xx response to an `ApplianceError`, such as an unknown name, a
    conflict or an invalid value, carries the message that the command
    prints without a daemon, so that message is returned unchanged. Other
    responses get a prefix, the status and the request id: those of the
    access gate, of Litestar's router and parameter checks, and every 5xx.
    The request id names the daemon's log lines of the request, which an
    internal error (HTTP 500) leaves as its only detail.
    """
    try:
        body = json.loads(exc.read())
        message = body.get("error") or body.get("detail")
        request_id = body.get("request_id")
        kind = body.get("type")
    except (ValueError, AttributeError, OSError):
        message = request_id = kind = None
    user_error = isinstance(kind, str) and kind in _USER_ERROR_TYPES
    if isinstance(message, str) and exc.code < 500 and user_error:
        return message
    status = f"HTTP {exc.code}"
    if isinstance(request_id, str):
        status += f", request_id {request_id}"
    return f"the daemon rejected the request: {message or exc.reason} ({status})"


def _user_error_types() -> frozenset[str]:
    """Return the class names of the `ApplianceError` tree of `appliance.errors`.

    Subclasses defined in other modules, such as the rescore route's
    `RescoreError`, are left out, so the result does not depend on which
    modules the command imported.
    """
    found: set[str] = set()
    pending: list[type[ApplianceError]] = [ApplianceError]
    while pending:
        kind = pending.pop()
        if kind.__module__ == ApplianceError.__module__:
            found.add(kind.__name__)
        pending.extend(kind.__subclasses__())
    return frozenset(found)


_USER_ERROR_TYPES = _user_error_types()
"""Values of the ``type`` field of an error response for an error that the
appliance raised on purpose, as opposed to one of Litestar or the access gate."""
