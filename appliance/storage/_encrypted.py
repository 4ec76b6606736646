"""Sensitive columns in storage: the SQL functions, the quarantine and key checks.

An ingest of a dataset with ``sensitive`` columns registers `ENCRYPT` and
`DECRYPT` as DuckDB functions on its own cursor. They run in Python on Arrow
batches, and each distinct value is encrypted once (`ColumnCipher`).
Each version records the encrypted columns and the key's fingerprint in its
report under `REPORT_KEY`, so a later ingest or daemon start with another
key fails with a clear error instead of writing values that match nothing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Iterable
from typing import Any

import duckdb
import pyarrow as pa

from appliance.config import DatasetConfig
from appliance.crypto import ColumnCipher, discard_created_key
from appliance.errors import ColumnKeyError, IngestError
from appliance.storage._catalog import Catalog
from appliance.storage._quarantine import raw_line_key

logger = logging.getLogger(__name__)

ENCRYPT = "appliance_encrypt"
"""DuckDB function from a VARCHAR to its ciphertext."""
DECRYPT = "appliance_decrypt"
"""DuckDB function from a ciphertext to its plaintext VARCHAR."""
REPORT_KEY = "encryption"
"""Key of ``{"columns": [...], "key_id": ...}`` in a version's report."""


def register_functions(db: duckdb.DuckDBPyConnection, cipher: ColumnCipher) -> None:
    """Create `ENCRYPT` and `DECRYPT` with `db`; `remove_functions` drops them.

    DuckDB keeps them in the database's catalog, which the cursors of one
    connection share, so one ingest at a time may hold them.
    """
    db.create_function(
        ENCRYPT, cipher.encrypt_array, ["VARCHAR"], "VARCHAR", type="arrow"
    )
    db.create_function(
        DECRYPT, cipher.decrypt_array, ["VARCHAR"], "VARCHAR", type="arrow"
    )


def remove_functions(db: duckdb.DuckDBPyConnection) -> None:
    """Drop the functions that `register_functions` created with `db`."""
    db.remove_function(ENCRYPT)
    db.remove_function(DECRYPT)


def encrypted_sql(expression: str) -> str:
    """Return SQL of the ciphertext of `expression`'s text."""
    return f"{ENCRYPT}(CAST({expression} AS VARCHAR))"


def encryption_report(settings: DatasetConfig, cipher: ColumnCipher | None) -> dict:
    """Return the report entry of a new version, empty without sensitive columns."""
    if not settings.sensitive or cipher is None:
        return {}
    columns = sorted(settings.sensitive)
    return {REPORT_KEY: {"columns": columns, "key_id": cipher.key_id}}


def check_cipher(
    catalog: Catalog, settings: DatasetConfig, cipher: ColumnCipher | None
) -> None:
    """Check that `cipher` exists when needed and has the key of stored versions.

    Raises:
        ColumnKeyError: The dataset declares sensitive columns and no cipher
            was given, or a stored version was encrypted with another key.
    """
    if not settings.sensitive:
        return
    if cipher is None:
        raise ColumnKeyError(
            f"dataset {settings.name!r} declares sensitive columns but the ingest "
            "was given no column key"
        )
    check_key(catalog, cipher, settings.name)


def check_key(
    catalog: Catalog, cipher: ColumnCipher, ingesting: str | None = None
) -> None:
    """Raise `ColumnKeyError` when a stored version was encrypted with another key.

    With `ingesting`, the dataset being ingested, the error names that
    dataset and one of its own versions when one was encrypted with another
    key.
    """
    rows = catalog.db.execute(
        "SELECT dataset, version, json_extract_string(report_json, ?) AS key_id "
        "FROM dataset_versions WHERE key_id IS NOT NULL AND key_id <> ? "
        "ORDER BY dataset IS NOT DISTINCT FROM ? DESC LIMIT 1",
        [f"$.{REPORT_KEY}.key_id", cipher.key_id, ingesting],
    ).fetchall()
    if not rows:
        return
    if discard_created_key(cipher):
        raise _lost_key_folder_error(cipher, *rows[0])
    if ingesting is None:
        raise _other_key_error(cipher, *rows[0])
    raise _ingest_key_error(cipher, ingesting, *rows[0])


def check_version_keys(versions: Iterable[Any], cipher: ColumnCipher) -> None:
    """Raise `ColumnKeyError` when one of `versions` was encrypted with another key.

    The check of `check_key`, over versions listed without opening the
    catalog, such as those a running daemon returns.
    """
    for version in versions:
        key_id = version.report.get(REPORT_KEY, {}).get("key_id")
        if key_id is not None and key_id != cipher.key_id:
            raise _other_key_error(cipher, version.dataset, version.version, key_id)


def _lost_key_folder_error(
    cipher: ColumnCipher, dataset: str, version: str, key_id: str
) -> ColumnKeyError:
    folder = cipher.source.parent
    return ColumnKeyError(
        f"the home's key folder {folder} lost its column key: {dataset}@{version} "
        f"was encrypted with key id {key_id}, and its values cannot be read "
        f"without that key; restore {folder} ({cipher.source.name} and "
        f"{cipher.source.name}.id) from a backup of the home"
    )


def _other_key_error(
    cipher: ColumnCipher, dataset: str, version: str, key_id: str
) -> ColumnKeyError:
    return ColumnKeyError(
        f"column key {cipher.source} (key id {cipher.key_id}) is not the key "
        f"that encrypted {dataset}@{version} (key id {key_id}); values "
        "encrypted with it would match none of the stored ones, so restore "
        "that key file or set [security] column_key to it"
    )


def _ingest_key_error(
    cipher: ColumnCipher, ingesting: str, dataset: str, version: str, key_id: str
) -> ColumnKeyError:
    """Return the error of an ingest of `ingesting` with another key than the
    one that encrypted `dataset`@`version`."""
    key = f"column key {cipher.source} (key id {cipher.key_id})"
    if dataset == ingesting:
        problem = f"{key} is not the key that encrypted {dataset}@{version}"
    else:
        problem = (
            f"{key} is not the key that encrypted the home's other datasets, "
            f"such as {dataset}@{version}, and one column key encrypts every "
            "dataset of a home"
        )
    return ColumnKeyError(
        f"cannot ingest dataset {ingesting!r}: {problem} (key id {key_id}); "
        "values encrypted with it would match none of the stored ones, so "
        "restore that key file or set [security] column_key to it"
    )


def check_same_columns(parent: Any, settings: DatasetConfig) -> None:
    """Reject an append whose encrypted columns differ from the parent's.

    An append version reads its parent's files, so it would mix plaintext
    and ciphertext in one column.

    Raises:
        IngestError: The columns differ.
    """
    stored = encrypted_columns(parent)
    if stored == sorted(settings.sensitive):
        return
    raise IngestError(
        f"dataset {settings.name!r} now declares sensitive columns "
        f"{sorted(settings.sensitive)}, but its latest version "
        f"{parent.version} encrypts {stored}; an append would mix plaintext "
        "and ciphertext in one version, so ingest all of its rows again with "
        "--mode replace"
    )


def encrypted_columns(version: Any) -> list[str]:
    """Return the columns `version` stores encrypted, sorted."""
    return list(version.report.get(REPORT_KEY, {}).get("columns", []))


def encrypt_quarantine(
    rows: pa.Table, sensitive: Collection[str], cipher: ColumnCipher
) -> pa.Table:
    """Return quarantined rows with the values of `sensitive` columns encrypted.

    A rejected value of a sensitive column is encrypted, and its reason shows
    ``[encrypted]`` in its place. Each row's JSON has its sensitive fields
    encrypted. A record that no row was read from, such as a CSV record the
    reader could not split or a JSON-lines line that is not an object, keeps
    only its text, which is encrypted as one value.
    """
    records = rows.to_pylist()
    for record in records:
        _encrypt_record(record, sensitive, cipher)
    return pa.Table.from_pylist(records, schema=rows.schema)


def _encrypt_record(
    record: dict[str, Any], sensitive: Collection[str], cipher: ColumnCipher
) -> None:
    row = json.loads(record["row_json"]) if record["row_json"] else None
    value = record["value"]
    key = raw_line_key(row)
    if key is not None:
        record["value"] = cipher.encrypt_value(value)
        record["row_json"] = json.dumps({key: record["value"]})
        return
    if record["column_name"] in sensitive and value is not None:
        record["value"] = cipher.encrypt_text(value)
        if value:
            record["reason"] = record["reason"].replace(value, "[encrypted]")
    if isinstance(row, dict):
        for name in sensitive:
            if row.get(name) is not None:
                row[name] = cipher.encrypt_value(row[name])
        record["row_json"] = json.dumps(row)
