"""Request body schemas from msgspec Structs, as the route Operations set them."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
import pytest
from litestar import Litestar, Request, post

from appliance.config import Config
from appliance.serving import DaemonState, ServingMetrics, create_app
from appliance.serving._openapi import body_operation, struct_schema


class Point(msgspec.Struct):
    """A point on a plane."""

    x: float
    y: Annotated[float, msgspec.Meta(ge=0, description="Height.", examples=[2.5])]


class Shape(msgspec.Struct, forbid_unknown_fields=True):
    """Points joined in order."""

    points: list[Point]
    kind: Literal["line", "polygon"] = "line"
    label: str | None = None


def test_struct_schema_inlines_nested_struct() -> None:
    schema = struct_schema(Shape).to_schema()
    point = schema["properties"]["points"]["items"]

    assert schema["title"] == "Shape"
    assert schema["description"] == "Points joined in order."
    assert schema["required"] == ["points"]
    assert schema["additionalProperties"] is False
    assert schema["properties"]["kind"]["default"] == "line"
    assert schema["properties"]["label"]["anyOf"] == [
        {"type": "string"},
        {"type": "null"},
    ]
    assert point["title"] == "Point"
    assert point["properties"]["y"] == {
        "type": "number",
        "minimum": 0,
        "description": "Height.",
        "examples": [2.5],
    }


def test_struct_schema_rejects_unknown_keyword() -> None:
    class Tagged(msgspec.Struct):
        tag: Annotated[str, msgspec.Meta(extra_json_schema={"x-colour": "red"})]

    with pytest.raises(ValueError, match="'x-colour'"):
        struct_schema(Tagged)


def test_body_operation_documents_body() -> None:
    @post("/shapes", operation_class=body_operation(Shape, "A shape.", required=False))
    async def add_shape(request: Request[Any, Any, Any]) -> None:
        await request.body()

    document = Litestar([add_shape]).openapi_schema.to_schema()
    body = document["paths"]["/shapes"]["post"]["requestBody"]

    assert body["description"] == "A shape."
    assert body["required"] is False
    assert body["content"]["application/json"]["schema"]["title"] == "Shape"


def test_predict_body_without_models(tmp_path: Any) -> None:
    state = DaemonState(
        config=Config(path=tmp_path / "config.toml"),
        metrics=ServingMetrics(),
        host="127.0.0.1",
        port=0,
    )
    document = create_app(state).openapi_schema.to_schema()
    body = document["paths"]["/v1/models/{name}/predict"]["post"]["requestBody"]
    rows = body["content"]["application/json"]["schema"]["properties"]["rows"]

    assert body["required"] is True
    assert rows["items"]["type"] == "object"
    assert "application/vnd.apache.arrow.stream" in body["content"]
