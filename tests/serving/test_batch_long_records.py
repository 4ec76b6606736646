"""Batch scoring input with a CSV record longer than DuckDB's maximum line size."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.errors import IngestError
from appliance.serving._batch import read_rows_file


def test_long_record_names_its_line(tmp_path: Path) -> None:
    source = tmp_path / "rows.csv"
    source.write_text("a,b\n1,x\n2," + "y" * 2_100_000 + "\n3,z\n")

    with pytest.raises(IngestError) as raised:
        read_rows_file(source)

    assert str(raised.value) == (
        f"{source}, line 3: the record of 2100002 bytes is longer than the "
        "maximum of 1999999 bytes that batch scoring reads; shorten or remove "
        "the record"
    )
