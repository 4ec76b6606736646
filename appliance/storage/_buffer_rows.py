"""Checks and encryption of rows sent over HTTP before the buffer stores them.

A name or value that the flush's ingest would reject is rejected with the
request, because at the flush it would reject the whole segment, with the
rows of other requests in it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from appliance.crypto import ColumnCipher, encrypt_rows
from appliance.errors import RequestError
from appliance.storage._column_names import INTERNAL_COLUMNS, ascii_lower
from appliance.storage._repeated_keys import RepeatedKeysObject
from appliance.storage._staging import RESERVED_COLUMN


def check_keys(dataset: str, index: int, row: dict[str, Any]) -> None:
    """Reject a row whose column names the ingest of its segment would reject.

    Found at the flush, such a name would reject the whole segment, with
    the other rows of every request in it.
    """
    for key in row:
        if ascii_lower(key) == RESERVED_COLUMN:
            raise RequestError(
                f"row {index} sent to dataset {dataset!r}: the column name "
                f"{key!r} is reserved by the lake layout (lake/DATASET/version=ID), "
                "in any case; rename that column",
                dataset=dataset,
                row=index,
            )
        if ascii_lower(key) in INTERNAL_COLUMNS:
            raise RequestError(
                f"row {index} sent to dataset {dataset!r}: the column name "
                f"{key!r} is reserved, in any case, because the ingest adds columns "
                "'_file' and '_record' to the rows it reads; rename that column",
                dataset=dataset,
                row=index,
            )
        if key and "\0" not in key:
            continue
        problem = "is empty" if not key else "contains a NUL byte (0x00)"
        shown = key.replace("\0", "\\0")
        raise RequestError(
            f"row {index} sent to dataset {dataset!r}: the column name '{shown}' "
            f"{problem}; name every column of each row",
            dataset=dataset,
            row=index,
        )


def spellings(
    dataset: str, rows: Sequence[dict[str, Any]], buffered: dict[str, str]
) -> dict[str, str]:
    """Return the new column names of `rows` by their lower case form.

    The flush reads a whole write-ahead file with DuckDB, which does not tell
    apart names that differ only in case, so such a pair would reject every
    row of the file, those of earlier requests too.

    Raises:
        RequestError: A name differs only in case from another name of
            `rows` or of the rows already buffered (HTTP 422).
    """
    seen = dict(buffered)
    new: dict[str, str] = {}
    for index, row in enumerate(rows):
        for key in row:
            lower = ascii_lower(key)
            first = seen.setdefault(lower, key)
            if first == key:
                new.setdefault(lower, key)
                continue
            where = " of rows buffered by earlier requests" if lower in buffered else ""
            raise RequestError(
                f"row {index} sent to dataset {dataset!r} has key {key!r}, which "
                f"differs from key {first!r}{where} only in case, and the ingest "
                "does not tell them apart; use one spelling in every row",
                dataset=dataset,
                row=index,
                columns=[first, key],
            )
    return {k: v for k, v in new.items() if k not in buffered}


def encrypted_row(
    row: dict[str, Any], sensitive: Sequence[str], cipher: ColumnCipher
) -> dict[str, Any]:
    """Return `row` with the values of `sensitive` keys encrypted.

    A row that repeats a key keeps its pairs as sent, each value of a
    sensitive key encrypted, so that its flush still quarantines it.
    """
    encrypted = encrypt_rows([row], sensitive, cipher)[0]
    if type(row) is not RepeatedKeysObject:
        return encrypted
    kept = RepeatedKeysObject(encrypted)
    kept.pairs = [
        (key, cipher.encrypt_value(value) if key in sensitive else value)
        for key, value in row.pairs
    ]
    return kept
