"""Model input schemas published in the app's OpenAPI document.

The predict route takes rows whose columns depend on the model, so each served
model adds a ``<model>Row`` object schema to ``components/schemas`` of the
document at Litestar's default path (``/schema/openapi.json``). The predict
operation's request body refers to those schemas, and its error responses are
listed, since the route reads its body itself and Litestar cannot infer them.
"""

from __future__ import annotations

from typing import Any

from litestar import Litestar
from litestar._openapi.plugin import OpenAPIPlugin
from litestar.openapi.spec import (
    Components,
    OpenAPIFormat,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Reference,
    RequestBody,
    Schema,
)

from appliance.serving._inputs import BOOLEAN, INTEGER, NUMBER
from appliance.serving._onnx import OnnxModel

_KINDS = {
    NUMBER: OpenAPIType.NUMBER,
    INTEGER: OpenAPIType.INTEGER,
    BOOLEAN: OpenAPIType.BOOLEAN,
}
"""OpenAPI types of request columns; text and ``sql`` columns are strings."""
_PREDICT_PATH = "/v1/models/{name}/predict"
_ROW_TITLE = " input row"
"""End of the title of every model input row schema."""
_PREDICT_ERRORS = {
    "404": "The model is not served, or has no such version.",
    "413": "The request has more rows than [server] max_rows, or a body larger "
    "than max_body_bytes.",
    "422": "A row lacks a column, has a value of the wrong type, or a value "
    "outside the model's checks; the error names the row and column.",
}


def publish_model_schema(app: Litestar, model: OnnxModel) -> None:
    """Add or replace the input row schema of `model` in the OpenAPI document."""
    document = app.openapi_schema
    if document.components is None:
        document.components = Components()
    if document.components.schemas is None:
        document.components.schemas = {}
    document.components.schemas[f"{model.name}Row"] = row_schema(model)
    _describe_predict(document)
    # Litestar keeps the document rendered as a dict after the first request
    # (litestar 2.25, OpenAPIPlugin._openapi_schema); clearing it renders the
    # change at the next request.
    plugin = app.plugins.get(OpenAPIPlugin)
    if getattr(plugin, "_openapi_schema", None) is not None:
        plugin._openapi_schema = None


def row_schema(model: OnnxModel) -> Schema:
    """Return the JSON schema of one input row of `model`."""
    properties = {}
    for spec in model.request:
        kind = _KINDS.get(spec["type"], OpenAPIType.STRING)
        bounds = model.checks.get(spec["name"], {})
        properties[spec["name"]] = Schema(
            type=[kind, OpenAPIType.NULL],
            minimum=bounds.get("min"),
            maximum=bounds.get("max"),
        )
    return Schema(
        type=OpenAPIType.OBJECT,
        title=f"{model.name} version {model.version} input row",
        description="Columns the model does not use are ignored; null is a "
        "missing value.",
        properties=properties,
        required=sorted(properties),
    )


def _describe_predict(document: Any) -> None:
    """Set the predict operation's request body and error responses."""
    path = (document.paths or {}).get(_PREDICT_PATH)
    operation = path.post if path is not None else None
    if operation is None:
        return

    names = sorted(
        name
        for name, schema in document.components.schemas.items()
        if isinstance(schema, Schema) and (schema.title or "").endswith(_ROW_TITLE)
    )
    references = [Reference(ref=f"#/components/schemas/{name}") for name in names]
    items: Reference | Schema = (
        references[0] if len(references) == 1 else Schema(one_of=references)
    )
    rows = Schema(
        type=OpenAPIType.OBJECT,
        properties={"rows": Schema(type=OpenAPIType.ARRAY, items=items)},
        required=["rows"],
    )

    operation.request_body = RequestBody(
        required=True,
        description="Rows with the input columns of the model named in the path "
        "(its <model>Row schema), as JSON or as an Arrow IPC stream.",
        content={
            "application/json": OpenAPIMediaType(schema=rows),
            "application/vnd.apache.arrow.stream": OpenAPIMediaType(
                schema=Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY)
            ),
        },
    )

    responses = dict(operation.responses or {})
    for status, text in _PREDICT_ERRORS.items():
        responses.setdefault(status, OpenAPIResponse(description=text))
    operation.responses = responses
