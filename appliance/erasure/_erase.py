"""One erasure: the subject's rows removed from every place the appliance stores.

The places, in the order they are changed: the dataset's versions in the
lake (`_lake`), the quarantine table, the HTTP ingest buffer's files
(`_buffer`), and the prediction log (`appliance.predictions`). Each place is
changed atomically on its own, so a crash between two places leaves the
earlier ones erased. Running the same erasure again finishes the rest. The
receipt is stored only when every place is done.

Models are derived data and are not changed. The receipt lists the model
versions trained on a redacted version, so the operator can retrain them.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import duckdb

from appliance.access import record
from appliance.config import Config
from appliance.crypto import ColumnCipher, column_cipher
from appliance.erasure._buffer import count_buffer, erase_buffer
from appliance.erasure._lake import LakeErasure, apply_lake, plan_lake
from appliance.erasure._receipts import Receipt, store_receipt
from appliance.erasure._subject import Subject, check_subject_keys
from appliance.errors import ColumnKeyError, StorageError
from appliance.predictions import PredictionLog
from appliance.predictions._erase import (
    ParquetErasure,
    count_journal,
    count_labels,
    count_parquet,
    count_spill,
    count_table,
    delete_from_table,
    rewrite_parquet,
)
from appliance.storage import (
    RAW_LINE_FIELDS,
    Catalog,
    IngestBuffer,
    list_models,
    request_compaction,
)

logger = logging.getLogger(__name__)

COMPACTION_NOTE = (
    "the catalog file keeps the bytes of the deleted rows in freed blocks until "
    "it is compacted, which the daemon does at its next start"
)

DERIVED_NOTE = (
    "models already trained on the erased rows are not changed; retrain the "
    "listed model versions to remove the rows' influence"
)


def erase(
    catalog: Catalog,
    config: Config,
    subject: Subject,
    dry_run: bool = False,
    log: PredictionLog | None = None,
    buffer: IngestBuffer | None = None,
    after_commit: Callable[[], None] | None = None,
) -> Receipt:
    """Remove the subject's rows everywhere, or count them when `dry_run` is set.

    Args:
        catalog: A writable catalog, or the daemon's cursor view of it.
        log: The daemon's running prediction log; a log of its own is started
            for the erasure when None.
        buffer: The daemon's running ingest buffer; None when no daemon runs.
        after_commit: Called once the dataset's versions read their new
            folders, before the old ones are deleted; not called when no
            version changed.

    Raises:
        NotFoundError: The dataset has no version.
        RequestError: A key column is in no version of the dataset or not in
            its declared ``subject_keys``, or a value does not read as the
            column's type.
        StorageError: A place could not be rewritten; the places before it
            are erased, and running the erasure again finishes the rest. Also
            raised when a rolled prediction log file could not be read, after
            every other place is erased, and then no receipt is stored. A dry
            run lists such a file in `Receipt.unreadable` and its notes.
    """
    receipt = Receipt(
        erasure_id=uuid.uuid4().hex[:16],
        dataset=subject.dataset,
        columns=subject.columns,
        subject_sha256=subject.digest,
        started_at=datetime.now(timezone.utc),
        dry_run=dry_run,
    )
    check_subject_keys(subject, config.dataset(subject.dataset).subject_keys)
    try:
        places = _Places(log, buffer, after_commit)
        latest = [
            _run(catalog, config, form, places, receipt)
            for form in _stored_forms(config, subject)
        ]
        _note_latest(receipt, latest)
        if not dry_run and not receipt.unreadable:
            _finish(catalog, receipt, places.log)
    except (duckdb.Error, OSError) as exc:
        # DuckDB's messages can quote the SQL, which contains the key values.
        error = subject.redact(str(exc))
        if not dry_run:
            _audit(catalog, receipt, "failed", error)
        raise StorageError(
            f"erasure {receipt.erasure_id} from dataset {subject.dataset!r} "
            f"failed: {error}; the places erased before the "
            "failure stay erased, and running the erasure again finishes the rest"
        ) from None
    if receipt.unreadable:
        _report_unreadable(catalog, receipt, subject)
    if not dry_run:
        _audit(catalog, receipt, "ok")
    logger.info(
        "erasure %s id=%s dataset=%s subject_sha256=%s rows=%d",
        "counted" if dry_run else "done",
        receipt.erasure_id,
        subject.dataset,
        receipt.subject_sha256,
        receipt.total,
    )
    return receipt


def _stored_forms(config: Config, subject: Subject) -> list[Subject]:
    """Return `subject` as written and, when a key column is sensitive, encrypted.

    Versions ingested before a column became sensitive keep its plaintext,
    and later ones, the buffer, the quarantine and the prediction log its
    ciphertext, so the erasure looks for both.
    """
    sensitive = config.sensitive_columns
    if not any(name in sensitive for name in subject.columns):
        return [subject]
    cipher = column_cipher(config)
    keys = tuple(
        (name, cipher.encrypt_text(value) if name in sensitive else value)
        for name, value in subject.keys
    )
    return [subject, Subject(subject.dataset, keys)]


@dataclass(frozen=True)
class _Places:
    """The daemon's running parts that an erasure changes, None without one."""

    log: PredictionLog | None
    buffer: IngestBuffer | None
    after_commit: Callable[[], None] | None


def _run(
    catalog: Catalog,
    config: Config,
    subject: Subject,
    places: _Places,
    receipt: Receipt,
) -> tuple[str, int]:
    """Add to `receipt` the counts of the subject's rows, removing them too
    unless it is a dry run.

    Returns:
        The latest version's id and its count of the subject's rows, each
        row once, before any removal.
    """
    plan = plan_lake(catalog, subject)
    latest = (plan.versions[0].version, plan.latest_rows)
    receipt.models += [m for m in _trained_on(plan) if m not in receipt.models]
    notes = [
        DERIVED_NOTE,
        *_model_files_notes(catalog, subject),
        *_detector_notes(catalog, subject),
    ]
    receipt.notes += [note for note in notes if note not in receipt.notes]
    if receipt.dry_run:
        cipher = column_cipher(config) if config.sensitive_columns else None
        counts = _counts(catalog, plan, subject, cipher, receipt)
    else:
        counts = _remove(catalog, config, plan, subject, places, receipt)
    receipt.removed = _added(receipt.removed, counts)
    return latest


def _note_latest(receipt: Receipt, latest: list[tuple[str, int]]) -> None:
    """Note the subject's rows in the latest version, which the per-folder
    counts can exceed after a compaction."""
    rows = sum(count for _, count in latest)
    copies = sum(receipt.removed.get("dataset_versions", {}).values())
    if not copies:
        return
    tense = "reads" if receipt.dry_run else "read"
    note = (
        f"the latest version {receipt.dataset}@{latest[0][0]} {tense} {rows} "
        "of the subject's rows"
    )
    if copies > rows:
        note += (
            f"; the {copies} rows under dataset_versions count a row once per "
            "version folder that contains it, such as a compacted version's "
            "folder and the append chain it copied"
        )
    receipt.notes.append(note)


def _audit(
    catalog: Catalog, receipt: Receipt, outcome: str, error: str | None = None
) -> None:
    """Record the erasure in the audit log, naming the subject by its hash only."""
    details = {
        "erasure_id": receipt.erasure_id,
        "columns": receipt.columns,
        "subject_sha256": receipt.subject_sha256,
        "rows": receipt.total,
    }
    if error is not None:
        details["error"] = error
    record(catalog, "dataset.erase", receipt.dataset, details, outcome)


def _report_unreadable(catalog: Catalog, receipt: Receipt, subject: Subject) -> None:
    """Note the prediction log files a dry run could not read, or fail an
    erasure that removed every row but theirs.

    Raises:
        StorageError: Not a dry run. The error names each file and what to do.
    """
    files = "; ".join(
        f"{path} ({subject.redact(error)})"
        for path, error in receipt.unreadable.items()
    )
    if receipt.dry_run:
        receipt.notes.append(
            f"prediction log files not read: {files}. Their rows are not counted, "
            "and an erasure fails on them until they are restored from a backup"
        )
        return
    _audit(catalog, receipt, "failed", f"prediction log files not read: {files}")
    # The rows deleted keep their bytes in the catalog file until a compaction.
    request_compaction(catalog.home)
    raise StorageError(
        f"erasure {receipt.erasure_id} from dataset {receipt.dataset!r} is "
        f"incomplete: it removed {receipt.total} rows, but could not read the "
        f"prediction log files {files}. Any rows of the subject in them are "
        "still there, and no receipt was stored. Restore each file from a backup "
        "or repair it, then run the same erasure again to finish. A file that "
        "cannot be restored can only be deleted, with every prediction in it; "
        "queries and checks skip it meanwhile"
    )


def _finish(catalog: Catalog, receipt: Receipt, log: PredictionLog | None) -> None:
    """Store the receipt of a finished erasure and plan the catalog's compaction."""
    receipt.finished_at = datetime.now(timezone.utc)
    store_receipt(catalog, receipt)
    if log is not None:
        request_compaction(catalog.home)
        receipt.notes.append(COMPACTION_NOTE)


def _added(total: dict, counts: dict) -> dict:
    """Return the sum of two count mappings, such as per place or per version."""
    result = dict(total)
    for place, count in counts.items():
        if isinstance(count, dict):
            result[place] = _added(result.get(place, {}), count)
        else:
            result[place] = result.get(place, 0) + count
    return result


def _counts(
    catalog: Catalog,
    plan: LakeErasure,
    subject: Subject,
    cipher: ColumnCipher | None,
    receipt: Receipt,
) -> dict:
    condition = subject.json_sql("input")
    home = catalog.home
    parquet = count_parquet(catalog.db, home, condition)
    receipt.unreadable.update({str(p): e for p, e in parquet.unreadable.items()})
    return {
        "dataset_versions": plan.counts,
        "quarantine": _quarantine(catalog, subject, False, cipher),
        "buffer": count_buffer(home / "buffer", subject),
        "predictions_table": count_table(catalog.db, condition),
        "predictions_parquet": parquet.rows,
        "predictions_journal": count_journal(home, subject.matches_json),
        "predictions_spill": count_spill(home, subject.matches_json),
        "labels": count_labels(catalog.db, condition) + parquet.labels,
    }


def _remove(
    catalog: Catalog,
    config: Config,
    plan: LakeErasure,
    subject: Subject,
    places: _Places,
    receipt: Receipt,
) -> dict:
    home = catalog.home
    apply_lake(catalog, plan, subject, receipt.erasure_id, places.after_commit)
    removed: dict = {"dataset_versions": {k: v for k, v in plan.counts.items() if v}}
    cipher = column_cipher(config) if config.sensitive_columns else None
    removed["quarantine"] = _quarantine(catalog, subject, True, cipher)
    removed["buffer"] = erase_buffer(home / "buffer", subject, places.buffer)
    # Counted before the log moves their rows into the table, where they are
    # erased and counted again.
    removed["predictions_journal"] = count_journal(home, subject.matches_json)
    removed["predictions_spill"] = count_spill(home, subject.matches_json)
    table, labels, parquet = _remove_predictions(catalog, config, subject, places.log)
    receipt.unreadable.update({str(p): e for p, e in parquet.unreadable.items()})
    removed["predictions_table"] = table
    removed["predictions_parquet"] = parquet.rows
    removed["labels"] = labels + parquet.labels
    return removed


def _remove_predictions(
    catalog: Catalog, config: Config, subject: Subject, log: PredictionLog | None
) -> tuple[int, int, ParquetErasure]:
    """Remove the subject's rows from the predictions table and its Parquet files.

    Returns:
        The rows and labels removed from the table, and what was removed
        from the Parquet files, with the files that could not be read.
    """
    own = log is None
    if log is None:
        log = PredictionLog(catalog, config.predictions)
        log.start()
    condition = subject.json_sql("input")
    try:
        with log.flushed() as db:
            parquet = rewrite_parquet(db, catalog.home, condition)
            table, table_labels = delete_from_table(db, condition)
    finally:
        if own:
            log.stop()
    return table, table_labels, parquet


def _quarantine(
    catalog: Catalog, subject: Subject, delete: bool, cipher: ColumnCipher | None
) -> int:
    """Count or delete the dataset's quarantined rows of the subject.

    A record that no row was read from keeps only its text, so it matches
    when the text contains every key value. Such records are CSV records the
    reader could not split and JSON-lines lines that are not objects. A
    dataset with sensitive columns stores that text encrypted, so it is
    decrypted with `cipher` before the key values are looked for.
    """
    params: list[object] = [subject.dataset]
    condition = f"({subject.json_sql('row_json')})"
    raw = _raw_line_matches(catalog, subject, cipher)
    if raw:
        condition += f" OR rowid IN ({', '.join('?' * len(raw))})"
        params += raw
    verb = "DELETE" if delete else "SELECT count(*)"
    rows = catalog.db.execute(
        f"{verb} FROM quarantine WHERE dataset = ? AND ({condition})", params
    ).fetchall()
    return int(rows[0][0])


def _raw_line_matches(
    catalog: Catalog, subject: Subject, cipher: ColumnCipher | None
) -> list[int]:
    """Return the row ids of quarantined record texts that contain every key."""
    fields = " OR ".join(
        f"row_json->>'$.{field}' IS NOT NULL"
        for field in sorted(set(RAW_LINE_FIELDS.values()))
    )
    texts = ", ".join(
        f"row_json->>'$.{field}'" for field in sorted(set(RAW_LINE_FIELDS.values()))
    )
    rows = catalog.db.execute(
        f"SELECT rowid, coalesce({texts}) FROM quarantine "
        f"WHERE dataset = ? AND ({fields})",
        [subject.dataset],
    ).fetchall()
    matched = []
    for rowid, text in rows:
        if cipher is not None:
            try:
                text = cipher.decrypt_text(text)
            except ColumnKeyError:
                # Text stored before the dataset had sensitive columns.
                pass
        if all(str(value) in text for _, value in subject.keys):
            matched.append(rowid)
    return matched


def _trained_on(plan: LakeErasure) -> list[str]:
    """Return the model versions trained on a version that has matching rows."""
    matched = {f.owner.version for f in plan.folders if f.matched}
    models: list[str] = []
    for version in plan.versions:
        if version.version in matched or any(
            f.matched and f.glob in version.files for f in plan.folders
        ):
            models += [m for m in version.used_by if m not in models]
    return models


def _model_files_notes(catalog: Catalog, subject: Subject) -> list[str]:
    """Name the model versions whose files contain a key value's text.

    A one-hot encoder stores the categories it saw, so a model trained with
    the key column as a feature contains the value until it is retrained.
    """
    values = [value.encode() for _, value in subject.keys]
    notes = []
    for version in list_models(catalog):
        if any(_contains(path, values) for path in _files(version.path)):
            notes.append(
                f"the files of model {version.model} v{version.version} contain a "
                "key value (such as a category of an encoder); retrain the model "
                "and delete that version to remove it"
            )
    return notes


def _detector_notes(catalog: Catalog, subject: Subject) -> list[str]:
    """Name the models whose saved drift detector state contains a key value.

    The detectors of a categorical input count the categories of their
    windows, so a key column that is a model input can appear in them.
    """
    values = [value.encode() for _, value in subject.keys]
    try:
        rows = catalog.db.execute("SELECT model, state FROM detector_state").fetchall()
    except duckdb.CatalogException:
        return []
    return [
        f"the saved drift detector state of model {model} contains a key value "
        "as a category count; it is derived data, which the erasure does not change"
        for model, state in rows
        if all(value in bytes(state) for value in values)
    ]


def _files(folder: Path) -> list[Path]:
    return [p for p in sorted(folder.rglob("*")) if p.is_file()] if folder else []


def _contains(path: Path, values: list[bytes]) -> bool:
    data = path.read_bytes()
    return all(value in data for value in values)
