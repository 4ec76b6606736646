"""The OpenAPI document of a real daemon: request and response body schemas.

Every route that takes a JSON body reads it itself, so its schema comes from
the route's `operation_class`. These tests fetch ``/schema/openapi.json`` from
a daemon on 127.0.0.1, check the schemas, and send requests to check that the
documented response fields are the ones the routes return.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from daemon_support import MODEL, Daemon, free_port, row, write_config

BODY_METHODS = {"post", "put", "patch"}
EXEMPT = {
    ("post", "/v1/alerts/{alert_id}/acknowledge"): "takes no body; the alert id "
    "is in the path",
    ("post", "/v1/alerts/{alert_id}/resolve"): "takes no body; the alert id is "
    "in the path",
    ("post", "/v1/admin/keys/{name}/revoke"): "takes no body; the key name is "
    "in the path",
    ("post", "/v1/datasets/{name}/rejected/{segment}/retry"): "takes no body; "
    "the dataset and the segment are in the path",
    ("post", "/v1/datasets/{name}/compact"): "takes no body; the dataset name "
    "is in the path",
    ("post", "/v1/models/{name}/drift/check"): "takes no body; the model name "
    "is in the path",
    ("post", "/v1/admin/signing/rotate"): "takes no body; it rotates the home's "
    "one signing key",
}
"""Operations that need no request body schema, with the reason."""


@pytest.fixture(scope="module")
def daemon(
    trained_home: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Daemon]:
    """Return a ready daemon on a private copy of the trained home."""
    root = tmp_path_factory.mktemp("openapi")
    home = root / "home"
    shutil.copytree(trained_home, home)
    started = Daemon(write_config(root / "config.toml", home), home, free_port())
    try:
        started.wait_ready()
        yield started
    finally:
        started.kill()


@pytest.fixture(scope="module")
def document(daemon: Daemon) -> dict[str, Any]:
    """Return the daemon's OpenAPI document."""
    response = httpx.get(daemon.base + "/schema/openapi.json")
    assert response.status_code == 200
    return response.json()


def test_schema_pages_need_no_internet(daemon: Daemon) -> None:
    root = httpx.get(daemon.base + "/schema")
    swagger = httpx.get(daemon.base + "/schema/swagger")

    assert root.status_code == 200
    assert root.headers["content-type"].startswith("application/vnd.oai.openapi+json")
    assert root.json()["info"]["title"] == "edge-appliance"
    assert swagger.status_code == 404


def request_schema(document: dict[str, Any], method: str, path: str) -> dict:
    """Return the JSON schema of an operation's request body."""
    body = document["paths"][path][method]["requestBody"]
    return body["content"]["application/json"]["schema"]


def response_schema(
    document: dict[str, Any], method: str, path: str, status: int
) -> dict:
    """Return the JSON schema of a response, with a ``$ref`` resolved."""
    response = document["paths"][path][method]["responses"][str(status)]
    schema = response["content"]["application/json"]["schema"]
    name = schema["$ref"].rsplit("/", 1)[-1]
    return document["components"]["schemas"][name]


def test_every_body_route_declares_schema(document: dict[str, Any]) -> None:
    lacking = []
    for path, item in document["paths"].items():
        for method in BODY_METHODS & set(item):
            if (method, path) in EXEMPT:
                continue
            body = item[method].get("requestBody", {})
            schema = body.get("content", {}).get("application/json", {})
            properties = schema.get("schema", {}).get("properties")
            if not properties:
                lacking.append((method, path))

    assert lacking == []


def test_exempt_routes_take_no_body(document: dict[str, Any]) -> None:
    for method, path in EXEMPT:
        assert "requestBody" not in document["paths"][path][method]


def test_required_fields_are_properties(document: dict[str, Any]) -> None:
    for path, item in document["paths"].items():
        for method in BODY_METHODS & set(item):
            if (method, path) in EXEMPT:
                continue
            schema = request_schema(document, method, path)
            assert set(schema.get("required", [])) <= set(schema["properties"])


def test_dataset_rows_documented(daemon: Daemon, document: dict[str, Any]) -> None:
    path = "/v1/datasets/{name}/rows"
    body = request_schema(document, "post", path)
    accepted_schema = response_schema(document, "post", path, 202)
    status_schema = response_schema(document, "get", path, 200)

    sent = httpx.post(
        daemon.base + "/v1/datasets/points/rows",
        json={"rows": [{"x1": 0.1, "x2": 0.2, "color": "red", "label": 1}]},
    )
    status = httpx.get(daemon.base + "/v1/datasets/points/rows")

    assert body["required"] == ["rows"]
    assert body["properties"]["rows"]["items"] == {"type": "object"}
    assert sent.status_code == 202
    assert set(sent.json()) == set(accepted_schema["properties"])
    assert status.status_code == 200
    assert set(status.json()) == set(status_schema["properties"])


def test_admin_bodies_documented(document: dict[str, Any]) -> None:
    ingest = request_schema(document, "post", "/v1/admin/ingest")
    train = request_schema(document, "post", "/v1/admin/train")

    assert sorted(ingest["required"]) == ["dataset", "paths"]
    assert set(ingest["properties"]) == {"dataset", "paths", "mode", "strict", "force"}
    assert sorted(ingest["properties"]["mode"]["enum"]) == ["append", "replace"]
    assert ingest["additionalProperties"] is False
    assert train["required"] == ["model"]
    assert train["additionalProperties"] is False


def test_registry_bodies_documented(daemon: Daemon, document: dict[str, Any]) -> None:
    prefix = "/v1/admin/registry"
    promote = request_schema(document, "post", f"{prefix}/models/{{name}}/promote")
    rollback_body = document["paths"][f"{prefix}/models/{{name}}/rollback"]["post"][
        "requestBody"
    ]
    lookup = request_schema(document, "post", f"{prefix}/runs/lookup")
    change = response_schema(document, "post", f"{prefix}/models/{{name}}/promote", 200)

    promoted = httpx.post(
        f"{daemon.base}{prefix}/models/{MODEL}/promote",
        json={"version": 1, "actor": "test", "reason": "schema check"},
    )

    assert promote["required"] == ["version"]
    assert set(promote["properties"]) == {"version", "alias", "actor", "reason"}
    assert rollback_body["required"] is False
    assert rollback_body["content"]["application/json"]["schema"]["required"] == []
    assert lookup["required"] == ["run_ids"]
    assert promoted.status_code == 200
    assert set(promoted.json()) == set(change["properties"])
    assert set(change["required"]) <= set(promoted.json())


def test_feedback_documented(daemon: Daemon, document: dict[str, Any]) -> None:
    path = "/v1/models/{name}/feedback"
    body = request_schema(document, "post", path)
    label = body["properties"]["labels"]["items"]
    result = response_schema(document, "post", path, 200)

    predicted = httpx.post(
        f"{daemon.base}/v1/models/{MODEL}/predict", json={"rows": [row(0)]}
    ).json()
    label_sent = {
        "request_id": predicted["request_id"],
        "row": 0,
        "label": predicted["predictions"][0]["label"],
    }
    stored = httpx.post(
        f"{daemon.base}/v1/models/{MODEL}/feedback", json={"labels": [label_sent]}
    )
    repeated = httpx.post(
        f"{daemon.base}/v1/models/{MODEL}/feedback", json={"labels": [label_sent]}
    )

    assert body["required"] == ["labels"]
    assert body["properties"]["labels"]["minItems"] == 1
    assert sorted(label["required"]) == ["label", "request_id", "row"]
    assert label["properties"]["row"]["minimum"] == 0
    assert stored.status_code == 200
    assert set(stored.json()) == set(result["properties"])
    assert repeated.json()["repeated"] == [label_sent]


def test_retrain_body_lists_known_keys(
    daemon: Daemon, document: dict[str, Any]
) -> None:
    operation = document["paths"]["/v1/models/{name}/retrain"]["post"]
    body = request_schema(document, "post", "/v1/models/{name}/retrain")

    rejected = httpx.post(
        f"{daemon.base}/v1/models/{MODEL}/retrain", json={"colour": "red"}
    )
    known = rejected.json()["error"].split("known keys: ")[1]

    assert operation["requestBody"]["required"] is False
    assert body["required"] == []
    assert rejected.status_code == 422
    assert list(body["properties"]) == known.split(", ")
    assert sorted(body["properties"]["trigger"]["enum"]) == [
        "drift",
        "manual",
        "schedule",
    ]


def component(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """Return `schema`, or the component schema its ``$ref`` names."""
    if "$ref" not in schema:
        return schema
    return document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]


def test_error_responses_documented(daemon: Daemon, document: dict[str, Any]) -> None:
    error = document["components"]["schemas"]["Error"]
    reference = {"$ref": "#/components/schemas/Error"}
    wrong = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            if "default" not in responses:
                wrong.append((method, path, "no default"))
            for status, response in responses.items():
                if status != "default" and int(status) < 400:
                    continue
                schema = response["content"]["application/json"]["schema"]
                if schema != reference:
                    wrong.append((method, path, status))

    sent = {
        "invalid value": httpx.post(
            f"{daemon.base}/v1/models/{MODEL}/predict",
            json={"rows": [{**row(0), "x1": "text"}]},
        ),
        "invalid parameter": httpx.get(
            f"{daemon.base}/v1/predictions", params={"limit": "x"}
        ),
        "unknown model": httpx.get(f"{daemon.base}/v1/models/nope/drift"),
        "unknown route": httpx.get(f"{daemon.base}/v1/nope"),
    }

    assert wrong == []
    assert "detail" not in error["properties"]
    for name, response in sent.items():
        assert response.status_code >= 400, name
        assert set(response.json()) <= set(error["properties"]), name
        assert set(error["required"]) <= set(response.json()), name


def test_predict_result_documented(daemon: Daemon, document: dict[str, Any]) -> None:
    content = document["paths"]["/v1/models/{name}/predict"]["post"]["responses"][
        "200"
    ]["content"]
    schema = content["application/json"]["schema"]
    prediction = schema["properties"]["predictions"]["items"]

    predicted = httpx.post(
        f"{daemon.base}/v1/models/{MODEL}/predict",
        json={"rows": [row(0), {**row(1), "note": "ignored"}]},
    )
    body = predicted.json()

    assert predicted.status_code == 200, predicted.text
    assert set(body) == set(schema["properties"])
    assert set(schema["required"]) <= set(body)
    for result in body["predictions"]:
        assert set(result) <= set(prediction["properties"])
    assert content["application/vnd.apache.arrow.stream"]["schema"]["format"] == (
        "binary"
    )


def test_overview_documented(daemon: Daemon, document: dict[str, Any]) -> None:
    response = document["paths"]["/v1/ui/overview"]["get"]["responses"]["200"]
    schema = component(document, response["content"]["application/json"]["schema"])
    properties = schema["properties"]

    overview = httpx.get(f"{daemon.base}/v1/ui/overview")
    body = overview.json()

    assert overview.status_code == 200
    assert set(body) == set(properties)
    for name in ("traffic", "prediction_log"):
        nested = component(document, properties[name])
        assert set(body[name]) == set(nested["properties"]), name
    for name in ("models", "jobs"):
        items = component(document, properties[name]["items"])
        assert body[name], name
        assert set(body[name][0]) == set(items["properties"]), name


def test_train_example_works_as_sent(daemon: Daemon, document: dict[str, Any]) -> None:
    body = request_schema(document, "post", "/v1/admin/train")
    response = document["paths"]["/v1/admin/train"]["post"]["responses"]["200"]
    result = component(document, response["content"]["application/json"]["schema"])
    (example,) = body["properties"]["model"]["examples"]

    trained = httpx.post(
        f"{daemon.base}/v1/admin/train", json={"model": example}, timeout=120
    )

    assert example == MODEL
    assert trained.status_code == 200, trained.text
    assert set(trained.json()) == set(result["properties"])


def test_label_example_is_class(daemon: Daemon, document: dict[str, Any]) -> None:
    body = request_schema(document, "post", "/v1/models/{name}/feedback")
    label = body["properties"]["labels"]["items"]["properties"]
    (example,) = label["label"]["examples"]

    listed = httpx.get(f"{daemon.base}/v1/models").json()["models"]
    predicted = httpx.post(
        f"{daemon.base}/v1/models/{MODEL}/predict", json={"rows": [row(5)]}
    ).json()
    sent = {"request_id": predicted["request_id"], "row": 0, "label": example}
    stored = httpx.post(
        f"{daemon.base}/v1/models/{MODEL}/feedback", json={"labels": [sent]}
    )

    assert example in listed[0]["classes"]
    assert "examples" not in label["request_id"]
    assert stored.status_code == 200, stored.text
    assert "_decode_labels" not in body["description"]
