"""A small HTTP client for the daemon's admin API, used by state-changing commands.

DuckDB lets one process write the catalog, so while the daemon runs, commands
that change what it serves ask the daemon to make the change. When nothing
listens on ``[server] host:port``, the command writes the catalog itself.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from typing import Any

from appliance.config import Config
from appliance.errors import (
    ApplianceError,
    IntegrityError,
    NotFoundError,
    RegistryError,
    StorageError,
)

logger = logging.getLogger(__name__)

_TIMEOUT_SECONDS = 60.0
_ERRORS: dict[int, type[ApplianceError]] = {
    404: NotFoundError,
    409: RegistryError,
    503: StorageError,
}


def post_to_daemon(config: Config, path: str, body: dict[str, Any]) -> Any | None:
    """POST `body` as JSON to the running daemon and return its JSON answer.

    Returns:
        The decoded response, or None when no daemon listens on the address.

    Raises:
        ApplianceError: The daemon rejected the request; the message is the
            daemon's.
    """
    host = config.server.host
    url = f"http://{host}:{config.server.port}{path}"
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=_TIMEOUT_SECONDS) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        message = _error_message(exc)
        error = IntegrityError if "sha256" in message else _ERRORS.get(exc.code)
        raise (error or ApplianceError)(f"the daemon at {url} rejected it: {message}")
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, ConnectionRefusedError):
            logger.debug("daemon not running url=%s", url)
            return None
        raise StorageError(f"cannot reach the daemon at {url}: {exc.reason}") from exc


def _error_message(exc: urllib.error.HTTPError) -> str:
    raw = exc.read()
    try:
        return str(json.loads(raw).get("error", raw.decode(errors="replace")))
    except (ValueError, AttributeError):
        return raw.decode(errors="replace") or f"HTTP {exc.code}"
