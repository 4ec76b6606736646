"""Request body schemas of the routes that read their body themselves.

Litestar documents a request body only for a handler's ``data`` parameter,
which it decodes and validates before the handler runs. The JSON routes decode
their bodies with msgspec instead, for speed and for errors that name the row
and column, so each passes an `Operation` class from `body_operation` as its
``operation_class``. That class sets the request body to the JSON schema that
msgspec generates for the route's body Struct.

The predict route takes rows whose columns depend on the model, so each served
model adds a ``<model>Row`` object schema to ``components/schemas`` of the
document at Litestar's default path (``/schema/openapi.json``). The predict
operation's request body refers to those schemas.

Litestar documents its own error body, ``{status_code, detail, extra}``, and a
string for a route that returns bytes. `describe_responses` replaces both once
the document is built: every error response gets the ``Error`` schema of
`ErrorBody`, the predict route its JSON and Arrow results, and the examples
that name a model or dataset get names of the daemon's configuration.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import Field, dataclass, fields
from typing import Any

import msgspec
from litestar import Litestar
from litestar._openapi.plugin import OpenAPIPlugin
from litestar.openapi.spec import (
    Components,
    OpenAPIFormat,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Reference,
    RequestBody,
    Schema,
)

from appliance.config import Config
from appliance.features import RequestLookup
from appliance.serving._body import ARROW_STREAM, JSON
from appliance.serving._inputs import BOOLEAN, INTEGER, NUMBER
from appliance.serving._onnx import OnnxModel
from appliance.serving._request_fields import request_fields
from appliance.serving._responses import ErrorBody, PredictResult
from appliance.sqltypes import INTEGER_RANGES

_KINDS = {
    NUMBER: OpenAPIType.NUMBER,
    INTEGER: OpenAPIType.INTEGER,
    BOOLEAN: OpenAPIType.BOOLEAN,
}
"""OpenAPI types of request columns; text and ``sql`` columns are strings."""
_PREDICT_PATH = "/v1/models/{name}/predict"
_ROW_TITLE = " input row"
"""End of the title of every model input row schema."""
_ANY_ROW = Schema(
    type=OpenAPIType.OBJECT,
    description="Values by request column; GET /v1/models lists the request "
    "columns of each served model.",
)
"""Schema of a predict row before a model is published."""
_ERROR = Reference(ref="#/components/schemas/Error")
_ERROR_STATUS = 400
_OTHER_ERRORS = (
    "Any other error; error says what failed and what to do next. Common ones: "
    "404 for an unknown model, dataset or version, 409 for a conflicting job "
    "or alias, 422 for a request the daemon cannot act on, 500 for an internal "
    "error and 503 when the catalog cannot be read or written."
)
_PREDICT_ERRORS = {
    "404": "The model is not served, or has no such version.",
    "413": "The request has more rows than [server] max_rows, or a body larger "
    "than max_body_bytes.",
    "422": "A row lacks a column, has a value of the wrong type, or a value "
    "outside the model's checks or its integer column's range; the error names "
    "the row and column.",
}


def publish_model_schema(
    app: Litestar, model: OnnxModel, lookup: RequestLookup | None = None
) -> None:
    """Add or replace the input row schema of `model` in the OpenAPI document.

    Args:
        app: The daemon's app.
        model: The model version served.
        lookup: The keys and view columns of the model's feature lookup, for
            a model with feature views.
    """
    document = app.openapi_schema
    if document.components is None:
        document.components = Components()
    if document.components.schemas is None:
        document.components.schemas = {}
    schemas = document.components.schemas
    schemas[f"{model.name}Row"] = row_schema(model, lookup)
    _describe_predict(document)
    # The label example fits the first model by name, so it does not change
    # with the order in which models are loaded.
    if f"{model.name}Row" == _row_schema_names(document)[0]:
        _label_example(document, model)
    # Litestar keeps the document rendered as a dict after the first request
    # (litestar 2.25, OpenAPIPlugin._openapi_schema); clearing it renders the
    # change at the next request.
    plugin = app.plugins.get(OpenAPIPlugin)
    if getattr(plugin, "_openapi_schema", None) is not None:
        plugin._openapi_schema = None


def row_schema(model: OnnxModel, lookup: RequestLookup | None = None) -> Schema:
    """Return the JSON schema of one input row of `model`.

    The columns a feature view fills are optional, and the views' entity keys
    and event time are required (see `request_fields`).
    """
    properties = {}
    required = []
    sql_types = {spec["name"]: spec.get("sql_type") for spec in model.request}
    for field in request_fields(model, lookup):
        name = field["name"]
        low, high = _bounds(model, name, field["type"], sql_types.get(name))
        properties[name] = Schema(
            type=[_KINDS.get(field["type"], OpenAPIType.STRING), OpenAPIType.NULL],
            format=OpenAPIFormat(field["format"]) if "format" in field else None,
            description=field["description"],
            minimum=low,
            maximum=high,
        )
        if field["required"]:
            required.append(name)
    return Schema(
        type=OpenAPIType.OBJECT,
        title=f"{model.name} version {model.version} input row",
        description="Columns the model does not use are ignored; null is a "
        "missing value.",
        properties=properties,
        required=sorted(required),
    )


def _bounds(
    model: OnnxModel, name: str, kind: str, sql_type: str | None
) -> tuple[float | None, float | None]:
    """Return the minimum and maximum of a request column, None where unbounded.

    They are the model's checks, narrowed for an integer column to the range
    of its dataset type, which the input conversion also enforces.
    """
    checks = model.checks.get(name, {})
    low, high = checks.get("min"), checks.get("max")
    if kind != INTEGER or sql_type not in INTEGER_RANGES:
        return low, high
    type_low, type_high = INTEGER_RANGES[sql_type]
    low = type_low if low is None else max(low, type_low)
    high = type_high if high is None else min(high, type_high)
    return low, high


def _describe_predict(document: Any) -> None:
    """Set the predict operation's request body to the published row schemas."""
    path = (document.paths or {}).get(_PREDICT_PATH)
    operation = path.post if path is not None else None
    if operation is None:
        return

    names = _row_schema_names(document)
    references = [Reference(ref=f"#/components/schemas/{name}") for name in names]
    items: Reference | Schema = (
        references[0] if len(references) == 1 else Schema(one_of=references)
    )
    operation.request_body = predict_body(items)


def _row_schema_names(document: Any) -> list[str]:
    """Return the names of the published input row schemas, sorted."""
    return sorted(
        name
        for name, schema in document.components.schemas.items()
        if isinstance(schema, Schema) and (schema.title or "").endswith(_ROW_TITLE)
    )


def describe_responses(app: Litestar, config: Config) -> None:
    """Document the error body, the predict results and the name examples.

    Builds the OpenAPI document of `app` if it was not built yet. The
    changes that `publish_model_schema` makes later keep these.
    """
    document = app.openapi_schema
    if document.components is None:
        document.components = Components()
    if document.components.schemas is None:
        document.components.schemas = {}
    document.components.schemas["Error"] = struct_schema(ErrorBody)
    for item in (document.paths or {}).values():
        for operation in _operations(item):
            operation.responses = _with_error_bodies(operation.responses or {})
    _describe_predict_responses(document)
    _name_examples(document, config)


def _operations(item: Any) -> list[Operation]:
    methods = ("get", "put", "post", "delete", "patch")
    return [getattr(item, m) for m in methods if getattr(item, m, None) is not None]


def _with_error_bodies(responses: dict[str, Any]) -> dict[str, Any]:
    """Return `responses` with the ``Error`` body on every error status.

    A success response that Litestar documents as a JSON string, because
    the route returns encoded bytes, becomes a JSON object.
    """
    described = {}
    for status, response in responses.items():
        if isinstance(response, OpenAPIResponse):
            if status.isdigit() and int(status) >= _ERROR_STATUS:
                response = OpenAPIResponse(
                    description=response.description, content=_error_content()
                )
            else:
                _object_not_string(response)
        described[status] = response
    described["default"] = OpenAPIResponse(
        description=_OTHER_ERRORS, content=_error_content()
    )
    return described


def _error_content() -> dict[str, OpenAPIMediaType]:
    return {JSON: OpenAPIMediaType(schema=_ERROR)}


def _object_not_string(response: OpenAPIResponse) -> None:
    media = (response.content or {}).get(JSON)
    schema = media.schema if media is not None else None
    if isinstance(schema, Schema) and schema.type == OpenAPIType.STRING:
        media.schema = Schema(type=OpenAPIType.OBJECT)


def _describe_predict_responses(document: Any) -> None:
    """Set the predict operation's result and its error responses."""
    path = (document.paths or {}).get(_PREDICT_PATH)
    operation = path.post if path is not None else None
    if operation is None:
        return
    responses = dict(operation.responses or {})
    responses["200"] = OpenAPIResponse(
        description="Predictions of the rows, in the request's format.",
        content={
            JSON: OpenAPIMediaType(schema=struct_schema(PredictResult)),
            ARROW_STREAM: OpenAPIMediaType(
                schema=Schema(
                    type=OpenAPIType.STRING,
                    format=OpenAPIFormat.BINARY,
                    description="Arrow IPC stream with a prediction column and, "
                    "for a classifier, a probability_<class> column per class.",
                )
            ),
        },
    )
    for status, text in _PREDICT_ERRORS.items():
        responses[status] = OpenAPIResponse(description=text, content=_error_content())
    operation.responses = responses


def _name_examples(document: Any, config: Config) -> None:
    """Set the examples of the train and ingest bodies to declared names."""
    model = next(iter(config.models), None)
    dataset = config.models[model].dataset if model is not None else None
    _set_example(document, "/v1/admin/train", ["model"], model)
    _set_example(document, "/v1/admin/ingest", ["dataset"], dataset)


def _label_example(document: Any, model: OnnxModel) -> None:
    """Set the feedback label example to a class, or a value, of `model`."""
    label = model.classes[0] if model.classes else 1.0
    _set_example(document, "/v1/models/{name}/feedback", ["labels", "label"], label)


def _set_example(document: Any, path: str, names: list[str], value: Any) -> None:
    """Set the example of a JSON body field, found by property and item names.

    A value of None removes the example, since no value would work as sent.
    """
    item = (document.paths or {}).get(path)
    body = item.post.request_body if item is not None and item.post else None
    if not isinstance(body, RequestBody) or JSON not in (body.content or {}):
        return
    schema = body.content[JSON].schema
    for name in names:
        if isinstance(schema, Schema) and schema.type == OpenAPIType.ARRAY:
            schema = schema.items
        if not isinstance(schema, Schema) or name not in (schema.properties or {}):
            return
        schema = schema.properties[name]
    if isinstance(schema, Schema):
        schema.examples = None if value is None else [value]


def predict_body(items: Reference | Schema = _ANY_ROW) -> RequestBody:
    """Return the request body of the predict route, with rows like `items`."""
    rows = Schema(
        type=OpenAPIType.OBJECT,
        properties={"rows": Schema(type=OpenAPIType.ARRAY, items=items)},
        required=["rows"],
    )
    return RequestBody(
        required=True,
        description="Rows with the input columns of the model named in the path "
        "(its <model>Row schema), as JSON or as an Arrow IPC stream.",
        content={
            JSON: OpenAPIMediaType(schema=rows),
            ARROW_STREAM: OpenAPIMediaType(
                schema=Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY)
            ),
        },
    )


def body_operation(
    body: type[msgspec.Struct], description: str, *, required: bool = True
) -> type[Operation]:
    """Return an `Operation` class whose request body is the JSON `body` Struct.

    Args:
        body: The Struct the route decodes its body into, or one that
            describes the fields the route reads by hand.
        description: What the body is for, shown above its schema.
        required: False when the route also takes an empty body.
    """

    def make_body() -> RequestBody:
        return RequestBody(
            required=required,
            description=description,
            content={JSON: OpenAPIMediaType(schema=struct_schema(body))},
        )

    return operation_with_body(make_body)


def operation_with_body(make_body: Callable[[], RequestBody]) -> type[Operation]:
    """Return an `Operation` class whose request body `make_body` returns.

    Each document gets a new body, so a change to one document, as
    `publish_model_schema` makes, leaves the others as they are.
    """

    @dataclass
    class BodyOperation(Operation):
        def __post_init__(self) -> None:
            self.request_body = make_body()

    return BodyOperation


def struct_schema(struct: type[msgspec.Struct]) -> Schema:
    """Return msgspec's JSON schema of `struct` as a Litestar `Schema`.

    Nested Structs are written in place, because Litestar replaces
    ``components/schemas`` with the schemas of handler types when it builds
    the document.
    """
    generated = msgspec.json.schema(struct)
    return _to_schema(generated, generated.get("$defs", {}))


def _keyword(field: Field[Any]) -> str:
    """Return the JSON schema keyword that `Schema.to_schema` writes for `field`."""
    head, *rest = field.name.split("_")
    return field.metadata.get("alias") or head + "".join(p.title() for p in rest)


_SCHEMA_FIELDS = {_keyword(field): field.name for field in fields(Schema)}
"""`Schema` field names by JSON schema keyword."""
_SUBSCHEMAS = {"items", "additional_properties", "schema_not", "contains"}
_SCHEMA_LISTS = {"all_of", "any_of", "one_of", "prefix_items"}


def _to_schema(node: dict[str, Any], definitions: dict[str, Any]) -> Schema:
    """Convert one JSON schema object; ``$ref`` names an entry of `definitions`.

    Raises:
        ValueError: `node` has a keyword that `Schema` has no field for.
    """
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        node = {**definitions[name], **node}
    values = {}
    for keyword, value in node.items():
        if keyword in ("$ref", "$defs"):
            continue
        name = _SCHEMA_FIELDS.get(keyword)
        if name is None:
            raise ValueError(
                f"JSON schema keyword {keyword!r} has no field in Litestar's Schema, "
                "so the OpenAPI document cannot show it; remove it from the "
                "Struct's msgspec.Meta"
            )
        values[name] = _to_value(name, value, definitions)
    return Schema(**values)


def _to_value(name: str, value: Any, definitions: dict[str, Any]) -> Any:
    if name == "type":
        if isinstance(value, list):
            return [OpenAPIType(kind) for kind in value]
        return OpenAPIType(value)
    if name == "format":
        return OpenAPIFormat(value)
    if name == "properties":
        return {key: _to_schema(item, definitions) for key, item in value.items()}
    if name in _SCHEMA_LISTS:
        return [_to_schema(item, definitions) for item in value]
    if name in _SUBSCHEMAS and isinstance(value, dict):
        return _to_schema(value, definitions)
    return value
