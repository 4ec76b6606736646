"""The keys a request of a model with feature views sends, and the columns filled."""

from __future__ import annotations

import pyarrow as pa

from appliance.config import FeatureViewConfig
from appliance.features._lookup import request_lookup

PLANES = FeatureViewConfig(
    name="planes",
    sql="SELECT tailnum, model, year FROM planes",
    entities=("tailnum",),
    derive={"plane_age": "year(time_hour) - year"},
)
MODELS = FeatureViewConfig(
    name="models",
    sql="SELECT model, valid_from, seats FROM models",
    entities=("model",),
    timestamp="valid_from",
)
SITES = FeatureViewConfig(
    name="sites", sql="SELECT site, level FROM sites", entities=("site",)
)
COLUMNS = {
    "planes": ["tailnum", "model", "year"],
    "models": ["model", "valid_from", "seats"],
    "sites": ["site", "level"],
}
SCHEMAS = {
    "planes": pa.schema([("tailnum", pa.string()), ("model", pa.string())]),
    "sites": pa.schema([("site", pa.int32()), ("level", pa.string())]),
}


def test_lookup_of_chained_views() -> None:
    lookup = request_lookup([PLANES, MODELS, SITES], "time_hour", COLUMNS, SCHEMAS)

    # The models view is keyed by a column the planes view fills.
    assert lookup.keys == {"tailnum": "planes", "site": "sites"}
    assert lookup.key_types == {"tailnum": "string", "site": "integer"}
    assert lookup.event_time == "time_hour"
    assert lookup.filled == {
        "model": "planes",
        "year": "planes",
        "plane_age": "planes",
        "seats": "models",
        "level": "sites",
    }


def test_lookup_of_static_views_has_no_event_time() -> None:
    lookup = request_lookup([SITES], "time_hour", COLUMNS, {})

    assert lookup.event_time is None
    assert lookup.keys == {"site": "sites"}
    # A view not loaded yet has no schema, so its key is taken as text.
    assert lookup.key_types == {"site": "string"}


def test_lookup_before_load_fills_derived_only() -> None:
    lookup = request_lookup([PLANES], None, {}, {})

    assert lookup.filled == {"plane_age": "planes"}
