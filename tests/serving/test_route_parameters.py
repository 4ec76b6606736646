"""Route handlers declare the source of every parameter, as Litestar 3 requires.

Litestar 2.25 warns with `LitestarDeprecationWarning` while it builds an app,
once for each handler parameter whose source (path or query) it infers. These
tests build the daemon's app with that warning turned into an error, and check
that the OpenAPI document lists every parameter where it was, with a
description.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest
from litestar import Litestar, get
from litestar.exceptions import LitestarDeprecationWarning

from appliance.config import Config
from appliance.serving import DaemonState, ServingMetrics, create_app

# Operation -> (name, location) of each parameter, in the document's order.
PARAMETERS = {
    ("GET", "/health"): [],
    ("GET", "/health/live"): [],
    ("GET", "/health/ready"): [],
    ("GET", "/metrics"): [],
    ("GET", "/v1/admin/dataset-version"): [
        ("reference", "query"),
        ("dataset", "query"),
    ],
    ("GET", "/v1/admin/datasets"): [],
    ("POST", "/v1/admin/datasets/{name}/remove"): [("name", "path")],
    ("POST", "/v1/admin/erase"): [],
    ("GET", "/v1/admin/erasures"): [("dataset", "query")],
    ("POST", "/v1/admin/ingest"): [],
    ("GET", "/v1/admin/orphans"): [("dataset", "query")],
    ("POST", "/v1/admin/orphans/remove"): [],
    ("POST", "/v1/admin/signing/rotate"): [],
    ("GET", "/v1/admin/keys"): [],
    ("POST", "/v1/admin/keys"): [],
    ("POST", "/v1/admin/keys/{name}/revoke"): [("name", "path")],
    ("GET", "/v1/admin/audit"): [
        ("since", "query"),
        ("action", "query"),
        ("limit", "query"),
    ],
    ("GET", "/v1/admin/audit/verify"): [("anchor", "query")],
    ("GET", "/v1/admin/model-versions"): [("model", "query")],
    ("GET", "/v1/admin/quarantine"): [
        ("dataset", "query"),
        ("version", "query"),
        ("limit", "query"),
    ],
    ("GET", "/v1/admin/registry/models"): [("model", "query")],
    ("GET", "/v1/admin/registry/models/{name}/card"): [
        ("name", "path"),
        ("reference", "query"),
    ],
    ("GET", "/v1/admin/registry/models/{name}/history"): [
        ("name", "path"),
        ("alias", "query"),
    ],
    ("POST", "/v1/admin/registry/models/{name}/promote"): [("name", "path")],
    ("GET", "/v1/admin/registry/models/{name}/resolve"): [
        ("name", "path"),
        ("reference", "query"),
    ],
    ("POST", "/v1/admin/registry/models/{name}/rollback"): [("name", "path")],
    ("GET", "/v1/admin/registry/runs"): [
        ("model", "query"),
        ("parent", "query"),
        ("limit", "query"),
    ],
    ("POST", "/v1/admin/registry/runs/lookup"): [],
    ("GET", "/v1/admin/runs"): [("model", "query")],
    ("GET", "/v1/admin/runs/{run_id}"): [("run_id", "path")],
    ("POST", "/v1/admin/train"): [],
    ("GET", "/v1/alerts"): [("status", "query"), ("model", "query")],
    ("POST", "/v1/alerts/{alert_id}/acknowledge"): [("alert_id", "path")],
    ("POST", "/v1/alerts/{alert_id}/resolve"): [("alert_id", "path")],
    ("GET", "/v1/datasets/{name}/rows"): [("name", "path")],
    ("POST", "/v1/datasets/{name}/rows"): [("name", "path")],
    ("POST", "/v1/datasets/{name}/compact"): [("name", "path")],
    ("POST", "/v1/datasets/{name}/rejected/{segment}/retry"): [
        ("name", "path"),
        ("segment", "path"),
    ],
    ("GET", "/v1/models"): [],
    ("GET", "/v1/models/{name}/drift"): [
        ("name", "path"),
        ("history", "query"),
        ("events", "query"),
    ],
    ("POST", "/v1/models/{name}/drift/check"): [("name", "path")],
    ("POST", "/v1/models/{name}/feedback"): [("name", "path")],
    ("POST", "/v1/models/{name}/predict"): [("name", "path"), ("version", "query")],
    ("POST", "/v1/models/{name}/explain"): [("name", "path"), ("version", "query")],
    ("GET", "/v1/models/{name}/retrain"): [("name", "path"), ("limit", "query")],
    ("POST", "/v1/models/{name}/retrain"): [("name", "path")],
    ("GET", "/v1/predictions"): [
        ("model", "query"),
        ("version", "query"),
        ("since", "query"),
        ("until", "query"),
        ("limit", "query"),
        ("newest_first", "query"),
    ],
    ("GET", "/v1/ui/drift/{name}"): [("name", "path"), ("limit", "query")],
    ("GET", "/v1/ui/jobs"): [],
    ("GET", "/v1/ui/overview"): [],
}


def build_strictly(build: Any) -> Any:
    """Call `build` with Litestar's deprecation warnings raised as errors."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", LitestarDeprecationWarning)
        return build()


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Return the OpenAPI document of the daemon's app, built strictly."""
    config = Config(path=tmp_path_factory.mktemp("config") / "config.toml")
    state = DaemonState(
        config=config, metrics=ServingMetrics(), host="127.0.0.1", port=0
    )

    def build() -> dict[str, Any]:
        return create_app(state).openapi_schema.to_schema()

    return build_strictly(build)


def operations(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """Return every operation of `document` by method and path."""
    return {
        (method.upper(), path): operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if isinstance(operation, dict) and "responses" in operation
    }


def test_inferred_path_parameter_fails_build() -> None:
    @get("/items/{item_id:int}", sync_to_thread=False)
    def item(item_id: int) -> dict[str, Any]:
        return {"id": item_id}

    with pytest.raises(LitestarDeprecationWarning, match="path parameter 'item_id'"):
        build_strictly(lambda: Litestar([item]))


def test_inferred_query_parameter_fails_build() -> None:
    @get("/items", sync_to_thread=False)
    def items(detail: bool = False) -> dict[str, Any]:
        return {"detail": detail}

    with pytest.raises(LitestarDeprecationWarning, match="query parameter 'detail'"):
        build_strictly(lambda: Litestar([items]))


def test_app_lists_every_parameter(document: dict[str, Any]) -> None:
    found = {
        key: [(p["name"], p["in"]) for p in operation.get("parameters", [])]
        for key, operation in operations(document).items()
    }

    assert found == PARAMETERS


def test_app_parameters_have_descriptions(document: dict[str, Any]) -> None:
    missing = [
        (method, path, parameter["name"])
        for (method, path), operation in operations(document).items()
        for parameter in operation.get("parameters", [])
        if not parameter.get("description")
    ]

    assert missing == []


def test_app_parameters_keep_types(document: dict[str, Any]) -> None:
    by_name = {
        p["name"]: p
        for p in operations(document)[("GET", "/v1/predictions")]["parameters"]
    }
    drift = operations(document)[("GET", "/v1/models/{name}/drift")]["parameters"]
    alert = operations(document)[("POST", "/v1/alerts/{alert_id}/acknowledge")]

    # The route reads times as the CLI does, which RFC 3339 (date-time) does
    # not cover, such as 2026-01-31T08:00.
    assert "2026-01-31T08:00" in by_name["since"]["description"]
    assert "date-time" not in str(by_name["since"]["schema"])
    assert by_name["limit"]["schema"]["type"] == "integer"
    assert by_name["limit"]["schema"]["minimum"] == 0
    assert by_name["limit"]["schema"]["default"] == 100
    assert by_name["newest_first"]["schema"]["type"] == "boolean"
    assert by_name["model"]["required"] is False
    assert drift[0]["required"] is True
    assert drift[1]["schema"]["minimum"] == 0.0
    assert alert["parameters"][0]["schema"]["type"] == "integer"
