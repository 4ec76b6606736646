"""Model input schemas published in the app's OpenAPI document.

The predict route takes rows whose columns depend on the model, so each served
model adds a ``<model>Row`` object schema to ``components/schemas`` of the
document at Litestar's default path (``/schema/openapi.json``).
"""

from __future__ import annotations

from litestar import Litestar
from litestar._openapi.plugin import OpenAPIPlugin
from litestar.openapi.spec import Components, OpenAPIType, Schema

from appliance.serving._inputs import BOOLEAN, INTEGER, NUMBER
from appliance.serving._onnx import OnnxModel

_KINDS = {
    NUMBER: OpenAPIType.NUMBER,
    INTEGER: OpenAPIType.INTEGER,
    BOOLEAN: OpenAPIType.BOOLEAN,
}
"""OpenAPI types of request columns; text and ``sql`` columns are strings."""


def publish_model_schema(app: Litestar, model: OnnxModel) -> None:
    """Add or replace the input row schema of `model` in the OpenAPI document."""
    document = app.openapi_schema
    if document.components is None:
        document.components = Components()
    if document.components.schemas is None:
        document.components.schemas = {}
    document.components.schemas[f"{model.name}Row"] = row_schema(model)
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
