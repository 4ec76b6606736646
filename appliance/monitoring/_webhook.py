"""Webhook delivery of alerts: JSON POST with retries and exponential backoff.

A URL may carry credentials as ``http://USER:PASSWORD@HOST/...``. They are
sent as HTTP basic authentication, because many receivers (reverse proxies,
small alert relays) take it and the URL is the only webhook setting. Rejecting
them would leave such a receiver out of reach. Logs show the URL with its
credentials, query values and path after the first segment masked.
"""

from __future__ import annotations

import base64
import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)


def send_webhook(
    url: str,
    payload: dict[str, Any],
    retries: int = 3,
    backoff_seconds: float = 1.0,
    timeout_seconds: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """POST `payload` as JSON to `url` until a 2xx answer or the retries run out.

    Waits `backoff_seconds` before the first retry and doubles the wait at each
    further one. A 4xx answer other than 408 and 429 is not retried, since the
    same body would be rejected again.

    Returns:
        True when the receiver accepted the alert, False when every attempt
        failed; failures are logged, never raised, so an unreachable receiver
        cannot stop monitoring.
    """
    body = json.dumps(payload).encode()
    logged_url = redact_url(url)
    target, headers = _split_credentials(url)
    wait = backoff_seconds
    for attempt in range(retries + 1):
        if attempt:
            sleep(wait)
            wait *= 2
        status, error = _post(target, headers, body, timeout_seconds)
        if status is not None and 200 <= status < 300:
            logger.info("webhook delivered url=%s attempt=%d", logged_url, attempt + 1)
            return True
        logger.warning(
            "webhook failed url=%s attempt=%d status=%s error=%s",
            logged_url,
            attempt + 1,
            status,
            error,
        )
        if status is not None and 400 <= status < 500 and status not in (408, 429):
            break
    logger.error("webhook gave up url=%s attempts=%d", logged_url, attempt + 1)
    return False


def redact_url(url: str) -> str:
    """Return `url` as logged: scheme, host, port and the first path segment.

    The user and password, the query values and every path segment after the
    first are replaced by ``***``, and the fragment is left out. Some receivers
    take their secret in the later segments of the path, as in
    ``/services/T0/B0/SECRET``.

    NOTE: a secret in the first path segment (``/SECRET``) is still logged,
    because that segment is kept to tell receivers on one host apart.

    >>> redact_url("http://alice:pw@127.0.0.1:8080/hooks/T0/abc?token=abc&x=1#top")
    'http://***@127.0.0.1:8080/hooks/***?token=***&x=***'
    """
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = "&".join(
        f"{key}=***"
        for key, _ in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    )
    path = _masked_path(parts.path)
    return urllib.parse.urlunsplit((parts.scheme, netloc, path, query, ""))


def _masked_path(path: str) -> str:
    """Return `path` with every segment after the first replaced by one ``***``.

    >>> _masked_path("/services/T0/B0/SECRET")
    '/services/***'
    >>> _masked_path("/hook/")
    '/hook/'
    """
    first, _, rest = path.lstrip("/").partition("/")
    if not rest:
        return path
    return f"/{first}/***"


def _split_credentials(url: str) -> tuple[str, dict[str, str]]:
    """Return `url` without its user and password, and the request headers.

    The credentials, percent-decoded, become a basic ``Authorization`` header.
    """
    headers = {"Content-Type": "application/json"}
    parts = urllib.parse.urlsplit(url)
    if parts.username is None:
        return url, headers
    user = urllib.parse.unquote(parts.username)
    password = urllib.parse.unquote(parts.password or "")
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    headers["Authorization"] = f"Basic {token}"
    netloc = parts.netloc.rsplit("@", 1)[1]
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc)), headers


def _post(
    url: str, headers: dict[str, str], body: bytes, timeout: float
) -> tuple[int | None, str]:
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, ""
    except urllib.error.HTTPError as exc:
        return exc.code, str(exc.reason)
    except (urllib.error.URLError, OSError) as exc:
        return None, str(getattr(exc, "reason", exc))
