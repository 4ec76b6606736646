"""The quality report over rows given as a subquery, without a catalog."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from support import WriteFile

from appliance.storage import Catalog, ingest
from appliance.storage import _quality as quality
from appliance.storage._quality import quality_report

ROWS = (
    "(SELECT * FROM (VALUES (1, 'a'), (1, 'a'), (2, 'b'), (3, NULL), (90, 'c')) "
    "t(x, s))"
)


def test_report_counts_rows_and_duplicates() -> None:
    with duckdb.connect() as db:
        report = quality_report(db, ROWS, {"x": "INTEGER", "s": "VARCHAR"})

    assert report["rows"] == 5
    assert report["duplicate_rows"] == 1
    assert report["columns"]["x"]["min"] == 1.0
    assert report["columns"]["x"]["max"] == 90.0
    assert report["columns"]["x"]["outliers_iqr"] == 1
    assert report["columns"]["s"]["null_rate"] == pytest.approx(0.2)
    assert report["methods"]["quantiles"] == "exact"


def test_report_error_raised_from_main_scan() -> None:
    # The quartile query casts the text to DOUBLE and fails, while the
    # duplicate count on the second cursor would succeed.
    with duckdb.connect() as db:
        with pytest.raises(duckdb.ConversionException, match="'text'"):
            quality_report(db, "(SELECT 'text' AS v)", {"v": "DOUBLE"})

        assert db.execute("SELECT 1").fetchall() == [(1,)]


def test_ranges_from_stored_files_match_scan(tmp_path: Path) -> None:
    path = tmp_path / "rows.parquet"
    with duckdb.connect() as db:
        db.execute(
            "COPY (SELECT * FROM (VALUES (1, 1.0, 'b'), (10, 'NaN'::DOUBLE, 'a'), "
            f"(5, 3.0, 'c')) t(x, f, s)) TO '{path}' (FORMAT parquet)"
        )
        # x is BIGINT in the file and VARCHAR in the schema, so its range
        # is of the text; NaN in f reads as missing.
        table = (
            f"(SELECT CAST(x AS VARCHAR) AS x, CASE WHEN isnan(f) THEN NULL "
            f"ELSE f END AS f, s FROM read_parquet('{path}'))"
        )
        schema = {"x": "VARCHAR", "f": "DOUBLE", "s": "VARCHAR"}

        scanned = quality_report(db, table, schema)
        from_files = quality_report(db, table, schema, f"read_parquet('{path}')")

    assert from_files == scanned
    columns = from_files["columns"]
    assert (columns["x"]["min"], columns["x"]["max"]) == ("1", "5")
    assert (columns["f"]["min"], columns["f"]["max"]) == (1.0, 3.0)
    assert (columns["s"]["min"], columns["s"]["max"]) == ("a", "c")


def test_outliers_from_files_match_scan(tmp_path: Path) -> None:
    # The range of i lies within its fences, so the report does not count
    # its outliers. j has one outlier below its fences and one above.
    path = tmp_path / "rows.parquet"
    with duckdb.connect() as db:
        db.execute(
            "COPY (SELECT range % 10 AS i, CASE WHEN range = 0 THEN -40 WHEN "
            "range = 1 THEN 50 ELSE range % 7 END AS j, range / 3 AS f "
            f"FROM range(100)) TO '{path}' (FORMAT parquet)"
        )
        table = f"(SELECT * FROM read_parquet('{path}'))"
        schema = {"i": "BIGINT", "j": "BIGINT", "f": "DOUBLE"}

        scanned = quality_report(db, table, schema)
        from_files = quality_report(db, table, schema, f"read_parquet('{path}')")
        expected = db.execute(
            "WITH q AS (SELECT quantile_cont(j, 0.25) AS q1, quantile_cont(j, 0.75) "
            "AS q3 FROM read_parquet($1)) SELECT count_if(j < q1 - 1.5 * (q3 - q1) "
            "OR j > q3 + 1.5 * (q3 - q1)) FROM read_parquet($1), q",
            [str(path)],
        ).fetchone()

    assert from_files == scanned
    columns = from_files["columns"]
    assert columns["i"]["outliers_iqr"] == 0
    assert expected == (2,)
    assert columns["j"]["outliers_iqr"] == 2
    assert columns["f"]["outliers_iqr"] == 0


def test_float_ranges_from_nan_free_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Files without NaN give the range of f from their statistics, so the
    # counting scan computes no min or max. g has an outlier above its fences.
    path = tmp_path / "rows.parquet"
    with duckdb.connect() as db:
        db.execute(
            "COPY (SELECT CASE WHEN range = 3 THEN NULL ELSE range / 4 - 2 END "
            "AS f, CASE WHEN range = 0 THEN 400.0 ELSE range % 5 END::DOUBLE AS g "
            f"FROM range(100)) TO '{path}' (FORMAT parquet)"
        )
        table = f"(SELECT * FROM read_parquet('{path}'))"
        stored = f"read_parquet('{path}')"
        schema = {"f": "DOUBLE", "g": "DOUBLE"}
        scanned = quality_report(db, table, schema)
        selects: list[str] = []
        scan = quality._scan

        def listed_scan(*args: object) -> object:
            selects.extend(args[2])
            return scan(*args)

        monkeypatch.setattr(quality, "_scan", listed_scan)
        from_files = quality_report(db, table, schema, stored, stored_nan=False)

    assert from_files == scanned
    assert not [s for s in selects if "min(" in s or "max(" in s]
    columns = from_files["columns"]
    assert (columns["f"]["min"], columns["f"]["max"]) == (-2.0, 22.75)
    assert (columns["g"]["min"], columns["g"]["max"]) == (0.0, 400.0)
    assert columns["g"]["outliers_iqr"] == 1


def test_quartiles_from_given_sample() -> None:
    table = "(SELECT range AS x FROM range(30000))"
    asked: list[int] = []

    def every_tenth(every: int) -> str:
        asked.append(every)
        return f"SELECT x FROM {table} WHERE x % 10 = 0"

    with duckdb.connect() as db:
        report = quality_report(db, table, {"x": "BIGINT"}, sample=every_tenth)
        fallback = quality_report(db, table, {"x": "BIGINT"}, sample=lambda _: None)

    assert asked == [2]
    assert report["columns"]["x"]["quantiles"] == {
        "p25": 7497.5,
        "p50": 14995.0,
        "p75": 22492.5,
    }
    assert report["methods"]["quantiles"].startswith("approximate, from a sample")
    assert fallback["methods"]["quantiles"] == (
        "approximate, from a seeded sample of 20000 rows"
    )


def test_duplicates_sorted_or_aggregated(monkeypatch: pytest.MonkeyPatch) -> None:
    # Rows 0 to 99 twice, and 7 a third time: 101 duplicates.
    table = (
        "(SELECT range AS x, range % 3 AS y FROM range(100) UNION ALL "
        "SELECT range, range % 3 FROM range(100) UNION ALL SELECT 7, 1)"
    )
    schema = {"x": "BIGINT", "y": "BIGINT"}
    with duckdb.connect() as db:
        sorted_count = quality_report(db, table, schema)["duplicate_rows"]
        monkeypatch.setattr(quality, "_SORTED_ROWS", 0)
        aggregated = quality_report(db, table, schema)["duplicate_rows"]

    assert sorted_count == 101
    assert aggregated == 101


def test_report_known_row_count_same() -> None:
    schema = {"x": "INTEGER", "s": "VARCHAR"}
    with duckdb.connect() as db:
        counted = quality_report(db, ROWS, schema)
        known = quality_report(db, ROWS, schema, rows=5)

    assert known == counted


def test_report_empty_table_no_duplicates() -> None:
    with duckdb.connect() as db:
        report = quality_report(db, "(SELECT 1 AS x WHERE false)", {"x": "INTEGER"})

    assert report["rows"] == 0
    assert report["duplicate_rows"] == 0
    assert report["columns"]["x"]["null_rate"] is None


def test_distinct_estimate_at_most_values(
    catalog: Catalog, write_file: WriteFile
) -> None:
    lines = "".join(f"{index}\n" for index in range(50_010))
    path = write_file("many.csv", "id\n" + lines)

    result = ingest(catalog, "many", [path])

    assert result.version.report["quality"]["columns"]["id"]["distinct"] <= 50_010
