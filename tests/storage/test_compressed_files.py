"""Compressed CSV and JSON-lines files: read as their decompressed text."""

from __future__ import annotations

import gzip
import hashlib
import importlib
import shutil
from pathlib import Path

import pytest
from support import WriteFile

from appliance.config import ColumnRule, ContractConfig, DatasetConfig
from appliance.errors import IngestError, StorageError
from appliance.storage import (
    Catalog,
    ingest,
    latest_version,
    list_quarantine,
    remove_orphan_folders,
    scan_sql,
)
from appliance.storage._compressed import decompress, readable_suffixes

_AT_MOST_10 = ContractConfig(columns={"a": ColumnRule(type="BIGINT", max=10)})
_HAS_ZSTD = ".zst" in readable_suffixes()
# A quoted value over two lines and a blank line put the row with 50 on
# line 6, while DuckDB reads it as the third record.
_CSV = b'a,b\n1,"two\nlines"\n\n2,y\n50,z\n3,w\n'
_JSONL = b'{"a": 1}\n\n{"a": 2}\n{"a": 50}\n'


def gzipped(write_file: WriteFile, name: str, content: bytes) -> Path:
    return write_file(name, gzip.compress(content))


def settings(name: str = "d") -> DatasetConfig:
    return DatasetConfig(name, contract=_AT_MOST_10)


def leftover_copies(catalog: Catalog) -> list[Path]:
    return list((catalog.home / "decompressed").glob("*/*"))


def test_gzip_csv_quarantine_line(catalog: Catalog, write_file: WriteFile) -> None:
    path = gzipped(write_file, "x.csv.gz", _CSV)

    result = ingest(catalog, "d", [path], settings=settings())

    assert (result.accepted, result.quarantined) == (3, 1)
    [row] = list_quarantine(catalog, "d")
    assert row.source == str(path.resolve())
    assert (row.line, row.column, row.value) == (6, "a", "50")
    assert result.version.sources == [
        {
            "path": str(path.resolve()),
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        }
    ]
    assert leftover_copies(catalog) == []


def test_gzip_csv_strict_message(catalog: Catalog, write_file: WriteFile) -> None:
    path = gzipped(write_file, "x.csv.gz", _CSV)

    with pytest.raises(IngestError, match=r"x\.csv\.gz, line 6, column 'a'") as raised:
        ingest(catalog, "d", [path], settings=settings(), strict=True)

    assert "decompressed" not in str(raised.value)
    assert catalog.db.execute("SELECT count(*) FROM dataset_versions").fetchall() == [
        (0,)
    ]
    assert leftover_copies(catalog) == []


def test_gzip_jsonl_quarantine_line(catalog: Catalog, write_file: WriteFile) -> None:
    path = gzipped(write_file, "x.jsonl.gz", _JSONL)

    result = ingest(catalog, "d", [path], settings=settings())

    assert (result.accepted, result.quarantined) == (2, 1)
    [row] = list_quarantine(catalog, "d")
    assert row.source == str(path.resolve())
    assert (row.line, row.column, row.value) == (4, "a", "50")


def test_gzip_jsonl_invalid_line(catalog: Catalog, write_file: WriteFile) -> None:
    path = gzipped(write_file, "x.ndjson.gz", b'{"a": 1}\n\n{"a": 2, b: 3}\n')

    result = ingest(catalog, "d", [path])

    assert (result.accepted, result.quarantined) == (1, 1)
    [row] = list_quarantine(catalog, "d")
    assert (row.source, row.line, row.value) == (
        str(path.resolve()),
        3,
        '{"a": 2, b: 3}',
    )
    assert row.reason.startswith("invalid JSON: Expecting property name")
    assert [p.name for p in catalog.home.rglob("valid_lines_*")] == []


def test_gzip_jsonl_invalid_utf8(catalog: Catalog, write_file: WriteFile) -> None:
    path = gzipped(write_file, "x.jsonl.gz", b'{"a": "ok"}\n{"a": "\xff"}\n')

    with pytest.raises(
        IngestError, match=r"x\.jsonl\.gz, line 2, byte 8: 0xff is not valid UTF-8"
    ):
        ingest(catalog, "d", [path])


_REJECTED = [
    ("blank.csv.gz", b"\n\n\n", r"blank\.csv\.gz: the file contains only blank"),
    ("first.csv.gz", b"\na,b\n1,2\n", r"first\.csv\.gz, line 1: the line is empty"),
    ("bom.csv.gz", b"\xef\xbb\xbf", r"bom\.csv\.gz: file contains only a UTF-8 byte"),
    ("dup.csv.gz", b"a,a\n1,2\n", r"dup\.csv\.gz, line 1: duplicate column name"),
    ("arr.jsonl.gz", b"[1, 2]\n", r"arr\.jsonl\.gz: no line is a JSON object"),
    ("case.jsonl.gz", b'{"a": 1}\n{"A": 2}\n', r"case\.jsonl\.gz, line 2: key 'A'"),
]
"""File name, decompressed content and the expected error."""


@pytest.mark.parametrize(
    ("name", "content", "error"), _REJECTED, ids=[name for name, *_ in _REJECTED]
)
def test_gzip_file_checks(
    catalog: Catalog, write_file: WriteFile, name: str, content: bytes, error: str
) -> None:
    path = gzipped(write_file, name, content)

    with pytest.raises(IngestError, match=error):
        ingest(catalog, "d", [path])


def test_gzip_jsonl_repeated_key_quarantined(
    catalog: Catalog, write_file: WriteFile
) -> None:
    path = gzipped(write_file, "x.jsonl.gz", b'{"a": 1}\n\n{"a": 2, "a": 3}\n')

    result = ingest(catalog, "d", [path])

    assert (result.accepted, result.quarantined) == (1, 1)
    [row] = list_quarantine(catalog, "d")
    assert (row.source, row.line) == (str(path.resolve()), 3)
    assert "key 'a' appears 2 times" in row.reason


def test_same_gzip_again_unchanged(catalog: Catalog, write_file: WriteFile) -> None:
    path = gzipped(write_file, "x.csv.gz", _CSV)
    first = ingest(catalog, "d", [path], settings=settings())

    again = ingest(catalog, "d", [path], settings=settings())

    assert again.created is False
    assert again.version.version == first.version.version
    assert leftover_copies(catalog) == []


def test_truncated_gzip_rejected(catalog: Catalog, write_file: WriteFile) -> None:
    whole = gzip.compress(b"a,b\n" + b"".join(b"%d,x\n" % i for i in range(5000)))
    path = write_file("x.csv.gz", whole[: len(whole) // 2])

    with pytest.raises(
        IngestError, match=r"x\.csv\.gz: the file ends before the end of its compressed"
    ):
        ingest(catalog, "d", [path])

    assert catalog.db.execute("SELECT count(*) FROM dataset_versions").fetchall() == [
        (0,)
    ]
    assert leftover_copies(catalog) == []


def test_plain_text_named_gz_rejected(catalog: Catalog, write_file: WriteFile) -> None:
    path = write_file("x.csv.gz", b"a,b\n1,2\n")

    with pytest.raises(IngestError, match=r"x\.csv\.gz: not a gzip file .* x\.csv"):
        ingest(catalog, "d", [path])


def test_damaged_gzip_rejected(catalog: Catalog, write_file: WriteFile) -> None:
    data = bytearray(gzip.compress(b"a,b\n" + b"1,2\n" * 1000))
    data[-8] ^= 0xFF  # The CRC-32 of the decompressed bytes.
    path = write_file("x.csv.gz", bytes(data))

    with pytest.raises(
        IngestError, match=r"x\.csv\.gz: the compressed data is damaged"
    ):
        ingest(catalog, "d", [path])


def test_empty_gzip_rejected(catalog: Catalog, write_file: WriteFile) -> None:
    path = gzipped(write_file, "x.csv.gz", b"")

    with pytest.raises(IngestError, match=r"x\.csv\.gz: the file is empty once"):
        ingest(catalog, "d", [path])


def test_parquet_gz_rejected(catalog: Catalog, write_file: WriteFile) -> None:
    path = gzipped(write_file, "x.parquet.gz", b"PAR1")

    with pytest.raises(IngestError, match=r"x\.parquet\.gz: a Parquet file compresses"):
        ingest(catalog, "d", [path])


@pytest.mark.skipif(_HAS_ZSTD, reason="this Python reads zstd files")
def test_zst_without_zstd_module_rejected(
    catalog: Catalog, write_file: WriteFile
) -> None:
    path = write_file("x.csv.zst", b"(\xb5/\xfd")

    with pytest.raises(IngestError, match=r"x\.csv\.zst: reading zstd files needs"):
        ingest(catalog, "d", [path])


@pytest.mark.skipif(not _HAS_ZSTD, reason="Python 3.14 or later reads zstd files")
def test_zst_csv_quarantine_names_file(catalog: Catalog, write_file: WriteFile) -> None:
    zstd = importlib.import_module("compression.zstd")
    path = write_file("x.tsv.zst", zstd.compress(_CSV.replace(b",", b"\t")))

    ingest(catalog, "d", [path], settings=settings())

    [row] = list_quarantine(catalog, "d")
    assert (row.source, row.line) == (str(path.resolve()), 6)


def test_plain_and_gzip_in_one_ingest(catalog: Catalog, write_file: WriteFile) -> None:
    plain = write_file("a.csv", b"a,b\n1,x\n2,y\n")
    compressed = gzipped(write_file, "b.csv.gz", _CSV)

    result = ingest(catalog, "d", [plain, compressed], settings=settings())

    assert (result.accepted, result.quarantined) == (5, 1)
    [row] = list_quarantine(catalog, "d")
    assert (row.source, row.line) == (str(compressed.resolve()), 6)


def test_gzip_copy_of_plain_file_rejected(
    catalog: Catalog, write_file: WriteFile
) -> None:
    plain = write_file("a.csv", _CSV)
    compressed = gzipped(write_file, "a.csv.gz", _CSV)

    with pytest.raises(IngestError, match=r"a\.csv\.gz has the same content as"):
        ingest(catalog, "d", [plain, compressed])


def test_gzip_csv_types_whole_file(catalog: Catalog, write_file: WriteFile) -> None:
    # The sniffer reads the first 2048 rows, all integers.
    lines = b"".join(b"%d,%d\n" % (i, i) for i in range(5000))
    path = gzipped(write_file, "x.txt.gz", b"a,b\n" + lines + b"1,2.5\n")

    result = ingest(catalog, "d", [path])

    assert result.version.schema == {"a": "BIGINT", "b": "DOUBLE"}


def test_gzip_csv_bom_latin1_and_null_tokens(
    catalog: Catalog, write_file: WriteFile
) -> None:
    text = "\ufeffname;score\ncafé;NA\nthé;3\n".encode("utf-8")
    bom = gzipped(write_file, "bom.csv.gz", text)
    latin = gzipped(
        write_file, "latin.csv.gz", "name;score\ncafé;NA\n".encode("latin-1")
    )

    ingest(catalog, "u", [bom], settings=DatasetConfig("u", null_values=("NA",)))
    latin_settings = DatasetConfig("l", encoding="latin-1", null_values=("NA",))
    ingest(catalog, "l", [latin], settings=latin_settings)

    for dataset, expected in (
        ("u", [("café", None), ("thé", 3)]),
        ("l", [("café", None)]),
    ):
        stored = latest_version(catalog, dataset)
        rows = catalog.db.execute(f"{scan_sql(stored)} ORDER BY name").fetchall()
        assert rows == expected


def test_gzip_csv_ragged_row_quarantined(
    catalog: Catalog, write_file: WriteFile
) -> None:
    path = gzipped(write_file, "x.csv.gz", b"a,b\n1,x\n2,y,extra\n3,z\n")

    result = ingest(catalog, "d", [path])

    assert (result.accepted, result.quarantined) == (2, 1)
    [row] = list_quarantine(catalog, "d")
    assert (row.source, row.line) == (str(path.resolve()), 3)
    assert "too many fields" in row.reason


def test_gzip_csv_carriage_returns(catalog: Catalog, write_file: WriteFile) -> None:
    path = gzipped(write_file, "mac.csv.gz", b"a,b\r1,x\r2,y\r")

    with pytest.raises(IngestError, match=r"mac\.csv\.gz, line 1: .*gzip -dc mac"):
        ingest(catalog, "d", [path])


def test_lost_folder_rebuilt_from_gzip(catalog: Catalog, write_file: WriteFile) -> None:
    path = gzipped(write_file, "x.csv.gz", _CSV)
    first = ingest(catalog, "d", [path], settings=settings())
    shutil.rmtree(first.version.path)

    again = ingest(catalog, "d", [path], settings=settings())

    assert again.rebuilt == {first.version.version: 1}
    rows = catalog.db.execute(f"{scan_sql(first.version)} ORDER BY a").fetchall()
    assert [row[0] for row in rows] == [1, 2, 3]


def test_full_disk_names_copy_folder(write_file: WriteFile) -> None:
    path = gzipped(write_file, "x.csv.gz", _CSV)

    with pytest.raises(
        StorageError, match=r"x\.csv\.gz: cannot write its decompressed"
    ):
        decompress(path, Path("/dev/full"))


def test_copies_of_stopped_ingest_removed(catalog: Catalog) -> None:
    left = catalog.home / "decompressed" / "ingest-stopped"
    left.mkdir(parents=True)
    (left / "1_x.csv").write_bytes(b"a\n1\n")

    removed = remove_orphan_folders(catalog)

    assert removed == [left]
    assert not left.exists()
