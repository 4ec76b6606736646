"""Column names that DuckDB would rename: empty, repeated, or equal but for case.

DuckDB compares column names regardless of ASCII case. Reading a Parquet file
or JSON lines, it renames the second of two names that differ only in case
(``a`` and ``A``), or that repeat, to ``a_1``, and an empty Parquet name to
``C1`` (DuckDB 2.0.1). The ingest rejects such files, naming both columns, as
it rejects a CSV header that repeats a name, so no column is stored under a
name the file does not have. For the same reason, a file's column must be
spelt as the dataset's and the other files' column of that name.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from appliance.errors import IngestError

if TYPE_CHECKING:
    # _sources imports this module, so the type is imported for annotations only.
    from appliance.storage._sources import InputFile

_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
_RENAMED = re.compile(r"(.+)_[0-9]+")
"""A name as DuckDB renames the second of two names that match."""


INTERNAL_COLUMNS = ("_file", "_record")
"""Columns the ingest adds to the staged rows: each row's file and position."""


def check_internal_names(path: Path, names: list[str]) -> None:
    """Reject a file with a column that the ingest adds to its rows itself.

    Raises:
        IngestError: A name is one of `INTERNAL_COLUMNS`, in any case.
    """
    for name in names:
        if ascii_lower(name) in INTERNAL_COLUMNS:
            raise IngestError(
                f"{path}: column {name!r} is reserved, in any case, because the "
                "ingest adds columns '_file' and '_record' to the rows it reads; "
                "rename it before ingesting"
            )


def ascii_lower(name: str) -> str:
    """Return `name` with ASCII letters in lower case, as DuckDB compares names."""
    return name.translate(_ASCII_LOWER)


def case_clash(names: list[str]) -> tuple[int, int] | None:
    """Return the positions of the first two names that match regardless of case."""
    seen: dict[str, int] = {}
    for index, name in enumerate(names):
        key = ascii_lower(name)
        if key in seen:
            return seen[key], index
        seen[key] = index
    return None


def clash_message(first: str, second: str, where: str) -> str:
    """Return why two matching column names `where` are rejected and the fix."""
    if first == second:
        return (
            f"duplicate column name {first!r} {where}; give each column a distinct name"
        )
    return (
        f"column names {first!r} and {second!r} {where} differ only in case, "
        "and DuckDB does not tell them apart; rename one of them"
    )


def case_mismatch(names: Iterable[str], known: Iterable[str]) -> tuple[str, str] | None:
    """Return the first of `names` that a `known` name spells otherwise in case.

    Returns:
        The name and the known spelling, or None when every name that matches
        a known name regardless of case is spelt as it is.
    """
    spelled: dict[str, str] = {}
    for name in known:
        spelled.setdefault(ascii_lower(name), name)
    for name in names:
        other = spelled.get(ascii_lower(name), name)
        if other != name:
            return name, other
    return None


def check_spellings(
    files: list[tuple[Path, list[str]]], known: Iterable[str], dataset: str
) -> None:
    """Reject a column spelt otherwise than the dataset's or another file's.

    DuckDB matches column names regardless of case, so ``A`` in one file and
    ``a`` in the contract, the latest version or another file of the ingest
    would be read as one column under either spelling.

    Args:
        files: Each file's path and column names.
        known: The dataset's column names, as its contract and latest
            version spell them.

    Raises:
        IngestError: Two names differ only in case.
    """
    for path, names in files:
        mismatch = case_mismatch(names, known)
        if mismatch is not None:
            name, other = mismatch
            raise IngestError(
                f"{path}: column {name!r} differs only in case from column "
                f"{other!r} of dataset {dataset!r}, and DuckDB does not tell "
                f"them apart; rename it to {other!r} in the file"
            )
    first: dict[str, tuple[Path, str]] = {}
    for path, names in files:
        for name in names:
            other_path, other = first.setdefault(ascii_lower(name), (path, name))
            if other != name:
                raise IngestError(
                    f"{path}: column {name!r} differs only in case from column "
                    f"{other!r} of {other_path}, and DuckDB does not tell them "
                    "apart; use one spelling in every file"
                )


def check_parquet_names(path: Path) -> None:
    """Reject a Parquet file with an empty, a repeated or a reserved column name.

    Raises:
        IngestError: A name is empty or reserved, or two names match
            regardless of case.
    """
    try:
        names = pq.read_schema(path).names
    except (OSError, pa.ArrowException):
        return  # The read names what is wrong with the file.
    check_internal_names(path, names)
    for index, name in enumerate(names, start=1):
        if not name.strip():
            raise IngestError(
                f"{path}: column {index} of the Parquet schema has an empty name; "
                "name every column before ingesting"
            )
    clash = case_clash(names)
    if clash is not None:
        first, second = clash
        where = f"in Parquet columns {first + 1} and {second + 1}"
        message = clash_message(names[first], names[second], where)
        raise IngestError(f"{path}: {message}")


def check_json_key_case(file: InputFile, columns: list[str]) -> None:
    """Reject a JSON-lines file with two keys that differ only in case.

    `columns` are the names DuckDB read. Only when one looks renamed, such as
    ``a_1`` beside ``A``, is the file scanned for the line with the second key.

    Raises:
        IngestError: Two keys of the file match regardless of case.
    """
    lowered = {ascii_lower(name) for name in columns}
    renamed = [_RENAMED.fullmatch(name) for name in columns]
    if not any(m and ascii_lower(m.group(1)) in lowered for m in renamed):
        return
    seen: dict[str, str] = {}
    path = file.path
    with file.read_path.open("rb") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except ValueError:
                continue  # The reader took the line; its keys are not checked.
            if not isinstance(value, dict):
                continue
            for key in value:
                other = seen.setdefault(ascii_lower(key), key)
                if other != key:
                    raise IngestError(
                        f"{path}, line {number}: key {key!r} and key {other!r} "
                        "differ only in case, and DuckDB does not tell them "
                        "apart; use one spelling in every line"
                    )
