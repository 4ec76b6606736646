"""Webhook delivery of alerts: JSON POST with retries and exponential backoff."""

from __future__ import annotations

import json
import logging
import time
import urllib.error
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
    wait = backoff_seconds
    for attempt in range(retries + 1):
        if attempt:
            sleep(wait)
            wait *= 2
        status, error = _post(url, body, timeout_seconds)
        if status is not None and 200 <= status < 300:
            logger.info("webhook delivered url=%s attempt=%d", url, attempt + 1)
            return True
        logger.warning(
            "webhook failed url=%s attempt=%d status=%s error=%s",
            url,
            attempt + 1,
            status,
            error,
        )
        if status is not None and 400 <= status < 500 and status not in (408, 429):
            break
    logger.error("webhook gave up url=%s attempts=%d", url, attempt + 1)
    return False


def _post(url: str, body: bytes, timeout: float) -> tuple[int | None, str]:
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, ""
    except urllib.error.HTTPError as exc:
        return exc.code, str(exc.reason)
    except (urllib.error.URLError, OSError) as exc:
        return None, str(getattr(exc, "reason", exc))
