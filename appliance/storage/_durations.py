"""A warning for the Arrow duration columns of a Parquet file.

Parquet has no duration type, so Arrow writes a duration as a 64-bit
integer and keeps its unit only in the Arrow schema in the file's metadata.
DuckDB 2.0.1 reads such a column as BIGINT, so the version stores counts of
the unit without saying which unit it was.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from appliance.storage._sources import InputFile

_UNITS = {
    "s": "seconds",
    "ms": "milliseconds",
    "us": "microseconds",
    "ns": "nanoseconds",
}


def duration_warnings(source: InputFile) -> list[str]:
    """Return a warning for each duration column of a Parquet file.

    A file whose schema cannot be read gets none, because the read itself
    reports it.
    """
    try:
        schema = pq.read_schema(source.read_path)
    except (OSError, pa.ArrowException):
        return []
    return [
        f"column {field.name!r} of {source.path} is a duration in "
        f"{_UNITS[field.type.unit]}, which is stored as a BIGINT count of "
        f"{_UNITS[field.type.unit]}; name the unit in the column, such as "
        f"{field.name}_{field.type.unit}, so that readers know it"
        for field in schema
        if pa.types.is_duration(field.type)
    ]
