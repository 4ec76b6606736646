"""Batch scoring: a CSV or Parquet file through the ONNX session to Parquet."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa

from appliance.dbrows import first_row
from appliance.errors import IngestError, RequestError
from appliance.serving._lookup_checks import check_lookup_table
from appliance.serving._onnx import OnnxModel
from appliance.serving._view_misses import table_miss_warnings

if TYPE_CHECKING:
    from appliance.config import DatasetConfig
    from appliance.features import FeatureServer

logger = logging.getLogger(__name__)

_BATCH_ROWS = 100_000
_COLUMN_COUNTS = re.compile(r"Expected Number of Columns: (\d+) Found: (\d+)")
_RENAMED = re.compile(r".+_[0-9]+")
_LINE_SIZE = re.compile(r"Maximum line size of (\d+) bytes exceeded")
_OUTPUT_SUFFIXES = (".parquet", ".pq", ".csv")
_DEFAULT_NULL_VALUES = ("", "NA", "null", "NULL")
"""CSV values read as missing for a model whose dataset is not known, the
default of ``[datasets.NAME] null_values``."""
_PARQUET_MISSING = (
    "a Parquet file is read with only null and the text 'NaN' as missing values"
)


@dataclass(frozen=True)
class BatchScore:
    """Outcome of scoring a file."""

    rows: int
    """Rows scored."""
    warnings: list[str] = field(default_factory=list)
    """Warnings about the rows, as a predict request gets them: columns that
    are not model inputs, and feature views with no values for some rows."""


def score_file(
    model: OnnxModel,
    source: Path,
    target: Path,
    features: FeatureServer | None = None,
    dataset: DatasetConfig | None = None,
) -> BatchScore:
    """Write `source` rows with their predictions to `target`.

    The output is CSV when `target` ends with ``.csv`` and Parquet (zstd) when
    it ends with ``.parquet`` or ``.pq``. With `features`, the model's feature
    views are joined to the rows before scoring, as the predict route does.
    A CSV file's fields equal to one of the `dataset`'s ``null_values`` are
    missing values, as its ingest reads them.

    Raises:
        IngestError: The input is missing, empty or not CSV or Parquet, or the
            output name ends with neither ``.csv`` nor ``.parquet``/``.pq``.
        RequestError: A column the model needs is missing or mistyped; the
            message names the file and the line (CSV) or row (Parquet).
    """
    check_target(source, target)
    null_values = dataset.null_values if dataset else _DEFAULT_NULL_VALUES
    table = read_rows_file(source, null_values)
    missing = _missing_text(source, null_values, dataset)
    table, misses, lookup_only = _fill_views(model, source, table, features)
    partial = target.with_name(target.name + ".partial")
    writer: Any = None
    ignored: list[str] = []
    try:
        for start in range(0, max(table.num_rows, 1), _BATCH_ROWS):
            chunk = table.slice(start, _BATCH_ROWS)
            try:
                scored, chunk_ignored = _score(model, chunk, lookup_only, missing)
            except RequestError as exc:
                raise _located(exc, source, start, table.num_rows) from None
            # Every chunk has the same columns, so the first one's warning
            # covers the file.
            ignored = ignored or chunk_ignored
            if writer is None:
                writer = _open_writer(partial, scored.schema, target)
            writer.write_table(scored)
        if writer is not None:
            writer.close()
            writer = None
        os.replace(partial, target)
    finally:
        if writer is not None:
            writer.close()
        partial.unlink(missing_ok=True)
    logger.info(
        "batch scored model=%s version=%d rows=%d output=%s warnings=%d",
        model.name,
        model.version,
        table.num_rows,
        target,
        len(ignored) + len(misses),
    )
    return BatchScore(table.num_rows, [*ignored, *misses])


def _fill_views(
    model: OnnxModel, source: Path, table: pa.Table, features: FeatureServer | None
) -> tuple[pa.Table, list[str], set[str]]:
    """Join the model's feature views to the rows of `source`.

    Returns:
        The rows with the views' columns, a warning per view that had no
        values for some rows, and the lookup columns that are not model
        inputs, which get no ignored-column warning.

    Raises:
        RequestError: An entity key contains a NUL byte or has the wrong type,
            or a value that a derived column reads is infinite.
    """
    if features is None or not features.uses_features(model.name):
        return table, [], set()
    try:
        check_lookup_table(features, model.name, table)
        filled = features.fill_table(model.name, table)
    except RequestError as exc:
        raise _located(exc, source, 0, table.num_rows) from None
    misses = table_miss_warnings(
        features,
        model.name,
        table,
        filled,
        lambda row: _place(source, row, table.num_rows),
    )
    inputs = {spec["name"] for spec in model.request}
    return filled, misses, features.lookup_columns(model.name) - inputs


def _missing_text(
    source: Path, null_values: Sequence[str], dataset: DatasetConfig | None
) -> str:
    """Return which values of `source` are missing, for errors on numeric columns."""
    if source.suffix.lower() in (".parquet", ".pq"):
        return _PARQUET_MISSING
    quoted = [repr(value) if value else "the empty field" for value in null_values]
    listed = quoted[0]
    if len(quoted) > 1:
        listed = ", ".join(quoted[:-1]) + " and " + quoted[-1]
    origin = "the default null values"
    if dataset is not None:
        origin = f"the null_values of [datasets.{dataset.name}]"
    return (
        f"a CSV file is read with {listed} ({origin}) and the text 'NaN' as "
        "missing values"
    )


def _located(exc: RequestError, source: Path, offset: int, rows: int) -> RequestError:
    """Return `exc` with its row, counted in a batch from `offset`, as a file line.

    Messages about one row start with ``row N``; that phrase becomes the
    file's line for a CSV file and the row counted from 1 for Parquet.
    """
    row = exc.detail.get("row")
    if not isinstance(row, int):
        return RequestError(f"{source}: {exc}", **exc.detail)
    position = offset + row
    where = _place(source, position, rows)
    text = str(exc)
    prefix = f"row {row}"
    rest = text[len(prefix) :] if text.startswith(prefix) else f": {text}"
    return RequestError(f"{source}, {where}{rest}", **{**exc.detail, "row": position})


def _place(source: Path, position: int, rows: int) -> str:
    """Return where row `position` of the table read from `source` is in the file."""
    if source.suffix.lower() in (".parquet", ".pq"):
        return f"row {position + 1}"
    from appliance.storage import record_lines

    try:
        records = record_lines(source, "utf-8", '"', '"')
    except (OSError, UnicodeError) as exc:
        logger.warning("line numbers not read file=%s error=%s", source, exc)
        records = None
    # The scan pairs with DuckDB's rows only when both count the same records.
    if records is None or len(records.lines) != rows:
        return f"record {position + 1} after the header"
    return f"line {records.lines[position]}"


def _open_writer(partial: Path, schema: pa.Schema, target: Path) -> Any:
    """Return a writer of `schema` rows to `partial`, in the format `target` names."""
    if target.suffix.lower() == ".csv":
        import pyarrow.csv as pc_csv  # loaded by batch scoring only

        return pc_csv.CSVWriter(partial, schema)
    import pyarrow.parquet as pq  # loaded by batch scoring only

    return pq.ParquetWriter(partial, schema, compression="zstd")


def check_target(source: Path, target: Path) -> None:
    """Check that `target` can be written as the scored copy of `source`.

    Raises:
        IngestError: `target` is the input, a folder, in a missing folder, or
            named with a suffix other than ``.csv``, ``.parquet`` or ``.pq``.
    """
    if target.suffix.lower() not in _OUTPUT_SUFFIXES and not target.is_dir():
        raise IngestError(
            f"{target}: the output format is taken from the file name; end it "
            "with .parquet (or .pq) for Parquet or .csv for CSV"
        )
    if target.resolve() == source.resolve():
        raise IngestError(
            f"{target}: the output file is the input file; name another output"
        )
    if target.is_dir():
        raise IngestError(
            f"{target}: the output is a folder; name a file to write, such as "
            f"{target / (source.stem + '.parquet')}"
        )
    if not target.parent.is_dir():
        raise IngestError(
            f"{target}: folder {target.parent} not found; create it or name "
            "another output"
        )


def read_rows_file(source: Path, null_values: Sequence[str] | None = None) -> pa.Table:
    """Read a CSV or Parquet file of rows to score.

    Args:
        null_values: The fields of a CSV file that are missing values; the
            default of ``[datasets.NAME] null_values`` when None.

    Raises:
        IngestError: The file is missing, empty, or neither CSV nor Parquet.
    """
    if not source.is_file():
        raise IngestError(f"{source}: file not found")
    if source.stat().st_size == 0:
        raise IngestError(f"{source}: file is empty (0 bytes); nothing to score")
    suffix = source.suffix.lower()
    path = "'" + str(source).replace("'", "''") + "'"
    if suffix in (".csv", ".tsv", ".txt"):
        table = _read_csv(source, path, null_values or _DEFAULT_NULL_VALUES)
        if table.num_rows == 0:
            raise IngestError(f"{source}: no rows after the header; nothing to score")
        return table
    if suffix not in (".parquet", ".pq"):
        raise IngestError(
            f"{source}: unsupported format {suffix!r}; score a .csv or .parquet file"
        )
    try:
        table = duckdb.sql(f"SELECT * FROM read_parquet({path})").to_arrow_table()
    except duckdb.Error as exc:
        raise IngestError(f"{source}: cannot read file: {exc}") from None
    if table.num_rows == 0:
        raise IngestError(f"{source}: the file has no rows; nothing to score")
    _check_unique_names(source, path, table.column_names)
    return table


def _read_csv(source: Path, path: str, null_values: Sequence[str]) -> pa.Table:
    """Read a CSV file, or raise for its first record that DuckDB cannot split.

    Without ``ignore_errors`` the sniffer of DuckDB 2.0.1 reads a file with a
    ragged line as one column named after the whole header, so the error
    would name a missing column. With it, the rejected records are listed in
    ``reject_errors``, and any of them rejects the file. A file of blank
    lines would read as one column of nulls.
    """
    from appliance.storage import only_blank_lines

    if only_blank_lines(source):
        raise IngestError(
            f"{source}: the file contains only blank lines; nothing to score"
        )
    nulls = ", ".join("'" + value.replace("'", "''") + "'" for value in null_values)
    db = duckdb.connect()
    try:
        table = db.sql(
            f"SELECT * FROM read_csv({path}, nullstr=[{nulls}], sample_size=-1, "
            "ignore_errors=true, store_rejects=true)"
        ).to_arrow_table()
        rejects = first_row(
            db.execute(
                "SELECT line, CAST(error_type AS VARCHAR), error_message, "
                "count(DISTINCT line) OVER () FROM reject_errors "
                "ORDER BY line, column_idx LIMIT 1"
            )
        )
    except duckdb.Error as exc:
        _check_long_record(source, exc)
        raise IngestError(f"{source}: cannot read file: {exc}") from None
    finally:
        db.close()
    if rejects is None:
        _check_unique_names(source, path, table.column_names)
        return table
    line, kind, message, rejected = rejects
    # DuckDB counts the header as line 1 and each record as one line, so
    # _place maps the record to its line in the file.
    where = _place(source, line - 2, table.num_rows + rejected)
    counts = _COLUMN_COUNTS.fullmatch(message)
    if counts is not None:
        expected, found = counts.groups()
        problem = f"{found} fields where the header has {expected}"
    else:
        problem = f"{kind.lower()}: {message}"
    raise IngestError(f"{source}, {where}: {problem}; fix or remove the line")


def _check_long_record(source: Path, exc: duckdb.Error) -> None:
    """Name the line of the record that exceeded DuckDB's maximum line size.

    The reader of DuckDB 2.0.1 reads a whole file to detect its format here,
    and reports a record of ``max_line_size`` bytes or more on line 1,
    wherever it is, with the whole record in the message.

    Raises:
        IngestError: `exc` is a maximum line size error.
    """
    found = _LINE_SIZE.search(str(exc))
    if found is None:
        return
    from appliance.storage import long_record

    limit = int(found.group(1)) - 1
    record = long_record(source, "utf-8", ('"', '"', ""), limit)
    what = f"{source}: a record is"
    if record is not None:
        what = f"{source}, line {record[0]}: the record of {record[1]} bytes is"
    raise IngestError(
        f"{what} longer than the maximum of {limit} bytes that batch scoring "
        "reads; shorten or remove the record"
    ) from None


def _check_unique_names(source: Path, path: str, names: list[str]) -> None:
    """Reject a file whose header names a column twice.

    DuckDB reads a repeated name ``a`` as ``a`` and ``a_1``, so the model
    would read the first column and ignore the second without a warning.

    Raises:
        RequestError: The header repeats a name; the error names it.
    """
    present = set(names)
    if not any(_RENAMED.fullmatch(n) and n.rsplit("_", 1)[0] in present for n in names):
        return
    # The file may also name a column "a_1"; its own header settles it.
    if source.suffix.lower() in (".parquet", ".pq"):
        import pyarrow.parquet as pq  # loaded by batch scoring only

        header = pq.read_schema(source).names
    else:
        sql = f"SELECT * FROM read_csv({path}, header=false, all_varchar=true)"
        rows = duckdb.sql(sql).limit(1).fetchall()
        header = list(rows[0]) if rows else []
    for name in header:
        if header.count(name) > 1:
            raise RequestError(
                f"{source}: column {name!r} appears {header.count(name)} times in "
                "the header; rename or remove the repeated column",
                column=name,
            )


def _score(
    model: OnnxModel, table: pa.Table, lookup_only: set[str], missing: str
) -> tuple[pa.Table, list[str]]:
    """Return `table` with its predictions appended, and the ignored-column warning."""
    fed = table.drop_columns([n for n in table.column_names if n in lookup_only])
    feed, ignored = model.feed_table(fed, missing)
    output = model.run(feed)
    scored = model.format_table(output)
    for name, column in zip(scored.column_names, scored.columns):
        table = table.append_column(name, column)
    return table, ignored
