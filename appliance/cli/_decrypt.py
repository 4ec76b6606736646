"""Rows of dataset versions, the quarantine and the prediction log, decrypted.

Decryption happens in the command's process with the column key file, so
it needs read access to that file, not a role of the daemon's API. The key
file that the appliance makes in the home has mode 0600.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import duckdb

from appliance.config import Config
from appliance.errors import ColumnKeyError

if TYPE_CHECKING:
    from appliance.crypto import ColumnCipher


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
    from appliance.errors import StorageError
    from appliance.storage import (
        encrypted_columns,
        incomplete_files_message,
        lost_files_message,
        scan_sql,
    )

    try:
        with duckdb.connect() as db:
            incomplete = incomplete_files_message(db, version)
            if incomplete is not None:
                raise StorageError(incomplete)
            sql = f"{scan_sql(version)} LIMIT {int(limit)}"
            table = db.sql(sql).to_arrow_table()
    except duckdb.IOException:
        raise StorageError(lost_files_message(version)) from None
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

    A row of a record that no row was read from, such as an unsplit CSV
    record or a JSON-lines line that is not an object, stored as its
    encrypted text, gets the text back.

    Raises:
        ColumnKeyError: The key does not decrypt them.
    """
    from appliance.crypto import column_cipher
    from appliance.storage import raw_line_key

    sensitive = config.dataset(dataset).sensitive
    if not sensitive or not rows:
        return
    cipher = column_cipher(config)
    for row in rows:
        fields = row["row"] if isinstance(row["row"], dict) else {}
        key = raw_line_key(fields)
        if key is not None:
            row["value"] = cipher.decrypt_text(row["value"])
            fields[key] = row["value"]
            continue
        if row["column"] in sensitive and row["value"] is not None:
            row["value"] = cipher.decrypt_text(row["value"])
        for name in sensitive:
            if isinstance(fields.get(name), str):
                fields[name] = cipher.decrypt_text(fields[name])


def decrypt_predictions(config: Config, rows: list[dict[str, Any]]) -> None:
    """Decrypt, in place, the input values of sensitive columns in logged rows.

    The prediction log encrypts each input column that any dataset declares
    sensitive. The key is first checked against the key ids of the stored
    dataset versions, as ingest checks it.

    Raises:
        ColumnKeyError: The key file is missing or invalid, is not the key
            of the stored versions, or does not decrypt a logged value.
    """
    from appliance.cli._output import read_catalog
    from appliance.crypto import column_cipher
    from appliance.storage import DatasetVersion, check_version_keys

    sensitive = config.sensitive_columns
    if not sensitive or not rows:
        return
    cipher = column_cipher(config)
    records = read_catalog(config, "/v1/admin/datasets", "datasets", "list_versions")
    check_version_keys((DatasetVersion(**record) for record in records), cipher)
    for row in rows:
        inputs = row.get("input")
        if not isinstance(inputs, dict):
            continue
        for name in sensitive & inputs.keys():
            if isinstance(inputs[name], str):
                inputs[name] = _decrypted_input(cipher, inputs[name], row, name)


def _decrypted_input(
    cipher: ColumnCipher, token: str, row: dict[str, Any], name: str
) -> str:
    try:
        return cipher.decrypt_text(token)
    except ColumnKeyError:
        # The message leaves the value out, because it may be plaintext.
        raise ColumnKeyError(
            f"input column {name!r} of request {row['request_id']} (row "
            f"{row['row_index']}) in the prediction log does not decrypt with "
            f"the column key {cipher.source} (key id {cipher.key_id}); a row "
            "logged before the column was declared sensitive holds plaintext, "
            "so select the rows logged after that with 'predictions query "
            "--since TIME'"
        ) from None
