"""The predict lane: prediction requests served in front of Litestar.

Litestar's routing, request object, parameter parsing and response object
took about a quarter of the event loop's time per single-row request in a
py-spy profile of the daemon (flights model, wrk at one connection), more
than building the ONNX feed. `PredictLane` wraps the Litestar app, serves
``POST /v1/models/{name}/predict`` itself with `serve_prediction`, and hands
every other request to Litestar. The Litestar route of the same path stays
mounted: it documents the route in the OpenAPI document and serves apps used
without the lane.

An ASGI route handler inside Litestar would be the plain choice. But
Litestar 2.25 fails with a KeyError on every HTTP request to an ASGI handler
whose path has a parameter, because it stores the parameters under
``"asgi"`` and looks them up by the request method. So the lane sits in
front instead.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from litestar import Litestar, Request
from litestar.exceptions import MethodNotAllowedException
from litestar.types import Receive, Scope, Send

from appliance.serving._asgi import query_int, request_headers, send_response
from appliance.serving._errors import error_response
from appliance.serving._routes_predict import serve_prediction

logger = logging.getLogger(__name__)

_PREDICT = re.compile(r"/v1/models/([^/]+)/predict/?")


class PredictLane:
    """ASGI app that serves predict requests and passes the rest to `app`.

    Args:
        app: The daemon's Litestar app, whose ``state.daemon`` it serves.
    """

    def __init__(self, app: Litestar) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection."""
        if scope["type"] == "http":
            match = _PREDICT.fullmatch(scope["path"])
            if match is not None:
                await self._predict(match.group(1), scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _predict(
        self, name: str, scope: Any, receive: Receive, send: Send
    ) -> None:
        try:
            if scope["method"] != "POST":
                raise MethodNotAllowedException(headers={"allow": "POST"})
            version = query_int(scope, "version")
            content_type, content_length = request_headers(scope)
            response = await serve_prediction(
                self.app.state.daemon,
                name,
                version,
                content_type,
                content_length,
                receive,
            )
        except Exception as exc:  # noqa: BLE001 - every error gets a response
            # error_response writes the JSON body and the log line, as it
            # does for the errors of the other routes.
            scope["app"] = scope["litestar_app"] = self.app
            error = error_response(Request(scope), exc)
            await send_response(
                send,
                error.content,
                b"application/json",
                status=error.status_code,
            )
            return
        await send_response(send, *response)
