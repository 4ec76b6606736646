"""Malformed lines of JSON-lines files, set aside so that the other lines load.

DuckDB 2.0.1's ``read_json`` fails on a whole file for one line that is not
valid JSON. It reads every line as one ``json`` column when a line contains
an array or a single value, and a ``null`` line as a row of NULLs.
`set_aside_malformed` finds such lines with DuckDB's ``json_valid`` and
``json_type``, stores each with its reason in table ``json_rejects_N``, and
writes a copy of the file with those lines left empty. The copy keeps every
other line at its line number, and ``read_json`` skips empty lines, so it
reads the file's objects alone. Table ``json_records_N`` stores the line of
each object in the copy, in file order.

A file takes this path only when DuckDB's read fails, returns the one
``json`` column, or returns a row of NULLs (see `_loading._maybe_malformed`).
A clean file pays for one more query, which DuckDB computes from column
statistics when some column has no NULL.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import duckdb
import pyarrow as pa

from appliance.storage._lines import non_blank_lines
from appliance.storage._sql import literal

logger = logging.getLogger(__name__)

_BLANK = " \t\r\x0b\x0c"
"""Characters of a blank line, as `_lines.non_blank_lines` strips them."""
_SINGLE_VALUES = ("VARCHAR", "BIGINT", "UBIGINT", "DOUBLE", "BOOLEAN", "NULL")
"""``json_type`` names of a JSON value other than an object or an array."""


def set_aside_malformed(
    db: duckdb.DuckDBPyConnection, index: int, path: Path, copy: Path
) -> int | None:
    """Store the malformed lines of `path` and write the rest of it to `copy`.

    A line is malformed when it is not valid JSON or contains an array or a
    single value. Blank lines are no rows, and a UTF-8 byte order mark at
    the start of the file is skipped, as ``read_json`` does. Tables
    ``json_rejects_N`` (line, text, message) and ``json_records_N``
    (_record, line) are created only when a line is malformed.

    Returns:
        The count of the file's objects when a line is malformed, else None,
        and then nothing is written.
    """
    lines = f"json_lines_{index}"
    db.execute(f"CREATE OR REPLACE TEMP TABLE {lines} AS {_classify_sql(path)}")
    bad = db.execute(
        f"SELECT line, text, kind FROM {lines} WHERE kind <> 'OBJECT' ORDER BY line"
    ).fetchall()
    if not bad:
        db.execute(f"DROP TABLE {lines}")
        return None
    rejects = pa.table(
        {
            "line": pa.array([line for line, _, _ in bad], pa.int64()),
            "text": [text for _, text, _ in bad],
            "message": [_reason(text, kind) for _, text, kind in bad],
        }
    )
    db.register("json_rejects", rejects)
    try:
        db.execute(f"CREATE TEMP TABLE json_rejects_{index} AS FROM json_rejects")
    finally:
        db.unregister("json_rejects")
    db.execute(
        f"CREATE TEMP TABLE json_records_{index} AS SELECT "
        "CAST(row_number() OVER (ORDER BY line) - 1 AS BIGINT) AS _record, line "
        f"FROM {lines} WHERE kind = 'OBJECT' ORDER BY line"
    )
    db.execute(f"DROP TABLE {lines}")
    _write_without(path, copy, [line for line, _, _ in bad])
    objects = db.execute(f"SELECT count(*) FROM json_records_{index}").fetchall()
    logger.info(
        "JSON-lines lines malformed, rows quarantined file=%s lines=%d",
        path,
        len(bad),
    )
    return int(objects[0][0])


def _classify_sql(path: Path) -> str:
    """Return SQL of each non-blank line of `path`: line, kind and, if bad, text.

    The kind is ``json_type``'s name of the line's value, or ``invalid``.
    Lines are split at line feeds, and a line's text loses its carriage
    return. The file is read whole by ``read_text``, which raises for a file
    that is not UTF-8, as `_sources.open_source` has checked.
    """
    blank = literal(_BLANK)
    text = "CASE WHEN n = 1 AND starts_with(l, chr(65279)) THEN l[2:] ELSE l END"
    kind = "CASE WHEN json_valid(text) THEN json_type(text) ELSE 'invalid' END"
    content = f"read_text({literal(str(path))})"
    split = (
        "SELECT unnest(s) AS l, unnest(range(1, len(s) + 1)) AS n FROM "
        f"(SELECT string_split(content, chr(10)) AS s FROM {content})"
    )
    return (
        "SELECT line, kind, CASE WHEN kind <> 'OBJECT' THEN "
        "regexp_replace(text, '\\r$', '') END AS text FROM "
        f"(SELECT line, text, {kind} AS kind FROM "
        f"(SELECT n AS line, {text} AS text FROM ({split})) "
        f"WHERE trim(text, {blank}) <> '')"
    )


def _reason(text: str, kind: str) -> str:
    """Return why the line `text`, of ``json_type`` `kind`, is no JSON object."""
    if kind == "ARRAY":
        return "an array where a JSON object was expected"
    if kind in _SINGLE_VALUES:
        return "a single value where a JSON object was expected"
    if text.strip() in ("[", "{"):
        return (
            "a JSON value spread over several lines, where JSON Lines has one "
            "object per line"
        )
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        # Python ends some messages with "at", such as "Unterminated string
        # starting at", whose position is where the string starts.
        place = "character" if exc.msg.endswith(" at") else "at character"
        return f"invalid JSON: {exc.msg} {place} {exc.colno}"
    # NOTE: DuckDB's parser rejects a few lines that Python's accepts,
    # which then have no more detail.
    return "invalid JSON"


def _write_without(path: Path, copy: Path, numbers: list[int]) -> None:
    """Write `path` to `copy` with the lines of `numbers` (from 1) left empty."""
    lines = path.read_bytes().split(b"\n")
    for number in numbers:
        lines[number - 1] = b""
    copy.write_bytes(b"\n".join(lines))


def count_empty_objects(path: Path) -> int | None:
    """Return the count of ``{}`` lines when every other line of `path` is blank.

    DuckDB 2.0.1 reads such a file, and a file of blank lines alone, as one
    column named ``json``, which is not a column of the file. Returns None
    when a line contains anything else, such as an object with a key or a line
    that is not valid JSON.
    """
    count = 0
    for _, line in non_blank_lines(path):
        try:
            value = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None
        if value != {}:
            return None
        count += 1
    return count
