"""HTTP client of the daemon used by every screen of the terminal UI.

The UI never opens the catalog: while a daemon runs it is the only process
DuckDB lets in. Read calls time out after a few seconds and are never retried
here, because the app polls again on its own timer and must stay responsive
while the daemon is down. Every failure becomes a `DaemonError` subclass whose
message names the fix, so no screen has to show a traceback.

Only the standard library is used, as in `appliance.client`.
"""

from __future__ import annotations

import http.client
import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from appliance.errors import DaemonError
from tui._html import html_to_markdown

logger = logging.getLogger(__name__)

_REGISTRY = "/v1/admin/registry/models"

READ_TIMEOUT_SECONDS = 5.0
ALIAS_CHANGE_TIMEOUT_SECONDS = 30.0
"""Timeout of a promotion or rollback, the command line's default. The daemon
waits up to 3 s for a retraining to release the registry, then loads the model,
so a shorter timeout could report a failure for a change that then completes."""
TRAIN_TIMEOUT_SECONDS = 3600.0
"""How long `UiClient.retrain` waits for a retraining run to finish."""
RETRAIN_POLL_SECONDS = 0.5
"""Period of the polls that wait for a retraining run."""


class DaemonUnreachableError(DaemonError):
    """No response arrived: the daemon is stopped, starting or unreachable."""


class EndpointMissingError(DaemonError):
    """The daemon has no such route: it runs a version without this feature."""


def check_daemon_url(url: str) -> str:
    """Check that `url` is a usable daemon address; return it without a final slash.

    A usable address has the scheme ``http`` or ``https``, a host, a port from
    1 to 65535 if any, and neither a query nor a fragment, because the API's
    paths are appended to it.

    Raises:
        ValueError: `url` is not such an address; the message names the fix.
    """
    example = "such as http://127.0.0.1:8765"
    if any(char.isspace() for char in url):
        raise ValueError(
            f"daemon address {url!r} contains whitespace; give one {example}"
        )
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https"):
        hint = f"; did you mean 'http://{url}'?" if "://" not in url else ""
        raise ValueError(
            f"daemon address {url!r} must start with http:// or https://, {example}"
            f"{hint}"
        )
    if not parts.hostname:
        raise ValueError(f"daemon address {url!r} has no host; give one {example}")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise ValueError(
            f"daemon address {url!r} has an invalid port; give a number from 1 to "
            f"65535, {example}"
        )
    if parts.query or parts.fragment:
        raise ValueError(
            f"daemon address {url!r} contains a query or fragment; give only the "
            f"scheme, host, port and optional path prefix, {example}"
        )
    return url.rstrip("/")


class NotApplianceError(DaemonError):
    """Something responded at the address, but not as the appliance daemon: a
    body that is not JSON, or JSON without the fields every daemon sends."""


class KeyRejectedError(DaemonError):
    """The daemon requires an API key and none was sent, or it rejected the key
    sent (HTTP 401)."""


class RoleTooLowError(DaemonError):
    """The API key is valid, but its role lacks the permission (HTTP 403).

    Attributes:
        required_role: The minimum role the request needs, when the daemon's
            response names it.
    """

    def __init__(self, message: str, required_role: str | None = None) -> None:
        super().__init__(message, status=403)
        self.required_role = required_role


class UiClient:
    """JSON calls to the daemon's HTTP API on behalf of the screens.

    Args:
        base_url: Address such as ``http://127.0.0.1:8765``.
        api_key: Sent as a bearer token when set.
        timeout: Seconds to wait for a read call.

    Raises:
        ValueError: `base_url` is not an http or https address with a host.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout: float = READ_TIMEOUT_SECONDS,
    ) -> None:
        self.base_url = check_daemon_url(base_url)
        self.timeout = timeout
        self._headers = {"Accept": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"

    @property
    def key_sent(self) -> bool:
        """Whether the calls carry an API key."""
        return "Authorization" in self._headers

    # --- endpoints of the daemon ------------------------------------------------

    def overview(self) -> dict[str, Any]:
        """Return health, uptime, traffic, served models and next jobs."""
        return self._get_object("/v1/ui/overview")

    def served_models(self) -> list[dict[str, Any]]:
        """Return the served models with their version and task."""
        return self._get_list("/v1/models", key="models")

    def model_versions(self, model: str | None = None) -> list[dict[str, Any]]:
        """Return registered model versions, by model and newest first."""
        return self._get_list(
            "/v1/admin/model-versions", {"model": model}, key="versions"
        )

    def registry_versions(self, model: str | None = None) -> list[dict[str, Any]]:
        """Return registered versions with their ``aliases`` and ``serving`` flag."""
        return self._get_list(
            "/v1/admin/registry/models", {"model": model}, key="versions"
        )

    def champions(self) -> dict[str, int]:
        """Return the champion version of every model that has one."""
        return {
            record["model"]: record["version"]
            for record in self.registry_versions()
            if "champion" in record.get("aliases", [])
        }

    def promote(self, model: str, version: int, actor: str) -> dict[str, Any]:
        """Make `version` the champion of `model`, which the daemon then serves.

        Returns:
            The alias change, with ``version``, ``previous_version`` and
            ``serving``.
        """
        body = {
            "version": version,
            "alias": "champion",
            "actor": actor,
            "reason": "promoted from the terminal UI",
        }
        return self._post_object(
            f"{_REGISTRY}/{_quote(model)}/promote", body, ALIAS_CHANGE_TIMEOUT_SECONDS
        )

    def rollback(self, model: str, actor: str) -> dict[str, Any]:
        """Point the champion of `model` back at its previous version."""
        body = {
            "alias": "champion",
            "actor": actor,
            "reason": "rolled back from the terminal UI",
        }
        return self._post_object(
            f"{_REGISTRY}/{_quote(model)}/rollback", body, ALIAS_CHANGE_TIMEOUT_SECONDS
        )

    def model_card(self, model: str, version: int) -> str:
        """Return the model card of one version as Markdown."""
        path = f"{_REGISTRY}/{_quote(model)}/card"
        page = self._get_object(path, {"reference": version}).get("html")
        return html_to_markdown(str(page or ""))

    def runs(self, model: str | None = None) -> list[dict[str, Any]]:
        """Return training runs, newest first."""
        return self._get_list("/v1/admin/runs", {"model": model}, key="runs")

    def run(self, run_id: str) -> dict[str, Any]:
        """Return one training run."""
        return self._get_object(f"/v1/admin/runs/{_quote(run_id)}")

    def datasets(self) -> list[dict[str, Any]]:
        """Return every dataset version."""
        return self._get_list("/v1/admin/datasets", key="datasets")

    def dataset_version(self, dataset: str, version: str) -> dict[str, Any]:
        """Return one dataset version, with its quality report completed."""
        params = {"reference": f"{dataset}@{version}"}
        found = self._get_object("/v1/admin/dataset-version", params).get("version")
        if not isinstance(found, dict):
            raise NotApplianceError(
                "the daemon's response to GET /v1/admin/dataset-version has no "
                "object 'version'; check that --url points at the appliance daemon"
            )
        return found

    def quarantine(self, dataset: str, version: str, limit: int = 50) -> list[Any]:
        """Return the rows of one dataset version that failed its contract."""
        params = {"dataset": dataset, "version": version, "limit": limit}
        return self._get_list("/v1/admin/quarantine", params, key="rows")

    def orphans(self) -> dict[str, Any]:
        """Return the folders under ``HOME/orphans`` (``orphans``) and that
        folder's path (``path``)."""
        found = self._get_object("/v1/admin/orphans")
        if not isinstance(found.get("orphans"), list):
            raise NotApplianceError(
                "the daemon's response to GET /v1/admin/orphans has no list "
                "'orphans'; check that --url points at the appliance daemon"
            )
        return found

    def drift(self, model: str) -> dict[str, Any]:
        """Return the latest drift check, recent detections and live performance."""
        return self._get_object(f"/v1/models/{_quote(model)}/drift")

    def drift_scores(self, model: str) -> list[dict[str, Any]]:
        """Return the drift scores of every check of `model`, newest first."""
        return self._get_list(f"/v1/ui/drift/{_quote(model)}", key="scores")

    def alerts(self, status: str | None = "open") -> list[dict[str, Any]]:
        """Return alerts with `status` (``open``, ``acknowledged``), or all."""
        return self._get_list("/v1/alerts", {"status": status}, key="alerts")

    def acknowledge(self, alert_id: int) -> dict[str, Any]:
        """Mark an alert as seen by the operator."""
        return self._post_object(f"/v1/alerts/{alert_id}/acknowledge", {})

    def resolve(self, alert_id: int) -> dict[str, Any]:
        """Mark an alert as resolved by the operator."""
        return self._post_object(f"/v1/alerts/{alert_id}/resolve", {})

    def jobs(self) -> list[dict[str, Any]]:
        """Return the scheduled jobs with their next and last run."""
        return self._get_list("/v1/ui/jobs", key="jobs")

    def retrain(self, model: str) -> dict[str, Any]:
        """Run the retraining job of `model` now and wait for its record.

        The run skips the policy's cool-down, budget and label count, but the
        challenger is served only when it beats the champion by the margin.

        Raises:
            DaemonError: The run did not finish within `TRAIN_TIMEOUT_SECONDS`.
        """
        path = f"/v1/models/{_quote(model)}/retrain"
        record = self._post_object(path, {"trigger": "manual", "force": True})
        deadline = time.monotonic() + TRAIN_TIMEOUT_SECONDS
        while record.get("outcome") == "running":
            if time.monotonic() > deadline:
                raise DaemonError(
                    f"retraining {record.get('id')} of {model} still runs after "
                    f"{TRAIN_TIMEOUT_SECONDS:g} s; check the Jobs screen later"
                )
            time.sleep(RETRAIN_POLL_SECONDS)
            state = self._get_object(path, {"limit": 20})
            if state.get("running_id") == record.get("id"):
                continue
            finished = [
                r for r in state.get("history", []) if r.get("id") == record.get("id")
            ]
            if not finished:
                break
            record = finished[0]
        return record

    def predictions(self, model: str | None, limit: int = 50) -> list[dict[str, Any]]:
        """Return the newest logged predictions of `model`, newest first."""
        params = {"model": model, "limit": limit, "newest_first": True}
        return self._get_list("/v1/predictions", params, key="predictions")

    # --- checked responses ------------------------------------------------------------

    def _get_object(
        self, path: str, params: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        return _object(self.get(path, params), "GET", path)

    def _get_list(
        self, path: str, params: dict[str, Any] | None = None, *, key: str
    ) -> list[Any]:
        value = self._get_object(path, params).get(key)
        if not isinstance(value, list):
            raise NotApplianceError(
                f"the daemon's response to GET {path} has no list {key!r}; check "
                "that --url points at the appliance daemon"
            )
        return value

    def _post_object(
        self, path: str, body: Any, timeout: float | None = None
    ) -> dict[str, Any]:
        return _object(self.post(path, body, timeout), "POST", path)

    # --- transport ----------------------------------------------------------------

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        """Send a GET and return the decoded JSON body.

        Raises:
            DaemonUnreachableError: No response arrived.
            EndpointMissingError: The daemon has no route at `path`.
            DaemonError: The daemon responded with an error status.
        """
        query = {k: _param(v) for k, v in (params or {}).items() if v is not None}
        url = self.base_url + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        request = urllib.request.Request(url, headers=self._headers, method="GET")
        return self._send(request, self.timeout)

    def post(self, path: str, body: Any, timeout: float | None = None) -> Any:
        """Send a JSON POST and return the decoded JSON body.

        Raises:
            DaemonUnreachableError: No response arrived.
            EndpointMissingError: The daemon has no route at `path`.
            DaemonError: The daemon responded with an error status.
        """
        request = urllib.request.Request(
            self.base_url + path,
            data=json.dumps(body).encode(),
            headers={**self._headers, "Content-Type": "application/json"},
            method="POST",
        )
        return self._send(request, timeout or self.timeout)

    def _send(self, request: urllib.request.Request, timeout: float) -> Any:
        logger.debug("daemon call method=%s url=%s", request.method, request.full_url)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise _http_error(self.base_url, request, exc, self.key_sent) from None
        except urllib.error.URLError as exc:
            raise self._unreachable(request, exc.reason) from None
        except (TimeoutError, ConnectionError, http.client.HTTPException) as exc:
            # HTTPException covers a connection closed mid-response, as when
            # the daemon stops while it sends a response.
            raise self._unreachable(request, exc) from None
        except ValueError as exc:
            raise NotApplianceError(
                f"the daemon at {self.base_url} sent a body that is not JSON for "
                f"{request.method} {request.selector}: {exc}; check that --url "
                "points at the appliance daemon"
            ) from None

    def _unreachable(self, request: urllib.request.Request, reason: Any) -> DaemonError:
        return DaemonUnreachableError(
            f"no response from the daemon at {self.base_url} to {request.method} "
            f"{request.selector}: {reason}. Start it with 'appliance serve' or "
            "check 'journalctl -u appliance'; the screen retries on its own"
        )


def _http_error(
    base_url: str,
    request: urllib.request.Request,
    exc: urllib.error.HTTPError,
    key_sent: bool,
) -> DaemonError:
    try:
        body = json.loads(exc.read())
    except (ValueError, OSError):
        body = None
    message = body.get("error") if isinstance(body, dict) else None
    if body is None and exc.code not in (401, 403):
        return _not_json_error(base_url, request, exc)
    # Litestar returns a 404 for a route the daemon does not have, without the
    # "type" field that the daemon's own errors carry.
    if exc.code in (404, 405) and not (isinstance(body, dict) and "type" in body):
        return EndpointMissingError(
            f"not available on this daemon: it has no {request.method} "
            f"{urllib.parse.urlsplit(request.full_url).path}; upgrade the daemon "
            "to a version with this feature",
            status=exc.code,
        )
    if exc.code == 401:
        problem = "rejected the API key sent" if key_sent else "requires an API key"
        return KeyRejectedError(
            f"the daemon {problem} (HTTP 401): {message or exc.reason}; set "
            "APPLIANCE_API_KEY or pass --api-key with a valid key",
            status=401,
        )
    if exc.code == 403:
        return _role_too_low(body, message or exc.reason)
    return DaemonError(
        f"the daemon rejected the request: {message or exc.reason} (HTTP {exc.code})",
        status=exc.code,
    )


def _not_json_error(
    base_url: str, request: urllib.request.Request, exc: urllib.error.HTTPError
) -> DaemonError:
    """Classify an error response whose body is not JSON.

    The daemon's own error responses, from Litestar and from its access gate,
    are JSON, so such a body comes from a proxy or from another server.
    """
    place = f"{request.method} {request.selector}"
    if exc.code in (502, 503, 504):
        # A reverse proxy's response while the daemon behind it is down.
        return DaemonUnreachableError(
            f"a proxy at {base_url} responded HTTP {exc.code} ({exc.reason}) to "
            f"{place}: the daemon behind it does not respond; the screen retries "
            "on its own",
            status=exc.code,
        )
    return NotApplianceError(
        f"{base_url} responded HTTP {exc.code} ({exc.reason}) to {place} with a "
        "body that is not JSON, so it is not the appliance daemon; check that "
        "--url points at the appliance daemon",
        status=exc.code,
    )


def _role_too_low(body: Any, message: str) -> RoleTooLowError:
    required = body.get("required_role") if isinstance(body, dict) else None
    if isinstance(required, str) and required:
        needed = f"a key with role {required!r} or higher"
    else:
        required = None
        needed = "a key with a higher role"
    return RoleTooLowError(
        "the API key is valid, but its role lacks the permission (HTTP 403): "
        f"{message}. Set APPLIANCE_API_KEY or --api-key to {needed}",
        required,
    )


def _object(body: Any, method: str, path: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise NotApplianceError(
            f"the daemon's response to {method} {path} is not a JSON object; check "
            "that --url points at the appliance daemon"
        )
    return body


def _quote(segment: str) -> str:
    return urllib.parse.quote(str(segment), safe="")


def _param(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
