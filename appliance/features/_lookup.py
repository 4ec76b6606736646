"""The columns a prediction request of a model with feature views carries.

A request sends the entity keys of the model's views and, for timestamped
views, the event time, and the daemon fills each view column the request
lacks. `RequestLookup` names those columns so that the published input schema
can list the keys as required and the view columns as optional.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pyarrow as pa

from appliance.config import FeatureViewConfig
from appliance.features._sql import feature_columns


@dataclass(frozen=True)
class RequestLookup:
    """The columns a model's feature lookup reads from a request or fills."""

    keys: dict[str, str]
    """View that each entity key column is a key of, the first one declared."""
    key_types: dict[str, str]
    """JSON type of each entity key: ``integer`` for integer keys of the
    view's rows, else ``string``."""
    event_time: str | None
    """The model's event time column, when a view has a timestamp."""
    filled: dict[str, str]
    """View that fills each view column a request may leave out."""


def request_lookup(
    views: Sequence[FeatureViewConfig],
    event_time: str | None,
    columns: Mapping[str, Sequence[str]],
    schemas: Mapping[str, pa.Schema],
) -> RequestLookup:
    """Return the lookup of a model's `views`, in their declared order.

    Args:
        views: The model's feature views.
        event_time: The model's ``event_timestamp``.
        columns: Output columns of each view's SQL, by view name; a view not
            loaded yet fills only its derived columns.
        schemas: Arrow schema of each loaded view's rows, by view name.
    """
    keys: dict[str, str] = {}
    key_types: dict[str, str] = {}
    filled: dict[str, str] = {}
    for view in views:
        schema = schemas.get(view.name)
        for key in view.entities:
            if key in filled:
                # An earlier view fills it, as in a chain of views.
                continue
            keys.setdefault(key, view.name)
            integer = schema is not None and key in schema.names
            integer = integer and pa.types.is_integer(schema.field(key).type)
            key_types.setdefault(key, "integer" if integer else "string")
        for name in feature_columns(view, columns.get(view.name, ())):
            filled.setdefault(name, view.name)
    timed = any(view.timestamp is not None for view in views)
    return RequestLookup(keys, key_types, event_time if timed else None, filled)
