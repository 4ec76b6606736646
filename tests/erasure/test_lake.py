"""Erasure from the lake and the buffer files, in-process on real DuckDB files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pytest
from support import load_config_text

from appliance.config import Config
from appliance.crypto import column_cipher
from appliance.erasure import _lake as lake
from appliance.erasure import erase, parse_subject
from appliance.errors import RequestError, StorageError
from appliance.storage import (
    Catalog,
    ingest,
    list_versions,
    remove_orphan_folders,
    scan_sql,
)

SUBJECT = "N7EX42Q"
TAILS = (SUBJECT, "N200AA", "N300BB")


def write_flights(path: Path, rows: int, start: int = 0) -> Path:
    lines = ["tailnum,distance,late"]
    for i in range(start, start + rows):
        lines.append(f"{TAILS[i % 3]},{100 + i},{str(i % 2 == 0).lower()}")
    path.write_text("\n".join(lines) + "\n")
    return path


def make_home(tmp_path: Path, extra: str = "") -> tuple[Config, Catalog]:
    config = load_config_text(tmp_path, f'[storage]\nhome = "home"\n{extra}')
    catalog = Catalog(config.storage.home)
    settings = config.dataset("flights")
    first = write_flights(tmp_path / "a.csv", 30)
    ingest(catalog, "flights", [first], "replace", settings)
    second = write_flights(tmp_path / "b.csv", 6, start=30)
    ingest(catalog, "flights", [second], "append", settings)
    return config, catalog


def rows(catalog: Catalog, where: str = "true") -> list[tuple]:
    latest = list_versions(catalog, "flights")[0]
    return catalog.db.execute(
        f"SELECT * FROM ({scan_sql(latest)}) WHERE {where} ORDER BY distance"
    ).fetchall()


def paths_with(home: Path, text: str) -> list[Path]:
    return [p for p in home.rglob("*") if text in str(p)]


def test_partitioned_folders_drop_subject(tmp_path: Path) -> None:
    config, catalog = make_home(
        tmp_path, '[datasets.flights]\npartition_by = "tailnum"\n'
    )
    with catalog:
        others = rows(catalog, f"tailnum <> '{SUBJECT}'")
        assert paths_with(config.storage.home / "lake", SUBJECT)
        receipt = erase(
            catalog, config, parse_subject("flights", [f"tailnum={SUBJECT}"])
        )
        assert receipt.removed["dataset_versions"] == {
            v.version: n
            for v, n in zip(reversed(list_versions(catalog, "flights")), (10, 2))
        }
        assert paths_with(config.storage.home / "lake", SUBJECT) == []
        assert rows(catalog, f"tailnum <> '{SUBJECT}'") == others
        assert rows(catalog, f"tailnum = '{SUBJECT}'") == []


def test_partitioned_version_emptied(tmp_path: Path) -> None:
    config, catalog = make_home(
        tmp_path, '[datasets.flights]\npartition_by = "tailnum"\n'
    )
    with catalog:
        for tail in TAILS:
            erase(catalog, config, parse_subject("flights", [f"tailnum={tail}"]))
        assert rows(catalog) == []
        assert [v.row_count for v in list_versions(catalog, "flights")] == [0, 0]


def test_failure_before_commit_keeps_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, catalog = make_home(tmp_path)
    with catalog:
        before = list_versions(catalog, "flights")
        all_rows = rows(catalog)

        def fail(*args: object) -> None:
            raise duckdb.IOException("disk full")

        monkeypatch.setattr(lake, "_record", fail)
        subject = parse_subject("flights", [f"tailnum={SUBJECT}"])
        with pytest.raises(StorageError, match="the versions keep their rows"):
            erase(catalog, config, subject)
        after = list_versions(catalog, "flights")
        assert [(v.path, v.files, v.row_count) for v in after] == [
            (v.path, v.files, v.row_count) for v in before
        ]
        assert rows(catalog) == all_rows
        folders = sorted(
            p.name for p in (config.storage.home / "lake/flights").iterdir()
        )
        assert folders == sorted(f"version={v.version}" for v in before)


def test_crash_after_commit_leaves_new_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, catalog = make_home(tmp_path)
    with catalog:
        old = [v.path for v in list_versions(catalog, "flights")]
        monkeypatch.setattr(lake, "_remove_old", lambda *args: None)
        erase(catalog, config, parse_subject("flights", [f"tailnum={SUBJECT}"]))
        assert all(path.exists() for path in old)
        assert rows(catalog, f"tailnum = '{SUBJECT}'") == []
        removed = remove_orphan_folders(catalog)
        assert sorted(removed) == sorted(old)
        assert len(rows(catalog)) == 24
        for version in list_versions(catalog, "flights"):
            assert version.path.exists()
            assert ".redacted-" in version.path.name


def test_composite_key_matches_all(tmp_path: Path) -> None:
    config, catalog = make_home(tmp_path)
    with catalog:
        subject = parse_subject("flights", [f"tailnum={SUBJECT}", "distance=103"])
        receipt = erase(catalog, config, subject)
        assert receipt.total == 1
        assert rows(catalog, "distance = 103") == []
        assert len(rows(catalog, f"tailnum = '{SUBJECT}'")) == 11


def test_value_of_wrong_type_rejected(tmp_path: Path) -> None:
    config, catalog = make_home(tmp_path)
    with catalog:
        subject = parse_subject("flights", ["distance=far"])
        with pytest.raises(RequestError, match="not a valid BIGINT") as raised:
            erase(catalog, config, subject, dry_run=True)
        assert "far" not in str(raised.value)


def test_subject_keys_limit_columns(tmp_path: Path) -> None:
    extra = '[datasets.flights]\nsubject_keys = ["tailnum"]\n'
    config, catalog = make_home(tmp_path, extra)
    with catalog:
        subject = parse_subject("flights", ["late=true"])
        with pytest.raises(RequestError, match="not a subject key"):
            erase(catalog, config, subject)
        assert len(rows(catalog)) == 36


def test_key_without_equals_rejected() -> None:
    with pytest.raises(RequestError, match="COLUMN=VALUE") as raised:
        parse_subject("flights", [SUBJECT])
    assert SUBJECT not in str(raised.value)


def test_buffer_files_keep_line_numbers(tmp_path: Path) -> None:
    config, catalog = make_home(tmp_path)
    folder = config.storage.home / "buffer" / "flights"
    (folder / "quarantined").mkdir(parents=True)
    lines = [json.dumps({"tailnum": t, "distance": i}) for i, t in enumerate(TAILS)]
    (folder / "wal.jsonl").write_text("\n".join(lines) + "\n")
    kept = folder / "quarantined" / "segment-1.jsonl"
    kept.write_text("\n".join(lines) + "\n")
    with catalog:
        receipt = erase(
            catalog, config, parse_subject("flights", [f"tailnum={SUBJECT}"])
        )
    assert receipt.removed["buffer"] == 2
    assert (folder / "wal.jsonl").read_text() == "\n".join(lines[1:]) + "\n"
    assert kept.read_text().splitlines() == ["", *lines[1:]]


def test_rejection_reason_hides_values(tmp_path: Path) -> None:
    config, catalog = make_home(tmp_path)
    folder = config.storage.home / "buffer" / "flights" / "rejected"
    folder.mkdir(parents=True)
    reasons = {
        "segment-1": f"Could not convert string '{SUBJECT}' to INT64",
        "segment-2": "Could not convert string 'N200AA' to INT64",
    }
    for name, message in reasons.items():
        (folder / f"{name}.jsonl").write_text('{"tailnum": "x"}\n')
        stored = {"segment": f"{name}.jsonl", "rows": 1, "message": message}
        (folder / f"{name}.reason.json").write_text(json.dumps(stored))

    with catalog:
        erase(catalog, config, parse_subject("flights", [f"tailnum={SUBJECT}"]))

    first = json.loads((folder / "segment-1.reason.json").read_text())
    second = json.loads((folder / "segment-2.reason.json").read_text())
    assert first == {
        "segment": "segment-1.jsonl",
        "rows": 1,
        "message": "Could not convert string '<erased>' to INT64",
    }
    assert second["message"] == reasons["segment-2"]


def test_error_message_hides_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, catalog = make_home(tmp_path)
    from appliance.erasure import _erase

    def fail(db: object, condition: str) -> tuple[int, int]:
        raise duckdb.BinderException(f"LINE 1: WHERE {condition}")

    monkeypatch.setattr(_erase, "delete_from_table", fail)
    with catalog:
        subject = parse_subject("flights", [f"tailnum={SUBJECT}"])
        with pytest.raises(StorageError, match="running the erasure again") as raised:
            erase(catalog, config, subject)
        assert SUBJECT not in str(raised.value)
        assert "<erased>" in str(raised.value)
        # The lake was erased before the failure and stays so.
        assert rows(catalog, f"tailnum = '{SUBJECT}'") == []


def test_sensitive_key_erased_as_plaintext_and_ciphertext(tmp_path: Path) -> None:
    plain = load_config_text(tmp_path, '[storage]\nhome = "home"\n')
    catalog = Catalog(plain.storage.home)
    first = write_flights(tmp_path / "a.csv", 30)
    ingest(catalog, "flights", [first], "replace", plain.dataset("flights"))
    config = load_config_text(
        tmp_path,
        '[storage]\nhome = "home"\n[datasets.flights]\nsensitive = ["tailnum"]\n',
    )
    cipher = column_cipher(config)
    second = write_flights(tmp_path / "b.csv", 6, start=30)
    settings = config.dataset("flights")
    ingest(catalog, "flights", [second], "replace", settings, cipher=cipher)
    lake_files = [p for p in (config.storage.home / "lake").rglob("*") if p.is_file()]
    token = cipher.encrypt_text(SUBJECT)

    with catalog:
        receipt = erase(
            catalog, config, parse_subject("flights", [f"tailnum={SUBJECT}"])
        )
        versions = list_versions(catalog, "flights")
        remaining = [
            catalog.db.execute(f"SELECT count(*) FROM ({scan_sql(v)})").fetchall()[0][0]
            for v in versions
        ]

    kept = [p for p in (config.storage.home / "lake").rglob("*") if p.is_file()]
    assert lake_files
    assert receipt.removed["dataset_versions"] == {
        versions[1].version: 10,
        versions[0].version: 2,
    }
    assert remaining == [4, 20]
    assert [p for p in kept if SUBJECT.encode() in p.read_bytes()] == []
    assert [p for p in kept if token.encode() in p.read_bytes()] == []


def test_empty_key_value_rejected() -> None:
    with pytest.raises(RequestError, match="column 'tailnum' has an empty value"):
        parse_subject("flights", ["tailnum="])


def test_erased_folder_not_rebuilt(tmp_path: Path) -> None:
    from appliance.errors import IngestError
    from appliance.storage import lost_files_message

    config, catalog = make_home(tmp_path)
    with catalog:
        erase(catalog, config, parse_subject("flights", [f"tailnum={SUBJECT}"]))
        first = list_versions(catalog, "flights")[-1]
        shutil.rmtree(first.path)

        with pytest.raises(IngestError) as raised:
            ingest(catalog, "flights", [tmp_path / "a.csv"])

        assert ".redacted-" in first.path.name
        assert "an erasure removed rows from its folder" in str(raised.value)
        assert "would bring the erased rows back" in str(raised.value)
        assert not first.path.exists()
        message = lost_files_message(first)
        assert message.endswith("; restore that folder from a backup")
