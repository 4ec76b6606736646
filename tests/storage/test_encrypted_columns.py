"""Sensitive columns stored encrypted: the lake, catalog, quarantine and buffer.

Each check greps the bytes of every file under the home for a known plaintext,
so a copy in any file (DuckDB's write-ahead log included) fails it.
"""

from __future__ import annotations

import base64
import json
import os
import re
import stat
from pathlib import Path

import pytest
from support import load_config_text, run_appliance

from appliance.config import Config
from appliance.crypto import KEY_FILE, column_cipher, load_key_file
from appliance.errors import ColumnKeyError, ConfigError, IngestError
from appliance.storage import (
    Catalog,
    IngestBuffer,
    ingest,
    keep_repeats,
    latest_version,
    list_quarantine,
    scan_sql,
)

CONFIG = """
[storage]
home = "home"

[datasets.flights]
sensitive = ["tailnum"]
{extra}
"""
SECRET = "N42SECRET"
"""A tail number whose bytes no stored file may contain."""


def write_config(folder: Path, extra: str = "") -> Config:
    return load_config_text(folder, CONFIG.format(extra=extra))


def write_flights(folder: Path, lines: list[str]) -> Path:
    path = folder / "flights.csv"
    path.write_text("tailnum,month,distance\n" + "\n".join(lines) + "\n")
    return path


def files_containing(root: Path, text: str) -> list[str]:
    """Return the files under `root` whose bytes contain `text`."""
    return [
        str(path)
        for path in root.rglob("*")
        if path.is_file() and text.encode() in path.read_bytes()
    ]


def ingest_flights(config: Config, path: Path, **options: object):
    with Catalog(config.storage.home) as catalog:
        return ingest(
            catalog,
            "flights",
            [path],
            settings=config.dataset("flights"),
            cipher=column_cipher(config),
            **options,
        )


def stored_rows(config: Config) -> list[tuple]:
    with Catalog(config.storage.home) as catalog:
        version = latest_version(catalog, "flights")
        return catalog.db.execute(scan_sql(version)).fetchall()


@pytest.mark.parametrize("partition", ["", 'partition_by = "month"'])
def test_lake_and_catalog_hold_ciphertext(tmp_path: Path, partition: str) -> None:
    config = write_config(tmp_path, partition)
    rows = [f"{SECRET},1,100", "N7,1,200", f"{SECRET},2,300"]
    result = ingest_flights(config, write_flights(tmp_path, rows))

    stored = stored_rows(config)
    cipher = column_cipher(config)
    tails = sorted(cipher.decrypt_text(row[0]) for row in stored)
    quality = json.dumps(result.version.report["quality"])
    assert files_containing(config.storage.home, SECRET) == []
    assert SECRET not in quality
    assert tails == [SECRET, SECRET, "N7"]
    assert len({row[0] for row in stored}) == 2
    assert result.version.schema["tailnum"] == "VARCHAR"
    assert result.version.report["encryption"] == {
        "columns": ["tailnum"],
        "key_id": cipher.key_id,
    }


def test_invalid_date_warning_hides_value(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    rows = ["2024-01-31,1,100", "2024-02-30,1,200"]

    result = ingest_flights(config, write_flights(tmp_path, rows))

    assert result.warnings == [
        "column 'tailnum' looks like ISO 8601 dates (YYYY-MM-DD), but some are no "
        "valid date, such as a 30 February, so it stays text; fix those values, "
        "or declare the column as DATE in [datasets.flights.contract] so that "
        "they are quarantined with their line"
    ]


def test_plaintext_found_without_sensitive(tmp_path: Path) -> None:
    # The control of the checks above: the same rows stored without the
    # setting leave the plaintext in the lake's and the catalog's bytes.
    config = load_config_text(tmp_path, '[storage]\nhome = "home"\n')
    path = write_flights(tmp_path, [f"{SECRET},1,100", "N7,1,200"])
    with Catalog(config.storage.home) as catalog:
        ingest(catalog, "flights", [path])

    found = files_containing(config.storage.home, SECRET)

    assert any(name.endswith(".parquet") for name in found), found
    assert any(name.endswith("catalog.duckdb") for name in found), found


def test_key_file_made_with_mode_0600(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    column_cipher(config)

    path = config.storage.home / KEY_FILE
    key = base64.b64decode(path.read_text())
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert len(key) == 64


def test_lost_home_key_not_replaced(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    made = column_cipher(config)
    path = config.storage.home / KEY_FILE
    path.unlink()

    with pytest.raises(ColumnKeyError, match=f"key id {made.key_id}") as raised:
        column_cipher(config)

    assert "restore it from a backup" in str(raised.value)
    assert not path.exists()


def test_configured_key_file_used(tmp_path: Path) -> None:
    key = tmp_path / "column.key"
    key.write_text(base64.b64encode(bytes(range(64))).decode())
    config = write_config(tmp_path, '[security]\ncolumn_key = "column.key"')

    cipher = column_cipher(config)

    assert cipher.source == key
    assert not (config.storage.home / KEY_FILE).exists()


def test_quarantine_holds_ciphertext(tmp_path: Path) -> None:
    contract = (
        "[datasets.flights.contract.columns.tailnum]\n"
        'type = "VARCHAR"\nregex = "^N[0-9]$"'
    )
    config = write_config(tmp_path, contract)
    rows = [f"{SECRET},1,100", "N7,1,200"]
    result = ingest_flights(config, write_flights(tmp_path, rows))

    with Catalog(config.storage.home) as catalog:
        (quarantined,) = list_quarantine(catalog, "flights")
    cipher = column_cipher(config)
    shown = run_appliance(
        tmp_path / "config.toml",
        config.storage.home,
        "datasets",
        "quarantine",
        "flights",
        "--decrypt",
        "--json",
    )
    assert result.quarantined == 1
    assert files_containing(config.storage.home, SECRET) == []
    assert cipher.decrypt_text(quarantined.value) == SECRET
    assert cipher.decrypt_text(quarantined.row["tailnum"]) == SECRET
    assert SECRET not in quarantined.reason
    assert "[encrypted]" in quarantined.reason
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["value"] == SECRET
    assert json.loads(shown.stdout)["row"]["tailnum"] == SECRET


def test_unsplit_line_quarantined_encrypted(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    lines = [f"N{i},1,{i}" for i in range(30)] + [f"{SECRET},1,100,extra"]
    result = ingest_flights(config, write_flights(tmp_path, lines))

    with Catalog(config.storage.home) as catalog:
        (quarantined,) = list_quarantine(catalog, "flights")
    cipher = column_cipher(config)
    assert result.quarantined == 1
    assert files_containing(config.storage.home, SECRET) == []
    assert SECRET in cipher.decrypt_text(quarantined.value)


def test_buffer_holds_ciphertext(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    buffer = IngestBuffer(config)

    buffer.append("flights", [{"tailnum": SECRET, "month": 1, "distance": 100}])
    buffered = files_containing(config.storage.home, SECRET)
    buffer.flush("flights")

    cipher = column_cipher(config)
    stored = stored_rows(config)
    assert buffered == []
    assert files_containing(config.storage.home, SECRET) == []
    assert [(cipher.decrypt_text(t), m, d) for t, m, d in stored] == [(SECRET, 1, 100)]


def test_buffer_repeated_key_quarantined(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    buffer = IngestBuffer(config)
    row = keep_repeats(
        [("tailnum", SECRET), ("tailnum", "N2"), ("month", 1), ("distance", 9)]
    )

    buffer.append("flights", [{"tailnum": "N1", "month": 1, "distance": 5}, row])
    buffer.flush("flights")

    with Catalog(config.storage.home) as catalog:
        (quarantined,) = list_quarantine(catalog, "flights")
    assert files_containing(config.storage.home, SECRET) == []
    assert quarantined.line == 2
    assert quarantined.column == "tailnum"
    assert len(stored_rows(config)) == 1


def test_buffer_quarantine_holds_ciphertext(tmp_path: Path) -> None:
    contract = "[datasets.flights.contract.columns.tailnum]\nregex = '^N[0-9]$'"
    config = write_config(tmp_path, contract)
    buffer = IngestBuffer(config)

    buffer.append(
        "flights",
        [
            {"tailnum": "N1", "month": 1, "distance": 100},
            {"tailnum": SECRET, "month": 1, "distance": 200},
        ],
    )
    buffer.flush("flights")

    with Catalog(config.storage.home) as catalog:
        (quarantined,) = list_quarantine(catalog, "flights")
    cipher = column_cipher(config)
    assert files_containing(config.storage.home, SECRET) == []
    assert cipher.decrypt_text(quarantined.value) == SECRET
    assert quarantined.line == 2


def test_wrong_key_names_ingested_dataset(tmp_path: Path) -> None:
    config = write_config(tmp_path, '[datasets.planes]\nsensitive = ["tailnum"]')
    flights = ingest_flights(config, write_flights(tmp_path, [f"{SECRET},1,100"]))
    key_file = config.storage.home / KEY_FILE
    # A key written by hand; a key the appliance generates is deleted again.
    key_file.write_text(base64.b64encode(os.urandom(64)).decode())
    key_file.with_name(key_file.name + ".id").unlink()
    planes = tmp_path / "planes.csv"
    planes.write_text("tailnum,seats\nN1,150\n")

    other = column_cipher(config)
    with (
        Catalog(config.storage.home) as catalog,
        pytest.raises(ColumnKeyError) as raised,
    ):
        ingest(
            catalog, "planes", [planes], settings=config.dataset("planes"), cipher=other
        )
    message = str(raised.value)
    assert message.startswith("cannot ingest dataset 'planes': column key ")
    assert f"such as flights@{flights.version.version}" in message
    assert "one column key encrypts every dataset of a home" in message


def test_wrong_key_file_rejected(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    path = write_flights(tmp_path, [f"{SECRET},1,100"])
    ingest_flights(config, path)
    stored = stored_rows(config)
    key_file = config.storage.home / KEY_FILE
    key_file.write_text(base64.b64encode(os.urandom(64)).decode())
    # Without the id of the lost key, as when a home's key folder is replaced.
    key_file.with_name(key_file.name + ".id").unlink()

    other = column_cipher(config)
    with (
        Catalog(config.storage.home) as catalog,
        pytest.raises(
            ColumnKeyError,
            match=r"cannot ingest dataset 'flights': .* is not the key that "
            r"encrypted flights@",
        ),
    ):
        ingest(
            catalog,
            "flights",
            [write_flights(tmp_path, ["N1,1,100"])],
            settings=config.dataset("flights"),
            cipher=other,
        )
    with pytest.raises(ColumnKeyError, match="does not decrypt with the column key"):
        other.decrypt_text(stored[0][0])


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"not base64 !", "does not contain a column key (its text is not base64)"),
        (
            b"\x00\xcf\x01binary",
            "does not contain a column key (byte 0xcf at offset 1 is not text)",
        ),
        (base64.b64encode(b"short"), "has 5 bytes"),
    ],
)
def test_invalid_key_file_rejected(
    tmp_path: Path, content: bytes, problem: str
) -> None:
    path = tmp_path / "column.key"
    path.write_bytes(content)

    with pytest.raises(ColumnKeyError, match=re.escape(problem)) as raised:
        load_key_file(path)
    assert "permission" not in str(raised.value)


def test_binary_key_file_names_format(tmp_path: Path) -> None:
    path = tmp_path / "column.key"
    path.write_bytes(bytes(range(200, 256)))

    with pytest.raises(ColumnKeyError) as raised:
        load_key_file(path)
    message = str(raised.value)
    assert "base64 text that encodes a 32, 48 or 64 byte AES-SIV key" in message
    assert "Restore the file from a backup" in message
    assert f"base64 -w0 > {path}" in message


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files without permission")
def test_unreadable_key_file_names_permission(tmp_path: Path) -> None:
    path = tmp_path / "column.key"
    path.write_bytes(base64.b64encode(bytes(64)))
    path.chmod(0)

    with pytest.raises(ColumnKeyError, match="Permission denied") as raised:
        load_key_file(path)
    assert "read permission" in str(raised.value)


def test_key_path_folder_rejected(tmp_path: Path) -> None:
    with pytest.raises(ColumnKeyError, match="Is a directory") as raised:
        load_key_file(tmp_path)
    assert "check that it is a file" in str(raised.value)


def test_missing_configured_key_rejected(tmp_path: Path) -> None:
    config = write_config(tmp_path, '[security]\ncolumn_key = "gone.key"')

    with pytest.raises(ColumnKeyError, match="gone.key not found"):
        column_cipher(config)


def test_sensitive_setting_applies_to_new_versions(tmp_path: Path) -> None:
    plain = load_config_text(tmp_path, '[storage]\nhome = "home"\n')
    path = write_flights(tmp_path, [f"{SECRET},1,100"])
    with Catalog(plain.storage.home) as catalog:
        first = ingest(catalog, "flights", [path])
    config = write_config(tmp_path)
    shown = run_appliance(
        tmp_path / "config.toml", config.storage.home, "datasets", "show", "flights"
    )

    with pytest.raises(IngestError, match="an append would mix plaintext"):
        ingest_flights(config, write_flights(tmp_path, ["N1,1,1"]), mode="append")
    second = ingest_flights(config, path)
    encrypted = run_appliance(
        tmp_path / "config.toml", config.storage.home, "datasets", "show", "flights"
    )

    assert encrypted.returncode == 0, encrypted.stderr
    tailnum = next(
        line for line in encrypted.stdout.splitlines() if line.startswith("tailnum ")
    )
    assert tailnum.count("(encrypted)") == 2
    assert shown.returncode == 0, shown.stderr
    assert "PLAINTEXT: tailnum declared sensitive after this version" in shown.stdout
    assert second.created
    assert second.version.version != first.version.version
    assert stored_rows(config)[0][0] != SECRET


@pytest.mark.parametrize(
    ("model", "role"),
    [
        ('features = ["tailnum", "distance"]', "a feature"),
        ('segments = ["tailnum"]', "a segment"),
        ('target = "tailnum"', "the target"),
    ],
)
def test_sensitive_model_column_rejected(tmp_path: Path, model: str, role: str) -> None:
    table = "[models.late]\ndataset = 'flights'\ntask = 'classification'\n" + model
    if "target" not in model:
        table += "\ntarget = 'late'"
    if "segments" in model:
        table += "\ncategorical = ['tailnum']"

    with pytest.raises(
        ConfigError, match=f"model 'late' .* uses column 'tailnum' as {role}"
    ):
        write_config(tmp_path, table)


def test_plaintext_join_key_rejected(tmp_path: Path) -> None:
    text = """
[storage]
home = "home"

[datasets.planes]
sensitive = ["tailnum"]

[feature_views.planes]
sql = "SELECT tailnum, seats FROM planes"
entities = ["tailnum"]

[models.late]
dataset = "flights"
target = "late"
task = "classification"
features = ["distance", "seats"]
feature_views = ["planes"]
"""
    with pytest.raises(
        ConfigError, match=r"add sensitive = \['tailnum'\] to \[datasets.flights\]"
    ):
        load_config_text(tmp_path, text)


def test_sensitive_partition_column_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="also partition_by"):
        write_config(tmp_path, 'partition_by = "tailnum"')


def test_default_features_leave_out_encrypted(tmp_path: Path) -> None:
    from appliance.training import train_model

    model = (
        "[models.far]\ndataset = 'flights'\ntarget = 'far'\n"
        "task = 'classification'\nalgorithm = 'random_forest'\n"
        "[models.far.derive]\nfar = 'distance > 500'\n"
        "[models.far.params]\nn_estimators = 5"
    )
    config = write_config(tmp_path, model)
    lines = [f"N{i % 5}SECRET,{1 + i % 12},{100 + (i * 37) % 900}" for i in range(200)]
    ingest_flights(config, write_flights(tmp_path, lines))

    result = train_model(config, "far")

    assert list(result.x_holdout.columns) == ["month", "distance"]


def test_lost_folder_rebuilt_encrypted(tmp_path: Path) -> None:
    import shutil

    config = write_config(tmp_path)
    path = write_flights(tmp_path, [f"{SECRET},1,100", "N7,1,200"])
    first = ingest_flights(config, path)
    cipher = column_cipher(config)
    before = sorted((cipher.decrypt_text(t), m, d) for t, m, d in stored_rows(config))
    shutil.rmtree(first.version.path)

    again = ingest_flights(config, path)

    after = sorted((cipher.decrypt_text(t), m, d) for t, m, d in stored_rows(config))
    assert again.rebuilt == {first.version.version: 1}
    assert after == before
    assert files_containing(config.storage.home, SECRET) == []
