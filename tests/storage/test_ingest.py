"""Dataset ingest into the DuckDB catalog and the Parquet lake."""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from appliance.config import ColumnRule, ContractConfig, DatasetConfig, load_config
from appliance.errors import ConfigError, IngestError
from appliance.features import open_store
from appliance.storage import (
    Catalog,
    DatasetVersion,
    ingest,
    latest_version,
    list_versions,
    scan_sql,
)

SMALL = pd.DataFrame(
    {
        "id": [1, 2, 3, 4, 5, 6, 7],
        "price": [1.5, np.nan, 3.25, 4.0, 5.5, np.nan, 7.75],
        "colour": ["red", "blue", None, "red", "green", "blue", None],
    }
)


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_csv(path, index=False)
    return path


def write_parquet(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_parquet(path, index=False)
    return path


def write_jsonl(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_json(path, orient="records", lines=True)
    return path


WRITERS: dict[str, Callable[[pd.DataFrame, Path], Path]] = {
    "csv": write_csv,
    "parquet": write_parquet,
    "jsonl": write_jsonl,
}


def lake_files(catalog: Catalog) -> dict[Path, int]:
    """Return every file under the lake with its modification time in ns."""
    if not catalog.lake.exists():
        return {}
    return {p: p.stat().st_mtime_ns for p in catalog.lake.rglob("*") if p.is_file()}


def version_rows(catalog: Catalog) -> int:
    (count,) = catalog.db.execute("SELECT count(*) FROM dataset_versions").fetchone()
    return count


def read_stored(catalog: Catalog, version: DatasetVersion) -> pd.DataFrame:
    # scan_sql keeps the recorded columns, not the hive columns of the folders.
    return catalog.db.sql(scan_sql(version)).df()


@pytest.mark.parametrize("suffix", sorted(WRITERS))
def test_ingest_format_row_count(catalog: Catalog, tmp_path: Path, suffix: str) -> None:
    source = WRITERS[suffix](SMALL, tmp_path / f"small.{suffix}")
    result = ingest(catalog, "small", [source])

    assert result.created is True
    assert result.version.row_count == len(SMALL)
    files = sorted(result.version.path.rglob("*.parquet"))
    assert sum(pq.ParquetFile(f).metadata.num_rows for f in files) == len(SMALL)


@pytest.mark.parametrize("suffix", sorted(WRITERS))
def test_ingest_format_keeps_values(
    catalog: Catalog, tmp_path: Path, suffix: str
) -> None:
    source = WRITERS[suffix](SMALL, tmp_path / f"small.{suffix}")
    result = ingest(catalog, "small", [source])

    stored = read_stored(catalog, result.version)
    assert list(stored.columns) == list(SMALL.columns)
    assert list(result.version.schema) == list(SMALL.columns)
    assert stored["id"].tolist() == SMALL["id"].tolist()
    assert stored["price"].isna().tolist() == SMALL["price"].isna().tolist()
    assert stored["price"].dropna().tolist() == SMALL["price"].dropna().tolist()
    assert stored["colour"].isna().tolist() == SMALL["colour"].isna().tolist()
    assert stored["colour"].dropna().tolist() == SMALL["colour"].dropna().tolist()


def test_ingest_version_id_from_hash(catalog: Catalog, tmp_path: Path) -> None:
    source = write_csv(SMALL, tmp_path / "small.csv")
    file_hash = hashlib.sha256(source.read_bytes()).hexdigest()
    expected = hashlib.sha256(file_hash.encode()).hexdigest()[:16]

    result = ingest(catalog, "small", [source])
    assert result.version.version == expected
    assert result.version.path == catalog.lake / "small" / f"version={expected}"
    assert result.version.sources == [
        {"path": str(source.resolve()), "sha256": file_hash}
    ]


def test_ingest_same_bytes_unchanged(catalog: Catalog, tmp_path: Path) -> None:
    source = write_csv(SMALL, tmp_path / "small.csv")
    first = ingest(catalog, "small", [source])
    files_before = lake_files(catalog)

    second = ingest(catalog, "small", [source])
    assert second.created is False
    assert second.version.version == first.version.version
    assert second.version.parent is None
    assert lake_files(catalog) == files_before
    assert version_rows(catalog) == 1


def test_ingest_copied_file_unchanged(catalog: Catalog, tmp_path: Path) -> None:
    source = write_csv(SMALL, tmp_path / "small.csv")
    copy = tmp_path / "elsewhere" / "renamed.csv"
    copy.parent.mkdir()
    shutil.copyfile(source, copy)
    first = ingest(catalog, "small", [source])

    second = ingest(catalog, "small", [copy])
    assert second.created is False
    assert second.version.version == first.version.version
    assert version_rows(catalog) == 1


def test_ingest_new_bytes_new_version(catalog: Catalog, tmp_path: Path) -> None:
    first = ingest(catalog, "small", [write_csv(SMALL, tmp_path / "v1.csv")])
    changed = pd.concat([SMALL, SMALL.head(2)], ignore_index=True)
    second = ingest(catalog, "small", [write_csv(changed, tmp_path / "v2.csv")])

    assert second.created is True
    assert second.version.version != first.version.version
    assert first.version.parent is None
    assert second.version.parent == first.version.version
    assert second.version.row_count == len(SMALL) + 2
    assert version_rows(catalog) == 2
    assert latest_version(catalog, "small") == second.version


def test_ingest_datasets_kept_apart(catalog: Catalog, tmp_path: Path) -> None:
    source = write_csv(SMALL, tmp_path / "small.csv")
    ingest(catalog, "first", [source])

    other = ingest(catalog, "second", [source])
    assert other.created is True
    assert other.version.parent is None
    assert version_rows(catalog) == 2


def test_ingest_refuses_settings_of_another_dataset(
    catalog: Catalog, tmp_path: Path
) -> None:
    source = write_csv(SMALL, tmp_path / "small.csv")

    with pytest.raises(ValueError, match="'first' passed to an ingest of 'second'"):
        ingest(catalog, "second", [source], settings=DatasetConfig(name="first"))
    assert version_rows(catalog) == 0


def test_ingest_several_files_one_version(catalog: Catalog, tmp_path: Path) -> None:
    head = write_csv(SMALL.head(3), tmp_path / "head.csv")
    tail = write_csv(SMALL.tail(4), tmp_path / "tail.csv")

    result = ingest(catalog, "small", [head, tail])
    assert result.version.row_count == len(SMALL)
    assert len(result.version.sources) == 2


def write_bad_file(case: str, folder: Path) -> tuple[list[Path], Path]:
    """Write the files of one bad-input case and return them with the file at fault."""
    good = write_csv(SMALL, folder / "good.csv")
    if case == "missing":
        bad = folder / "absent.csv"
        return [bad], bad
    if case == "empty":
        bad = folder / "empty.csv"
        bad.write_bytes(b"")
        return [bad], bad
    if case == "xlsx":
        bad = folder / "sheet.xlsx"
        bad.write_bytes(b"PK\x03\x04 not really a workbook")
        return [bad], bad
    if case == "garbage_parquet":
        bad = folder / "garbage.parquet"
        bad.write_text("this is text, not Parquet\n" * 20)
        return [bad], bad
    if case == "garbage_jsonl":
        bad = folder / "garbage.jsonl"
        bad.write_text("{not json at all\n[1]\n")
        return [bad], bad
    if case == "mixed":
        bad = write_parquet(SMALL, folder / "other.parquet")
        return [good, bad], bad
    if case == "missing_second":
        bad = folder / "absent.csv"
        return [good, bad], bad
    raise ValueError(f"unknown case {case!r}")


BAD_CASES = [
    "missing",
    "empty",
    "xlsx",
    "garbage_parquet",
    "garbage_jsonl",
    "mixed",
    "missing_second",
]


@pytest.mark.parametrize("case", BAD_CASES)
def test_ingest_bad_file_names_it(catalog: Catalog, tmp_path: Path, case: str) -> None:
    paths, bad = write_bad_file(case, tmp_path)
    with pytest.raises(IngestError, match=re.escape(str(bad))):
        ingest(catalog, "small", paths)


@pytest.mark.parametrize("case", BAD_CASES)
def test_ingest_bad_file_writes_nothing(
    catalog: Catalog, tmp_path: Path, case: str
) -> None:
    paths, _ = write_bad_file(case, tmp_path)
    with pytest.raises(IngestError):
        ingest(catalog, "small", paths)

    assert version_rows(catalog) == 0
    assert lake_files(catalog) == {}


@pytest.mark.parametrize(
    ("case", "wording"),
    [
        ("missing", "file not found"),
        ("empty", "file is empty"),
        ("xlsx", "unsupported format '.xlsx'"),
        ("garbage_parquet", "cannot read file"),
        ("mixed", "mix formats"),
    ],
)
def test_ingest_bad_file_reason(
    catalog: Catalog, tmp_path: Path, case: str, wording: str
) -> None:
    paths, _ = write_bad_file(case, tmp_path)
    with pytest.raises(IngestError, match=re.escape(wording)):
        ingest(catalog, "small", paths)


@pytest.mark.parametrize(
    "name",
    ["", "has space", "dots.in.name", "../escape", "-x", "--help", "_x", "caf\u00e9"],
)
def test_ingest_invalid_dataset_name(
    catalog: Catalog, tmp_path: Path, name: str
) -> None:
    source = write_csv(SMALL, tmp_path / "small.csv")
    with pytest.raises(IngestError, match=re.escape(f"invalid dataset name {name!r}")):
        ingest(catalog, name, [source])


@pytest.mark.parametrize("name", ["a", "flights_2024", "A-1", "9lives"])
def test_ingest_valid_dataset_name(catalog: Catalog, tmp_path: Path, name: str) -> None:
    source = write_csv(SMALL, tmp_path / "small.csv")

    result = ingest(catalog, name, [source])

    assert result.version.dataset == name


def test_dataset_name_case_clash_rejected(catalog: Catalog, tmp_path: Path) -> None:
    source = write_csv(SMALL, tmp_path / "small.csv")
    ingest(catalog, "Planes", [source])

    with pytest.raises(IngestError) as raised:
        ingest(catalog, "planes", [source])

    assert str(raised.value) == (
        "dataset name 'planes' differs from the existing dataset 'Planes' only in "
        "case, and SQL over datasets does not tell them apart; ingest into "
        "'Planes' or choose another name"
    )
    assert [v.dataset for v in list_versions(catalog)] == ["Planes"]
    assert open_store(catalog).versions == {"Planes": list_versions(catalog)[0].version}


def test_config_dataset_name_checked(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[datasets."-flights"]\nkeep_versions = 2\n')

    with pytest.raises(
        ConfigError,
        match=re.escape("invalid 'datasets.-flights'")
        + ".*start with a letter or digit",
    ):
        load_config(path)


def test_undeclared_dataset_name_checked(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("")

    with pytest.raises(IngestError, match="invalid dataset name '-x'; start with"):
        load_config(path).dataset("-x")


def test_ingest_no_files_raises(catalog: Catalog) -> None:
    with pytest.raises(IngestError, match="no input files"):
        ingest(catalog, "small", [])


def test_steps_logged_with_times(
    catalog: Catalog, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = tmp_path / "steps.csv"
    source.write_text("x,y\n1,a\n-1,b\n")
    contract = ContractConfig(columns={"x": ColumnRule(type="BIGINT", min=0)})
    settings = DatasetConfig(name="steps", contract=contract)

    with caplog.at_level(logging.DEBUG, logger="appliance.storage._steps"):
        ingest(catalog, "steps", [source], settings=settings)

    lines = [
        r.getMessage() for r in caplog.records if r.name == "appliance.storage._steps"
    ]
    steps = [line.split()[3] for line in lines]
    assert steps == [
        "step=hash",
        "step=stage",
        "step=quarantine",
        "step=write",
        "step=report",
    ]
    assert all(" wall_ms=" in line and " cpu_ms=" in line for line in lines)
