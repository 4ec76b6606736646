"""Encryption of the sensitive columns of request rows and Arrow tables."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import pyarrow as pa

from appliance.crypto._cipher import ColumnCipher


def encrypt_rows(
    rows: Sequence[Any], columns: Collection[str], cipher: ColumnCipher
) -> list[Any]:
    """Return copies of the JSON rows with the values of `columns` encrypted.

    A row that is not an object, or has none of `columns`, is kept as it is.
    """
    encrypted = []
    for row in rows:
        if isinstance(row, dict) and any(name in row for name in columns):
            row = {
                name: cipher.encrypt_value(value) if name in columns else value
                for name, value in row.items()
            }
        encrypted.append(row)
    return encrypted


def encrypt_table(
    table: pa.Table, columns: Collection[str], cipher: ColumnCipher
) -> pa.Table:
    """Return `table` with its columns named in `columns` encrypted as text."""
    for index, name in enumerate(table.column_names):
        if name in columns:
            encrypted = cipher.encrypt_array(table.column(index))
            table = table.set_column(index, pa.field(name, pa.string()), encrypted)
    return table
