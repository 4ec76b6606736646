"""The Litestar application: route modules assembled around one `DaemonState`.

Each route module exports ``ROUTES``, a list of handlers; `ROUTE_MODULES` lists
the modules mounted by `create_app`. A new area of the API adds a module and
one line there. Handlers reach the shared objects with `daemon_state(request)`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from litestar import Litestar
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin

from appliance.serving import (
    _routes_access,
    _routes_admin,
    _routes_compact,
    _routes_erase,
    _routes_explain,
    _routes_health,
    _routes_ingest,
    _routes_monitoring,
    _routes_orphans,
    _routes_predict,
    _routes_registry,
    _routes_rejected,
    _routes_remove,
    _routes_retrain,
    _routes_signing,
    _routes_ui,
)
from appliance.serving._body import SMALL_BODY_MAX_BYTES
from appliance.serving._errors import error_response
from appliance.serving._openapi import describe_responses
from appliance.serving._state import DaemonState

ROUTE_MODULES = (
    _routes_health,
    _routes_predict,
    _routes_explain,
    _routes_admin,
    _routes_monitoring,
    _routes_registry,
    _routes_ui,
    _routes_ingest,
    _routes_rejected,
    _routes_compact,
    _routes_retrain,
    _routes_access,
    _routes_erase,
    _routes_orphans,
    _routes_remove,
    _routes_signing,
)


def create_app(
    state: DaemonState,
    lifespan: Sequence[Callable[[Litestar], AbstractAsyncContextManager[Any]]] = (),
    extra_routes: Sequence[Any] = (),
) -> Litestar:
    """Build the application serving `state`.

    Args:
        state: Shared objects, stored as ``app.state.daemon``.
        lifespan: Async context managers entered at startup in order and
            exited at shutdown in reverse.
        extra_routes: Handlers mounted beside those of `ROUTE_MODULES`.
    """
    routes = [handler for module in ROUTE_MODULES for handler in module.ROUTES]
    app = Litestar(
        route_handlers=[*routes, *extra_routes],
        exception_handlers={Exception: error_response},
        lifespan=list(lifespan),
        state=State({"daemon": state}),
        # The predict, explain, rows and feedback routes read their bodies
        # themselves under [server] max_body_bytes, which may be larger. Every
        # other route takes a small JSON body that Litestar reads whole into
        # memory, so a larger body gets 413 while it is read.
        request_max_body_size=SMALL_BODY_MAX_BYTES,
        openapi_config=OpenAPIConfig(
            title="edge-appliance",
            version="1",
            description="Predictions, health, metrics and admin commands of the "
            "appliance daemon.",
            # Litestar's HTML pages (Redoc, Swagger UI) load their scripts
            # from public CDNs, which a box without internet cannot reach, so
            # /schema serves the JSON document too.
            render_plugins=[JsonRenderPlugin(path=["/", "/openapi.json"])],
        ),
        logging_config=None,
    )
    describe_responses(app, state.config)
    return app
