"""JSON-lines objects that repeat a key, such as ``{"a": 1, "a": 2}``.

DuckDB 2.0.1's ``read_json`` rejects a whole file for one such object ("has
duplicate key"), and a JSON parser keeps the last value. Neither shows which
value the writer meant, so the ingest quarantines each such row, naming the
key and its values as written, and stores the file's other rows.
`write_without_repeats` writes a copy of the file in which each such object
keeps the last value of each key, for DuckDB to read, and returns the
repeated keys. The copy has the same lines, so each row keeps its record
number and line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from appliance.jsonnumbers import dumps_as_sent

REPEATED_KEY_ERROR = "has duplicate key"
"""Part of DuckDB's ``read_json`` error for an object that repeats a key."""


@dataclass(frozen=True)
class RepeatedKey:
    """A key that one object of a JSON-lines file has more than once."""

    record: int
    """The object's position among the file's objects, from 0."""
    key: str
    values: list[str]
    """Each value of the key, as written (JSON text for a nested value)."""


class RepeatedKeysObject(dict[str, Any]):
    """A JSON object received with a key more than once, and its pairs as sent.

    As a dict it keeps the last value of each key, as JSON parsers do.
    `encode_as_sent` writes its pairs, so that the ingest of the buffer
    segment quarantines the row as it does a file's.
    """

    pairs: list[tuple[str, Any]]


def keep_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Return the object of `pairs`, keeping them when a key repeats.

    An ``object_pairs_hook`` for `json.loads`.
    """
    row = dict(pairs)
    if len(row) == len(pairs):
        return row
    kept = RepeatedKeysObject(row)
    kept.pairs = pairs
    return kept


def count_keys(value: Any) -> int:
    """Return the count of keys of every object in a parsed JSON value."""
    if isinstance(value, dict):
        return len(value) + sum(count_keys(item) for item in value.values())
    if isinstance(value, list):
        return sum(count_keys(item) for item in value)
    return 0


def mark_repeats(row: Any) -> Any:
    """Return `row` as a `RepeatedKeysObject` when a nested object repeats a key.

    `encode_as_sent` looks for repeated keys only in such a row, so that
    other rows cost it one type check.
    """
    if isinstance(row, RepeatedKeysObject) or not _has_repeats(row):
        return row
    marked = RepeatedKeysObject(row)
    marked.pairs = list(row.items())
    return marked


def encode_as_sent(value: Any) -> str:
    """Encode a row as compact JSON, with repeated keys as they were sent.

    A row that is not a `RepeatedKeysObject` (see `mark_repeats`) is encoded
    by `dumps_as_sent`.
    """
    if type(value) is not RepeatedKeysObject:
        return dumps_as_sent(value)
    return _encode(value)


def _encode(value: Any) -> str:
    if not _has_repeats(value):
        return dumps_as_sent(value)
    if isinstance(value, list):
        return "[" + ",".join(_encode(item) for item in value) + "]"
    pairs = value.pairs if isinstance(value, RepeatedKeysObject) else value.items()
    items = (f"{json.dumps(str(k))}:{_encode(v)}" for k, v in pairs)
    return "{" + ",".join(items) + "}"


def _has_repeats(value: Any) -> bool:
    if isinstance(value, RepeatedKeysObject):
        return True
    if isinstance(value, dict):
        return any(_has_repeats(item) for item in value.values())
    if isinstance(value, list):
        return any(_has_repeats(item) for item in value)
    return False


class _Repeats(dict[str, Any]):
    """An object parsed by `_object_hook`, with the keys it repeats."""

    repeated: dict[str, list[str]]


def write_without_repeats(path: Path, out: Path) -> list[RepeatedKey]:
    """Write `path` to `out` with the last value of each repeated key only.

    Lines whose objects repeat no key, nested objects included, are copied
    unchanged. A line that does not parse is copied too, so that DuckDB's
    read reports it.

    Returns:
        The repeated keys of the file's top-level objects, by record.
    """
    found: list[RepeatedKey] = []
    record = 0
    with path.open("rb") as lines, out.open("wb") as copy:
        for line in lines:
            if not line.strip():
                copy.write(line)
                continue
            repeated = _repeated_keys(line)
            if repeated:
                found += [
                    RepeatedKey(record, key, values) for key, values in repeated.items()
                ]
                last = json.loads(line)
                copy.write(json.dumps(last, separators=(",", ":")).encode() + b"\n")
            else:
                copy.write(line)
            record += 1
    return found


def store_repeats(
    db: duckdb.DuckDBPyConnection, index: int, repeats: list[RepeatedKey]
) -> str:
    """Store `repeats` of source file `index` as violations in a temporary table.

    Returns:
        The table's name. Its columns are those of the ``violations`` table.
    """
    table = f"repeated_keys_{index}"
    rows = pa.table(
        {
            "_file": pa.array([index] * len(repeats), pa.int64()),
            "_record": pa.array([r.record for r in repeats], pa.int64()),
            "column_name": [r.key for r in repeats],
            "value": [", ".join(r.values) for r in repeats],
            "reason": [_reason(r) for r in repeats],
        }
    )
    db.register("repeated_rows", rows)
    try:
        db.execute(f"CREATE TEMP TABLE {table} AS FROM repeated_rows")
    finally:
        db.unregister("repeated_rows")
    return table


def _reason(repeat: RepeatedKey) -> str:
    return (
        f"key {repeat.key!r} appears {len(repeat.values)} times in the object, "
        f"with the values {', '.join(repeat.values)}; send each key once"
    )


def _repeated_keys(line: bytes) -> dict[str, list[str]]:
    """Return each key that the line's object has more than once, with its values.

    A key repeated in a nested object is named by its path, such as ``a.b``.
    An empty result when no key repeats or the line does not parse.
    """
    try:
        row = json.loads(
            line,
            object_pairs_hook=_object_hook,
            parse_float=str,
            parse_int=str,
            parse_constant=str,
        )
    except (ValueError, UnicodeDecodeError):
        return {}
    found: dict[str, list[str]] = {}
    _collect(row, "", found)
    return found


def _object_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Return the object of `pairs`, recording each key it has more than once."""
    row = _Repeats(pairs)
    row.repeated = {}
    if len(row) < len(pairs):
        for key, value in pairs:
            row.repeated.setdefault(key, []).append(_text(value))
        row.repeated = {k: v for k, v in row.repeated.items() if len(v) > 1}
    return row


def _collect(value: Any, prefix: str, found: dict[str, list[str]]) -> None:
    if isinstance(value, list):
        for item in value:
            _collect(item, prefix, found)
        return
    if not isinstance(value, _Repeats):
        return
    for key, values in value.repeated.items():
        found[prefix + key] = values
    for key, item in value.items():
        _collect(item, f"{prefix}{key}.", found)


def _text(value: Any) -> str:
    """Return a value parsed with numbers as text, as written."""
    if isinstance(value, str):
        return value
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value, separators=(",", ":"))
