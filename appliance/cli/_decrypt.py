"""Rows of dataset versions and the quarantine, with encrypted columns decrypted."""

from __future__ import annotations

from typing import Any

import duckdb

from appliance.config import Config


def read_rows(
    config: Config, version: Any, limit: int, decrypt: bool
) -> list[dict[str, Any]]:
    """Return the first `limit` rows of `version` from its Parquet files.

    The lake's files are immutable, so they are read without the catalog,
    even while a daemon has it open. Encrypted columns stay ciphertext unless
    `decrypt` is set.

    Raises:
        ColumnKeyError: `decrypt` is set and the key does not decrypt them.
    """
    from appliance.crypto import column_cipher
    from appliance.storage import encrypted_columns, scan_sql

    with duckdb.connect() as db:
        table = db.sql(f"{scan_sql(version)} LIMIT {int(limit)}").to_arrow_table()
    encrypted = encrypted_columns(version)
    if decrypt and encrypted:
        cipher = column_cipher(config)
        for name in encrypted:
            if name in table.column_names:
                index = table.column_names.index(name)
                plain = cipher.decrypt_array(table.column(index))
                table = table.set_column(index, name, plain)
    return table.to_pylist()


def decrypt_quarantine(
    config: Config, dataset: str, rows: list[dict[str, Any]]
) -> None:
    """Decrypt, in place, the values of sensitive columns in quarantined rows.

    A row of an unsplit CSV record, stored as its encrypted line, gets the
    line back.

    Raises:
        ColumnKeyError: The key does not decrypt them.
    """
    from appliance.crypto import column_cipher

    sensitive = config.dataset(dataset).sensitive
    if not sensitive or not rows:
        return
    cipher = column_cipher(config)
    for row in rows:
        fields = row["row"] if isinstance(row["row"], dict) else {}
        if set(fields) == {"csv_line"}:
            row["value"] = cipher.decrypt_text(row["value"])
            fields["csv_line"] = row["value"]
            continue
        if row["column"] in sensitive and row["value"] is not None:
            row["value"] = cipher.decrypt_text(row["value"])
        for name in sensitive:
            if isinstance(fields.get(name), str):
                fields[name] = cipher.decrypt_text(fields[name])
