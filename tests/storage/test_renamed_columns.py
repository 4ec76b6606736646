"""Column names that DuckDB would rename: repeated, empty, or equal but for case.

DuckDB 2.0.1 renames the second of two names that differ only in case to
``a_1`` and an empty Parquet name to ``C1``, and a Hive read takes any column
spelt ``version`` in any case from the folder name. Each is rejected.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support import start_daemon, stop_daemon

from appliance.config import ColumnRule, ContractConfig, DatasetConfig
from appliance.errors import IngestError
from appliance.storage import Catalog, ingest, list_versions, scan_sql

WriteFile = Callable[[str, bytes | str], Path]


def write_parquet(path: Path, names: list[str]) -> Path:
    arrays = [pa.array([index]) for index in range(len(names))]
    pq.write_table(pa.Table.from_arrays(arrays, names=names), path)
    return path


def test_csv_case_clash_rejected(catalog: Catalog, write_file: WriteFile) -> None:
    path = write_file("case.csv", "ID,name,id\n1,a,2\n")

    with pytest.raises(IngestError) as raised:
        ingest(catalog, "case", [path])

    assert str(raised.value) == (
        f"{path}, line 1: column names 'ID' and 'id' in columns 1 and 3 differ "
        "only in case, and DuckDB does not tell them apart; rename one of them"
    )


def test_parquet_repeated_name_rejected(catalog: Catalog, tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "dup.parquet", ["a", "b", "a"])

    with pytest.raises(IngestError) as raised:
        ingest(catalog, "dup", [path])

    assert str(raised.value) == (
        f"{path}: duplicate column name 'a' in Parquet columns 1 and 3; give each "
        "column a distinct name"
    )


def test_parquet_case_clash_rejected(catalog: Catalog, tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "case.parquet", ["Id", "id"])

    with pytest.raises(IngestError, match=r"column names 'Id' and 'id' in Parquet"):
        ingest(catalog, "case", [path])


def test_parquet_empty_name_rejected(catalog: Catalog, tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "empty.parquet", ["a", ""])

    with pytest.raises(IngestError) as raised:
        ingest(catalog, "empty", [path])

    assert str(raised.value) == (
        f"{path}: column 2 of the Parquet schema has an empty name; name every "
        "column before ingesting"
    )


def test_json_case_clash_names_line(catalog: Catalog, write_file: WriteFile) -> None:
    path = write_file("case.jsonl", '{"temp": 1}\n\n{"Temp": 2}\n')

    with pytest.raises(IngestError) as raised:
        ingest(catalog, "case", [path])

    assert str(raised.value) == (
        f"{path}, line 3: key 'Temp' and key 'temp' differ only in case, and "
        "DuckDB does not tell them apart; use one spelling in every line"
    )


def test_json_numbered_name_accepted(catalog: Catalog, write_file: WriteFile) -> None:
    path = write_file("numbered.jsonl", '{"a": 1, "a_1": 2}\n')

    result = ingest(catalog, "numbered", [path])

    assert list(result.version.schema) == ["a", "a_1"]


def test_non_ascii_case_accepted(catalog: Catalog, write_file: WriteFile) -> None:
    path = write_file("accents.csv", "É,é\n1,2\n")

    result = ingest(catalog, "accents", [path])

    assert list(result.version.schema) == ["É", "é"]
    rows = catalog.db.execute(scan_sql(result.version)).fetchall()
    assert rows == [(1, 2)]


@pytest.mark.parametrize(
    ("name", "text"),
    [("upper.csv", "id,Version\n1,x\n"), ("upper.jsonl", '{"id": 1, "VERSION": 2}\n')],
)
def test_version_any_case_rejected(
    catalog: Catalog, write_file: WriteFile, name: str, text: str
) -> None:
    path = write_file(name, text)

    with pytest.raises(IngestError, match=r"is reserved by the lake layout"):
        ingest(catalog, "reserved", [path])


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("internal.csv", "_file,x\n7,9\n"),
        ("internal.jsonl", '{"x": 9, "_record": 8}\n'),
    ],
)
def test_internal_names_rejected(
    catalog: Catalog, write_file: WriteFile, name: str, text: str
) -> None:
    path = write_file(name, text)

    with pytest.raises(IngestError) as raised:
        ingest(catalog, "internal", [path])

    column = "_file" if name.endswith(".csv") else "_record"
    assert str(raised.value) == (
        f"{path}: column {column!r} is reserved, in any case, because the ingest "
        "adds columns '_file' and '_record' to the rows it reads; rename it "
        "before ingesting"
    )


def test_internal_parquet_name_rejected(catalog: Catalog, tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "internal.parquet", ["x", "_Record"])

    with pytest.raises(IngestError, match=r"column '_Record' is reserved"):
        ingest(catalog, "internal", [path])


def test_buffer_case_clash_422(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[storage]\nhome = "home"\n\n[datasets.sensors]\n')
    home = tmp_path / "home"
    rows = [{"id": 1, "temp": 20.5}, {"id": 2, "Temp": 21.0}]
    daemon = start_daemon(path, home, tmp_path / "log")
    try:
        with httpx.Client(base_url=daemon.base_url, trust_env=False) as client:
            rejected = client.post("/v1/datasets/sensors/rows", json={"rows": rows})
            status = client.get("/v1/datasets/sensors/rows").json()
    finally:
        stop_daemon(daemon)

    assert rejected.status_code == 422
    body = rejected.json()
    assert body["error"] == (
        "row 1 sent to dataset 'sensors' has key 'Temp', which differs from key "
        "'temp' only in case, and the ingest does not tell them apart; use one "
        "spelling in every row"
    )
    assert body["row"] == 1
    assert body["columns"] == ["temp", "Temp"]
    assert status["buffered"] == 0
    with Catalog(home) as catalog:
        assert list_versions(catalog, "sensors") == []


def test_buffer_case_clash_across_requests_422(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        '[storage]\nhome = "home"\n\n[ingest]\nflush_seconds = 3600\n\n'
        "[datasets.sensors]\n"
    )
    home = tmp_path / "home"
    daemon = start_daemon(path, home, tmp_path / "log")
    try:
        with httpx.Client(base_url=daemon.base_url, trust_env=False) as client:
            first = client.post(
                "/v1/datasets/sensors/rows", json={"rows": [{"id": 1, "temp": 20.5}]}
            )
            clash = client.post(
                "/v1/datasets/sensors/rows", json={"rows": [{"id": 2, "Temp": 21.0}]}
            )
            same = client.post(
                "/v1/datasets/sensors/rows", json={"rows": [{"id": 3, "temp": 22.0}]}
            )
            status = client.get("/v1/datasets/sensors/rows").json()
    finally:
        stop_daemon(daemon)

    assert first.status_code == 202
    assert clash.status_code == 422
    assert clash.json()["error"] == (
        "row 0 sent to dataset 'sensors' has key 'Temp', which differs from key "
        "'temp' of rows buffered by earlier requests only in case, and the ingest "
        "does not tell them apart; use one spelling in every row"
    )
    assert same.status_code == 202
    assert status["buffered"] == 2
    with Catalog(home) as catalog:
        (version,) = list_versions(catalog, "sensors")
        rows = catalog.db.execute(
            f"SELECT id, temp FROM ({scan_sql(version)}) ORDER BY id"
        ).fetchall()
    assert rows == [(1, 20.5), (3, 22.0)]


def test_buffer_dataset_spelling_422(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[storage]\nhome = "home"\n\n[datasets.sensors]\n')
    home = tmp_path / "home"
    first = tmp_path / "first.csv"
    first.write_text("id,temp\n1,20.5\n")
    with Catalog(home) as catalog:
        ingest(catalog, "sensors", [first])
    daemon = start_daemon(path, home, tmp_path / "log")
    try:
        with httpx.Client(base_url=daemon.base_url, trust_env=False) as client:
            rejected = client.post(
                "/v1/datasets/sensors/rows", json={"rows": [{"id": 2, "Temp": 21.0}]}
            )
            status = client.get("/v1/datasets/sensors/rows").json()
    finally:
        stop_daemon(daemon)

    assert rejected.status_code == 422
    body = rejected.json()
    assert body["error"] == (
        "row 0 sent to dataset 'sensors' has key 'Temp', which differs only in "
        "case from the dataset's column 'temp', and the ingest does not tell them "
        "apart; send it as 'temp'"
    )
    assert body["row"] == 0
    assert body["columns"] == ["temp", "Temp"]
    assert status["buffered"] == 0


@pytest.mark.parametrize(
    ("first", "second"),
    [("a,b\n1,x\n", "A,B\n3,z\n"), ("a,b\nq,x\n", "A,B\nr,z\n")],
    ids=["numbers", "text"],
)
def test_append_case_only_header_rejected(
    catalog: Catalog, write_file: WriteFile, first: str, second: str
) -> None:
    ingest(catalog, "ord", [write_file("o1.csv", first)])
    upper = write_file("o3.csv", second)

    with pytest.raises(IngestError) as raised:
        ingest(catalog, "ord", [upper], mode="append")

    assert str(raised.value) == (
        f"{upper}: column 'A' differs only in case from column 'a' of dataset "
        "'ord', and DuckDB does not tell them apart; rename it to 'a' in the file"
    )
    assert len(list_versions(catalog, "ord")) == 1


def test_replace_case_only_header_rejected(
    catalog: Catalog, write_file: WriteFile
) -> None:
    ingest(catalog, "ord", [write_file("o1.csv", "a,b\n1,x\n")])
    upper = write_file("o3.csv", "a,B\n3,z\n")

    with pytest.raises(IngestError, match="column 'B' differs only in case from "):
        ingest(catalog, "ord", [upper])


def test_files_differing_in_case_rejected(
    catalog: Catalog, write_file: WriteFile
) -> None:
    lower = write_file("o5.csv", "a,b\n1,x\n")
    upper = write_file("o6.csv", "A,B\n3,z\n")

    with pytest.raises(IngestError) as raised:
        ingest(catalog, "ord", [lower, upper])

    assert str(raised.value) == (
        f"{upper}: column 'A' differs only in case from column 'a' of {lower}, "
        "and DuckDB does not tell them apart; use one spelling in every file"
    )
    assert list_versions(catalog, "ord") == []


def test_contract_spelling_required(catalog: Catalog, write_file: WriteFile) -> None:
    contract = ContractConfig(columns={"Amount": ColumnRule(type="DOUBLE")})
    path = write_file("c.csv", "amount\n1.5\n")

    with pytest.raises(IngestError) as raised:
        ingest(catalog, "c", [path], settings=DatasetConfig("c", contract=contract))

    assert str(raised.value) == (
        f"{path}: column 'amount' differs only in case from column 'Amount' of "
        "dataset 'c', and DuckDB does not tell them apart; rename it to 'Amount' "
        "in the file"
    )


def test_json_append_case_only_key_rejected(
    catalog: Catalog, write_file: WriteFile
) -> None:
    ingest(catalog, "js", [write_file("j1.jsonl", '{"a": 1, "b": "x"}\n')])
    upper = write_file("j2.jsonl", '{"A": 2, "b": "y"}\n')

    with pytest.raises(IngestError, match="column 'A' differs only in case from "):
        ingest(catalog, "js", [upper], mode="append")
