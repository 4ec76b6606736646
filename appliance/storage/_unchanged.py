"""Files ingested before: when an existing version may stand for a new ingest.

A version id is a hash of the source files' hashes, of the parent in
``append`` mode, and of the declared contract, sensitive columns and
``max_line_bytes`` (`id_fingerprint`). So a
``replace`` of the same bytes under another contract makes a new version,
checked against that contract. An ``append`` of files that an earlier
version already holds is not written again, because their accepted rows
would be stored twice. An earlier version is reused only while its rows
are part of the latest version. In ``replace`` mode the latest version must
be made of the same files (`replaced_again`). In ``append`` mode the found
version must be the latest or an ancestor it appends to (`is_in_latest`).
Otherwise the files are ingested again. `find_existing` returns that
version and the id of a new one. `check_unchanged` decides whether that
earlier version may stand. When the version was written under another
contract, it stages the files again and checks their rows that the version
stored against the current contract, naming each breaking row's file and
line. A strict ingest rejects a version that quarantined rows or had
warnings.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil

from appliance.config import ColumnRule, ContractConfig, DatasetConfig
from appliance.errors import IngestError, StorageError
from appliance.storage._catalog import Catalog
from appliance.storage._datasets import (
    DatasetVersion,
    Mode,
    find_by_sources,
    find_version,
)
from appliance.storage._quarantine import violation_place
from appliance.storage._retention import find_removed_in_latest
from appliance.storage._sources import SourceFile
from appliance.storage._staging import quarantine_rows, stage_checked

logger = logging.getLogger(__name__)

REPORT_KEY = "contract_sha256"
"""Key of the declared contract's fingerprint in a version's report."""
_SHOWN = 3


def contract_fingerprint(contract: ContractConfig | None) -> str | None:
    """Return a short hash of a declared contract, or None when none is declared.

    Only the rules set to other than their defaults count, so a rule added to
    `ColumnRule` later leaves the fingerprints, and the version ids, as they are.
    """
    if contract is None:
        return None
    default = dataclasses.asdict(ColumnRule())
    columns = {
        name: {k: v for k, v in dataclasses.asdict(rule).items() if v != default[k]}
        for name, rule in contract.columns.items()
    }
    rules = {"columns": columns, "unique_key": list(contract.unique_key)}
    text = json.dumps(rules, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def id_fingerprint(
    contract: ContractConfig | None,
    encrypted: tuple[str, ...] = (),
    max_line_bytes: int | None = None,
) -> str | None:
    """Return the part of a version id that the contract and settings set.

    The settings are the sensitive columns and a declared `max_line_bytes`,
    which decides whether a long CSV record is a row or quarantined.
    """
    fingerprint = contract_fingerprint(contract)
    if encrypted:
        fingerprint = f"{fingerprint}\nencrypted\n{','.join(sorted(encrypted))}"
    if max_line_bytes is not None:
        fingerprint = f"{fingerprint}\nmax_line_bytes\n{max_line_bytes}"
    return fingerprint


def version_id(
    hashes: list[str],
    mode: Mode,
    parent: DatasetVersion | None,
    contract: str | None,
    follows: DatasetVersion | None = None,
) -> str:
    """Return the id of a version of the files of `hashes`.

    Args:
        hashes: SHA-256 of each source file.
        mode: The ingest's mode. An ``append`` id includes the parent's id.
        parent: The latest version, which an append adds the rows to.
        contract: `id_fingerprint` of the declared contract and settings.
        follows: The latest version, when a ``replace`` stores the files of an
            older version again.
    """
    parts = list(hashes)
    if mode == "append" and parent is not None:
        parts = ["append", parent.version, *parts]
    if contract is not None:
        parts += ["contract", contract]
    if follows is not None:
        parts += ["follows", follows.version]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def find_existing(
    catalog: Catalog,
    dataset: str,
    hashes: list[str],
    mode: Mode,
    parent: DatasetVersion | None,
    contract: ContractConfig | None,
    paths: list[str] | None = None,
    encrypted: tuple[str, ...] = (),
    max_line_bytes: int | None = None,
) -> tuple[str, DatasetVersion | None]:
    """Return the id of a new version of the files and a version that stores them.

    Args:
        hashes: SHA-256 of each source file.
        mode: The ingest's mode.
        parent: The latest version, None for a new dataset.
        contract: The declared contract.
        paths: The ingest buffer's segment paths. When given, an earlier
            ``append`` of the same bytes counts only if it read them from the
            same paths, whether or not the latest version includes it.
        encrypted: The sensitive columns. They are part of the new id, so
            that the same files stored under another setting make a new version.
        max_line_bytes: The dataset's declared `max_line_bytes`, part of the
            new id for the same reason.

    Returns:
        The new version's id, and the existing version that may stand for the
        ingest (None when the files must be stored). In ``append`` mode that
        version may be an ancestor of the latest one.
    """
    fingerprint = id_fingerprint(contract, encrypted, max_line_bytes)
    new_id = version_id(hashes, mode, parent, fingerprint)
    existing = find_version(catalog, dataset, new_id)
    if existing is None and mode == "append":
        existing = find_by_sources(
            catalog,
            dataset,
            hashes,
            paths,
            # A segment found by its path is the same flush, cut short by a crash.
            None if paths is not None else lambda v: is_in_latest(catalog, v, parent),
        )
        if existing is None and paths is None:
            existing = find_removed_in_latest(catalog, dataset, hashes, parent)
    if existing is not None and mode == "replace" and parent is not None:
        if existing.version != parent.version:
            existing = replaced_again(parent, hashes, contract)
        if existing is None:
            # The files' version is older than the latest, so they are stored
            # again in a version that names the latest as the one it follows.
            new_id = version_id(hashes, mode, parent, fingerprint, parent)
            existing = find_version(catalog, dataset, new_id)
    return new_id, existing


def is_in_latest(
    catalog: Catalog, version: DatasetVersion, latest: DatasetVersion | None
) -> bool:
    """Return whether the rows of `version` are part of the latest version.

    They are when `version` is the latest version or one of the ancestors it
    appends to. An ``append`` of the files of a version that a later
    ``replace`` left out must make a new version, or the ingest would report
    the files as stored while the latest version lacks their rows.
    """
    if latest is None:
        return False
    if version.version == latest.version:
        return True
    own = f"{version.path}/"
    if any(glob.startswith(own) for glob in latest.files):
        return True
    # An append with no accepted row adds no file, so follow the parent links.
    current: DatasetVersion | None = latest
    while current is not None and current.mode == "append" and current.parent:
        if current.parent == version.version:
            return True
        current = find_version(catalog, current.dataset, current.parent)
    return False


def replaced_again(
    latest: DatasetVersion, hashes: list[str], contract: ContractConfig | None
) -> DatasetVersion | None:
    """Return `latest` when it is a ``replace`` of the same files and contract.

    A ``replace`` of the files of an older version finds that version by its
    id. The ingest may reuse a version only when the latest version is made
    of the same files, because otherwise the dataset would keep other rows.
    """
    same = (
        latest.mode == "replace"
        and sorted(s["sha256"] for s in latest.sources) == sorted(hashes)
        and latest.report.get(REPORT_KEY) == contract_fingerprint(contract)
    )
    return latest if same else None


def check_unchanged(
    catalog: Catalog,
    version: DatasetVersion,
    sources: list[SourceFile],
    settings: DatasetConfig,
    strict: bool,
) -> list[str]:
    """Check that `version`, which contains the ingested files already, may stand.

    Args:
        catalog: Open catalog, whose lake has room to stage the files.
        version: The version found for the files.
        sources: The ingested files, the same bytes as the version's sources.
        settings: The dataset's configuration with its declared contract.
        strict: The ingest is strict.

    Returns:
        A warning when the version's rows were checked again.

    Raises:
        IngestError: `strict` is set and the version quarantined rows or had
            warnings, or a row of the version breaks the current contract.
    """
    names = ", ".join(str(source.path) for source in sources)
    reference = f"{version.dataset}@{version.version}"
    if strict:
        _check_strict(version, names, reference)
    contract = settings.contract
    fingerprint = contract_fingerprint(contract)
    if contract is None or version.report.get(REPORT_KEY) == fingerprint:
        return []
    own = [glob for glob in version.files if glob.startswith(f"{version.path}/")]
    if not own:
        return []
    bad, total, examples = _stored_violations(catalog, version, sources, settings)
    logger.info(
        "unchanged version checked against the current contract dataset=%s "
        "version=%s rows=%d breaking=%d",
        version.dataset,
        version.version,
        total,
        bad,
    )
    if bad:
        raise IngestError(
            f"{names}: these files were ingested before as {reference} under "
            f"another contract, and {bad} of their {total} stored rows break the "
            f"current contract ({'; '.join(examples)}); nothing was written, "
            "because appending the files again would store their other rows "
            "twice. To check every row against the current contract, ingest all "
            "of the dataset's files again in replace mode"
        )
    checked = (
        f"these files were ingested before as {reference} under another contract; "
        f"its {total} rows from them were checked again and keep the current one"
    )
    return [checked]


def _check_strict(version: DatasetVersion, names: str, reference: str) -> None:
    quarantined = int(version.report.get("quarantined", 0))
    warnings = list(version.report.get("warnings", []))
    if not quarantined and not warnings:
        return
    rows = "1 row was" if quarantined == 1 else f"{quarantined} rows were"
    found = [f"{rows} quarantined"] if quarantined else []
    # A version without quarantined rows has only warnings, which
    # 'datasets show' lists.
    command = f"appliance datasets show {reference}"
    if quarantined:
        command = (
            f"appliance datasets quarantine {version.dataset} "
            f"--version {version.version}"
        )
    raise IngestError(
        f"strict ingest of {version.dataset!r} rejected: {names}: these files "
        f"were ingested before as {reference}, where {'; '.join(found + warnings)}; "
        f"see '{command}', fix the files and ingest them again"
    )


def _stored_violations(
    catalog: Catalog,
    version: DatasetVersion,
    sources: list[SourceFile],
    settings: DatasetConfig,
) -> tuple[int, int, list[str]]:
    """Return the stored rows of `sources` that break the current contract.

    The files are staged and checked as an ingest checks them, so each row
    is named by its file and line. The rows that `version` quarantined are
    not stored, so they are left out.

    Returns:
        The count of breaking rows, the count of stored rows from the files,
        and examples as ``FILE, line N, column 'C': REASON``.
    """
    contract = settings.contract or ContractConfig()
    work = catalog.lake / version.dataset / f"version={version.version}.recheck.tmp"
    shutil.rmtree(work, ignore_errors=True)
    db = catalog.db.cursor()
    try:
        work.mkdir(parents=True)
        staged = stage_checked(db, sources, settings, contract, work).staged
        found = quarantine_rows(db, sources, staged, settings.encoding).to_pylist()
    except OSError as exc:
        raise StorageError(
            f"cannot create the staging folder {work}: {exc}; check the free disk "
            "space and permissions of the lake folder"
        ) from exc
    finally:
        db.close()
        shutil.rmtree(work, ignore_errors=True)
    quarantined = _quarantined_lines(catalog, version, sources)
    breaking = [row for row in found if (row["source"], row["line"]) not in quarantined]
    records = sum(staged.records) + staged.malformed
    total = records - len(quarantined)
    lines = {(row["source"], row["line"]) for row in breaking}
    examples = [
        f"{violation_place(row['source'], row['line'], row['column_name'])}: "
        f"{row['reason']}"
        for row in breaking[:_SHOWN]
    ]
    return len(lines), total, examples


def _quarantined_lines(
    catalog: Catalog, version: DatasetVersion, sources: list[SourceFile]
) -> set[tuple[str, int]]:
    """Return the (file, line) of the rows `version` quarantined, at current paths.

    The quarantine names a file by the path it was read from, and the
    ingested files, of the same bytes, may be at other paths now.
    """
    recorded = {s["sha256"]: s["path"] for s in version.sources}
    current = {recorded.get(s.sha256): str(s.path.resolve()) for s in sources}
    rows = catalog.db.execute(
        "SELECT DISTINCT source, line FROM quarantine WHERE dataset = ? "
        "AND version = ?",
        [version.dataset, version.version],
    ).fetchall()
    return {(current.get(source, source), line) for source, line in rows}
