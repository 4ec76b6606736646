"""CSV records longer than the dataset's max_line_bytes: line, size and limit.

DuckDB's CSV reader rejects a record longer than its maximum line size. The
ingest quarantines such a record on its own line and reads the rest of the
file. The fixtures use a limit of 100 bytes so that they stay small.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from support import WriteFile

from appliance.config import DatasetConfig
from appliance.errors import IngestError
from appliance.storage import Catalog, IngestResult, ingest, scan_sql
from appliance.storage._unchanged import version_id

LIMIT = 100
LONG = "x" * 300


def long_reason(size: int, limit: int = LIMIT) -> str:
    return (
        f"record too long: {size} bytes, more than the maximum of {limit} bytes; "
        "shorten the record, or raise the dataset's max_line_bytes to its size or more"
    )


def settings(limit: int | None = LIMIT) -> DatasetConfig:
    return DatasetConfig(name="notes", max_line_bytes=limit)


def quarantined(catalog: Catalog) -> list[tuple]:
    return catalog.db.execute(
        "SELECT line, column_name, left(value, 12), reason FROM quarantine "
        "ORDER BY line"
    ).fetchall()


def accepted_ids(catalog: Catalog, result: IngestResult) -> list[int]:
    rows = catalog.db.execute(scan_sql(result.version)).fetchall()
    return sorted(row[0] for row in rows)


def test_long_record_quarantined_on_line(
    catalog: Catalog, write_file: WriteFile
) -> None:
    path = write_file("notes.csv", f"id,note\n1,a\n2,b\n3,{LONG}\n4,d\n5,e\n")

    result = ingest(catalog, "notes", [path], settings=settings())

    assert result.accepted == 4
    assert result.quarantined == 1
    assert quarantined(catalog) == [(4, None, "3,xxxxxxxxxx", long_reason(302))]
    assert accepted_ids(catalog, result) == [1, 2, 4, 5]


def test_long_record_after_multiline_field(
    catalog: Catalog, write_file: WriteFile
) -> None:
    # The quoted field spans lines 2 and 3, and line 5 is blank.
    text = f'id,note\n1,"a\nb"\n2,b\n\n3,{LONG}\n4,d\n'
    path = write_file("notes.csv", text)

    result = ingest(catalog, "notes", [path], settings=settings())

    assert result.accepted == 3
    assert [row[0] for row in quarantined(catalog)] == [6]
    assert accepted_ids(catalog, result) == [1, 2, 4]


def test_long_quoted_record_over_lines(catalog: Catalog, write_file: WriteFile) -> None:
    text = 'id,note\n1,a\n2,"' + "x\n" * 150 + '"\n3,c\n'
    path = write_file("notes.csv", text)

    result = ingest(catalog, "notes", [path], settings=settings())

    assert result.accepted == 2
    assert quarantined(catalog) == [(3, None, '2,"x\nx\nx\nx\nx', long_reason(304))]
    assert accepted_ids(catalog, result) == [1, 3]


def test_long_record_after_sniffed_rows(
    catalog: Catalog, write_file: WriteFile
) -> None:
    # The CSV sniffer reads the first 2,048 rows, and the typed read the rest.
    rows = "".join(f"{i},a\n" for i in range(1, 2101))
    path = write_file("notes.csv", f"id,note\n{rows}9999,{LONG}\n2101,z\n")

    result = ingest(catalog, "notes", [path], settings=settings())

    assert result.accepted == 2101
    assert quarantined(catalog) == [(2102, None, "9999,xxxxxxx", long_reason(305))]


def test_long_crlf_record_counts_return(
    catalog: Catalog, write_file: WriteFile
) -> None:
    path = write_file("notes.csv", f"id,note\r\n1,a\r\n2,{LONG}\r\n3,c\r\n")

    result = ingest(catalog, "notes", [path], settings=settings())

    assert result.accepted == 2
    assert [row[0] for row in quarantined(catalog)] == [3]
    assert quarantined(catalog)[0][3] == long_reason(303)


def test_long_record_strict_names_line(catalog: Catalog, write_file: WriteFile) -> None:
    path = write_file("notes.csv", f"id,note\n1,a\n2,b\n3,{LONG}\n4,d\n")

    with pytest.raises(IngestError) as raised:
        ingest(catalog, "notes", [path], settings=settings(), strict=True)

    message = str(raised.value)
    assert f"{path}, line 4: {long_reason(302)}" in message


def test_record_of_limit_accepted(catalog: Catalog, write_file: WriteFile) -> None:
    # Records of 100 and 101 bytes.
    text = f"id,note\n1,{'x' * 98}\n2,{'x' * 99}\n"
    path = write_file("notes.csv", text)

    result = ingest(catalog, "notes", [path], settings=settings())

    assert result.accepted == 1
    assert quarantined(catalog) == [(3, None, "2,xxxxxxxxxx", long_reason(101))]


def test_blank_lines_count_toward_size(catalog: Catalog, write_file: WriteFile) -> None:
    # Records of 100 bytes after blank lines and of 99 bytes after none.
    text = f"id,note\n1,a\n\n\n2,{'x' * 98}\n3,{'x' * 97}\n"
    path = write_file("notes.csv", text)

    result = ingest(catalog, "notes", [path], settings=settings())

    assert result.accepted == 2
    assert [row[0] for row in quarantined(catalog)] == [5]
    assert accepted_ids(catalog, result) == [1, 3]


def test_sniffed_long_record_names_line(catalog: Catalog, tmp_path: Path) -> None:
    # Without max_line_bytes, DuckDB's sniffer reads records shorter than
    # 2,000,000 bytes and fails on a longer one in the rows it samples.
    path = tmp_path / "notes.csv"
    path.write_text("id,note\n1,a\n2,b\n3," + "x" * 2_000_100 + "\n4,d\n")

    with pytest.raises(IngestError) as raised:
        ingest(catalog, "notes", [path], settings=settings(None))

    assert str(raised.value) == (
        f"{path}, line 4: the record of 2000102 bytes is longer than the maximum "
        "of 1999999 bytes, so the CSV format of the file cannot be detected; set "
        "[datasets.notes] max_line_bytes to the record's size or more, or shorten "
        "or remove the record"
    )


def test_large_limit_reads_long_record(catalog: Catalog, tmp_path: Path) -> None:
    path = tmp_path / "notes.csv"
    path.write_text("id,note\n1,a\n2," + "x" * 2_000_100 + "\n3,c\n")

    result = ingest(catalog, "notes", [path], settings=settings(2_100_000))

    assert result.accepted == 3
    assert result.quarantined == 0


def test_raised_limit_makes_new_version(
    catalog: Catalog, write_file: WriteFile
) -> None:
    path = write_file("notes.csv", f"id,note\n1,a\n2,{LONG}\n3,c\n")
    first = ingest(catalog, "notes", [path], settings=settings())

    again = ingest(catalog, "notes", [path], settings=settings(1000))

    assert first.quarantined == 1
    assert again.created
    assert again.version.version != first.version.version
    assert again.accepted == 3
    assert again.quarantined == 0
    assert accepted_ids(catalog, again) == [1, 2, 3]


def test_unset_limit_keeps_version_id(catalog: Catalog, write_file: WriteFile) -> None:
    # Versions ingested before max_line_bytes existed keep their ids.
    path = write_file("notes.csv", "id,note\n1,a\n")
    first = ingest(catalog, "notes", [path], settings=settings(None))

    again = ingest(catalog, "notes", [path], settings=DatasetConfig(name="notes"))

    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert first.version.version == version_id([digest], "replace", None, None)
    assert not again.created
    assert again.version.version == first.version.version
