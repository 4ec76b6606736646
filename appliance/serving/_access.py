"""The access gate: API key and role checks in front of every route.

`AccessGate` wraps the daemon's ASGI app (the predict lane and Litestar
behind it). Per request it finds the role the route needs (`required_role`),
reads the key from ``Authorization: Bearer TOKEN`` or ``X-API-Key``, looks up
its sha256 among the unrevoked keys held in memory, checks the key's expiry,
and either passes the request on, with the key as the current audit actor, or
responds with 401 or 403 and the API's JSON error body. An expired key gets a
401 that names its expiry time, and an unknown or revoked one a 401 that says
so. The health probes need no key. When keys are required, an
``Authorization`` header without a bearer token (no scheme, or another one
such as ``Basic``) gets a 401 that names that problem.

Refusals are counted, not recorded one by one: the first refusal of a period
is logged at once, and one audit entry per period (``[security]
refused_audit_seconds``) sums them up, so a client retrying a bad key cannot
flood the log or the audit table. No token is ever logged or recorded.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import msgspec

from appliance.access import (
    ANONYMOUS,
    DAEMON,
    Actor,
    KeyHolder,
    enter_actor,
    find_holder,
    is_expired,
    leave_actor,
    record,
    role_allows,
    utc_text,
)
from appliance.errors import ConfigError, cut
from appliance.serving._asgi import send_response
from appliance.serving._ids import new_request_id
from appliance.serving._state import run_with_catalog

if TYPE_CHECKING:
    from litestar.types import ASGIApp, Receive, Scope, Send

    from appliance.serving._state import DaemonState
    from appliance.storage import Catalog

logger = logging.getLogger(__name__)

OPEN_PATHS = frozenset({"/health", "/health/live", "/health/ready"})
"""Paths served without a key, for systemd, load balancers and probes."""
ADMIN_PREFIXES = (
    "/v1/admin/keys",
    "/v1/admin/audit",
    "/v1/admin/erase",
    "/v1/admin/erasures",
    "/v1/admin/orphans/",
    "/v1/admin/signing",
)
"""Paths of the admin role: keys, the audit log, erasures and their receipts,
the removal of orphan folders and the rotation of the signing key. The orphan
folder listing, ``GET /v1/admin/orphans``, needs role ``reader``."""
_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_ANONYMOUS = Actor(ANONYMOUS)
_DAEMON = Actor(DAEMON)
_SHOWN_PLACES = 20
"""Distinct paths and client addresses one refusal entry lists by name."""
_HTTP_SCHEMES = {
    name.lower(): name
    for name in (
        "Basic",
        "Digest",
        "HOBA",
        "Mutual",
        "Negotiate",
        "NTLM",
        "OAuth",
        "SCRAM-SHA-1",
        "SCRAM-SHA-256",
        "vapid",
        "AWS4-HMAC-SHA256",
        "Token",
        "ApiKey",
    )
}
"""Authentication schemes that a rejection message names. Any other first word
of the header could be the token itself, so it is never shown."""
_SEND_KEY_HINT = (
    "send it as 'Authorization: Bearer TOKEN' or 'X-API-Key: TOKEN' (the "
    "appliance command and its terminal UI send APPLIANCE_API_KEY)"
)
_encode = msgspec.json.Encoder().encode


def required_role(method: str, path: str) -> str | None:
    """Return the least role a request needs, or None for an open path."""
    if path in OPEN_PATHS:
        return None
    if path.startswith(ADMIN_PREFIXES) or _is_dataset_removal(method, path):
        return "admin"
    if method in _READ_METHODS:
        return "reader"
    if method == "POST":
        if path.startswith("/v1/models/") and path.endswith(
            ("/predict", "/predict/", "/feedback", "/explain")
        ):
            return "predictor"
        if path.startswith("/v1/datasets/") and path.endswith("/rows"):
            return "predictor"
        if path == "/v1/admin/registry/runs/lookup":
            return "reader"
    return "operator"


def _is_dataset_removal(method: str, path: str) -> bool:
    """Tell whether a request removes a dataset, which deletes rows as an
    erasure does."""
    return (
        method == "POST"
        and path.startswith("/v1/admin/datasets/")
        and path.endswith("/remove")
    )


def sent_token(headers: list[tuple[bytes, bytes]]) -> str | None:
    """Return the token of a bearer ``Authorization`` or ``X-API-Key`` header."""
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
        elif name == b"x-api-key" and value.strip():
            return value.decode("latin-1").strip()
    return None


def authorization_problem(headers: list[tuple[bytes, bytes]]) -> str | None:
    """Return why an ``Authorization`` header carries no bearer token, or None.

    The text never contains the header's value, except a scheme name listed
    in `_HTTP_SCHEMES`, because a client that leaves out the scheme sends the
    token as the first word.
    """
    for name, value in headers:
        if name != b"authorization":
            continue
        scheme, _, rest = value.decode("latin-1").strip().partition(" ")
        if not scheme:
            return "the Authorization header is empty"
        if scheme.lower() == "bearer":
            return "the Authorization header has the 'Bearer' scheme but no token"
        if not rest.strip():
            return "the Authorization header was sent without the 'Bearer' scheme"
        known = _HTTP_SCHEMES.get(scheme.lower())
        if known is None:
            return "the Authorization header uses a scheme other than 'Bearer'"
        return f"the Authorization header uses the {known!r} scheme, not 'Bearer'"
    return None


@dataclass
class RefusalCounter:
    """Refused requests since the last audit entry that summed them up."""

    counts: Counter[tuple[int, str, str]] = field(default_factory=Counter)
    """Refusals by (status, key name or ``-``, reason)."""
    places: Counter[str] = field(default_factory=Counter)
    """Refusals by ``METHOD PATH``, the first `_SHOWN_PLACES` by name."""
    clients: Counter[str] = field(default_factory=Counter)
    """Refusals by client address, the first `_SHOWN_PLACES` by name."""
    first_at: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, status: int, key: str, reason: str, place: str, client: str) -> bool:
        """Count one refusal; return True when it is the first of a period."""
        with self.lock:
            first = self.first_at is None
            if first:
                self.first_at = time.time()
            self.counts[(status, key, reason)] += 1
            _count_place(self.places, place)
            _count_place(self.clients, client)
            return first

    def take(self) -> dict[str, Any] | None:
        """Return the summary of the refusals counted so far and start anew."""
        with self.lock:
            if self.first_at is None:
                return None
            summary = {
                "count": sum(self.counts.values()),
                "since": time.strftime(
                    "%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.first_at)
                ),
                "by_reason": [
                    {"status": status, "key": key, "reason": reason, "count": n}
                    for (status, key, reason), n in self.counts.most_common()
                ],
                "paths": dict(self.places.most_common()),
                "clients": dict(self.clients.most_common()),
            }
            self.counts.clear()
            self.places.clear()
            self.clients.clear()
            self.first_at = None
            return summary


def _count_place(counter: Counter[str], place: str) -> None:
    if place in counter or len(counter) < _SHOWN_PLACES:
        counter[place] += 1
    else:
        counter["other"] += 1


@dataclass
class AccessControl:
    """The daemon's active keys and its refusal counter."""

    keys: dict[str, KeyHolder]
    """Each unrevoked key, expired ones too, by the sha256 of its token;
    replaced whole when a key is created or revoked."""
    refusals: RefusalCounter = field(default_factory=RefusalCounter)


def record_refusals(catalog: Catalog, refusals: RefusalCounter) -> None:
    """Record one audit entry that sums up the refusals counted so far."""
    summary = refusals.take()
    if summary is None:
        return
    record(catalog, "request.refused", "http", summary, "refused", _DAEMON)
    logger.warning(
        "requests rejected by the access gate count=%d since=%s",
        summary["count"],
        summary["since"],
    )


def record_in_daemon(state: DaemonState, *args: Any, **kwargs: Any) -> None:
    """Call `record` with ``args`` on a new cursor of the daemon's catalog.

    For code that runs in the calling thread without a cursor of its own, such
    as the configuration reload on the event loop or the buffer's flush thread.
    """
    view = state.catalog.cursor()
    try:
        record(view, *args, **kwargs)
    finally:
        view.close()


def key_rejection(
    holder: KeyHolder | None, required: str
) -> tuple[int, str, str, str, str | None] | None:
    """Return why the gate rejects a request with the key of `holder`, or None.

    Returns:
        None when the key may make the request, else the status, key name,
        reason, required role and problem that `AccessGate._refuse` takes.
    """
    if holder is None:
        return 401, "-", "unknown key", required, None
    actor, expires_at = holder.actor, holder.expires_at
    if expires_at is not None and is_expired(expires_at, datetime.now(UTC)):
        expiry = f"expired at {utc_text(expires_at)}"
        return 401, actor.name, "expired key", required, expiry
    assert actor.role is not None
    if not role_allows(actor.role, required):
        return 403, actor.name, actor.role, required, None
    return None


def check_exposure(host: str, require_keys: bool, source: Path) -> None:
    """Reject a daemon that would serve an open API beyond this machine.

    Raises:
        ConfigError: `host` is not a loopback address, or a name that resolves
            only to such addresses, and `require_keys` is false.
    """
    if require_keys or _is_loopback(host):
        return
    raise ConfigError(
        f"the daemon would listen on {host}, which other machines can reach, "
        f"while [security] require_keys is false in {source}, so anyone reaching "
        "the port could promote, ingest and train; set require_keys = true "
        "(after 'appliance keys create NAME --role admin'), or listen on "
        "127.0.0.1"
    )


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        found = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(found) and all(
        ipaddress.ip_address(entry[4][0]).is_loopback for entry in found
    )


class AccessGate:
    """ASGI app that checks the API key of each request before `app` serves it.

    Args:
        app: The app to protect, such as the daemon's `PredictLane`.
        state: The daemon state, whose ``access`` and ``config`` are read per
            request, so new keys and a reloaded configuration apply at once.
    """

    def __init__(self, app: ASGIApp, state: DaemonState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        required = required_role(method, path)
        if required is None:
            await self.app(scope, receive, send)
            return
        token = sent_token(scope["headers"])
        if token is None:
            if self.state.config.security.require_keys:
                problem = authorization_problem(scope["headers"])
                reason = "missing key" if problem is None else "no bearer token"
                await self._refuse(scope, send, 401, "-", reason, required, problem)
                return
            actor = _ANONYMOUS
        else:
            holder = find_holder(self.state.access.keys, token)
            rejection = key_rejection(holder, required)
            if rejection is not None:
                await self._refuse(scope, send, *rejection)
                return
            assert holder is not None
            actor = holder.actor
        entered = enter_actor(actor)
        try:
            await self.app(scope, receive, send)
        finally:
            leave_actor(entered)

    async def _refuse(
        self,
        scope: Scope,
        send: Send,
        status: int,
        key: str,
        reason: str,
        required: str,
        problem: str | None = None,
    ) -> None:
        place = f"{scope['method']} {cut(scope['path'])}"
        if status == 403:
            message = (
                f"key {key!r} has role {reason!r}, and {place} needs role "
                f"{required!r} or higher; use a key with that role"
            )
            reason = f"role {reason}"
        elif reason == "expired key":
            message = (
                f"the API key {key!r} {problem}; {place} needs a key with role "
                f"{required!r} or higher, so create a new key ('appliance keys "
                "create NAME --role ROLE') and send it"
            )
        elif problem is not None:
            message = (
                f"{problem}, so the request carries no API key. {place} needs a "
                f"key with role {required!r} or higher, so {_SEND_KEY_HINT}"
            )
        elif reason == "missing key":
            message = (
                f"{place} needs an API key with role {required!r} or higher; "
                f"{_SEND_KEY_HINT}"
            )
        elif self.state.config.security.require_keys:
            message = (
                f"the API key sent is unknown or revoked; {place} needs a key "
                f"with role {required!r} or higher"
            )
        else:
            message = (
                "the API key sent is unknown or revoked; this daemon takes "
                "requests without a key too, so send a valid key or none"
            )
        request_id = new_request_id()
        body = {
            "error": message,
            "type": "AuthenticationError" if status == 401 else "AuthorizationError",
            "request_id": request_id,
            "required_role": required,
        }
        headers = [(b"www-authenticate", b"Bearer")] if status == 401 else None
        await send_response(send, _encode(body), b"application/json", headers, status)
        client = scope.get("client")
        address = client[0] if client else "-"
        if self.state.access.refusals.add(status, key, reason, place, address):
            self._first_refusal(request_id, status, place, reason, address)

    def _first_refusal(
        self, request_id: str, status: int, place: str, reason: str, client: str
    ) -> None:
        """Log the first refusal of a period and record the period when it ends."""
        period = self.state.config.security.refused_audit_seconds
        logger.warning(
            "request rejected request_id=%s status=%d request=%s reason=%s client=%s; "
            "further rejections are counted in one audit entry per %.0f s",
            request_id,
            status,
            place,
            reason,
            client,
            period,
        )
        loop = asyncio.get_running_loop()
        loop.call_later(period, self._record_period)

    def _record_period(self) -> None:
        asyncio.ensure_future(_record_period(self.state))


async def _record_period(state: DaemonState) -> None:
    try:
        await run_with_catalog(state, record_refusals, state.access.refusals)
    except duckdb.Error:
        # The catalog closed at stop; the stop recorded the refusals first.
        logger.exception("rejected requests not recorded in the audit log")
