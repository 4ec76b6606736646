"""The columns a prediction request sends, as `GET /v1/models` and OpenAPI list them.

A model's ``request`` columns (its schema.json) include the columns its
feature views fill. With the model's `RequestLookup`, those become optional.
The views' entity keys, which the lookup reads, are added as required columns
even though the model does not take them as inputs. The event time is added
as an optional column, because a row without it is joined as of the time of
the request.
"""

from __future__ import annotations

from typing import Any

from appliance.features import RequestLookup
from appliance.serving._inputs import STRING
from appliance.serving._onnx import OnnxModel


def request_fields(
    model: OnnxModel, lookup: RequestLookup | None
) -> list[dict[str, Any]]:
    """Return each column a request of `model` sends, in the schema's order.

    Each entry has ``name``, ``type`` (as in the schema's ``request``),
    ``required`` and ``description``. A column a feature view fills also has
    ``filled_from``, the view's name, and an event time the model does not
    take as an input has ``format``: ``date-time``.
    """
    fields = []
    for spec in model.request:
        fields.append(_field(spec["name"], spec["type"], lookup))
    if lookup is not None:
        listed = {field["name"] for field in fields}
        for key, kind in lookup.key_types.items():
            if key not in listed:
                fields.append(_field(key, kind, lookup))
        event_time = lookup.event_time
        if event_time is not None and event_time not in listed:
            fields.append(_field(event_time, STRING, lookup))
            fields[-1]["required"] = False
            fields[-1]["format"] = "date-time"
    return fields


def _field(name: str, kind: str, lookup: RequestLookup | None) -> dict[str, Any]:
    field: dict[str, Any] = {
        "name": name,
        "type": kind,
        "required": True,
        "description": None,
    }
    if lookup is None:
        return field
    if name in lookup.filled:
        view = lookup.filled[name]
        field["required"] = False
        field["filled_from"] = view
        field["description"] = f"Filled from feature view {view!r} when absent."
    elif name in lookup.keys:
        field["description"] = f"Entity key of feature view {lookup.keys[name]!r}."
    elif name == lookup.event_time:
        field["description"] = (
            "Event time, ISO 8601: the feature views are joined as of this time. "
            "A row without it is joined, and its derived columns computed, as of "
            "the time of the request."
        )
    return field
