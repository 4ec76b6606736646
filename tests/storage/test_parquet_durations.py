"""A Parquet duration column is stored as a count of its unit, with a warning."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from appliance.storage import Catalog, ingest, scan_sql


def test_duration_stored_as_count_warned(catalog: Catalog, tmp_path: Path) -> None:
    path = tmp_path / "waits.parquet"
    waits = [dt.timedelta(seconds=90), dt.timedelta(minutes=5)]
    table = pa.table(
        {"id": [1, 2], "wait": pa.array(waits, pa.duration("s")), "n": [3, 4]}
    )
    pq.write_table(table, path)

    result = ingest(catalog, "waits", [path])

    assert result.version.schema == {"id": "BIGINT", "wait": "BIGINT", "n": "BIGINT"}
    assert catalog.db.execute(scan_sql(result.version)).fetchall() == [
        (1, 90, 3),
        (2, 300, 4),
    ]
    assert result.warnings == [
        f"column 'wait' of {path} is a duration in seconds, which is stored as a "
        "BIGINT count of seconds; name the unit in the column, such as wait_s, "
        "so that readers know it"
    ]
