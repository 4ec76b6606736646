"""A lost partition folder of a version is reported where the version is read."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from support import WriteFile, load_config_text

from appliance.config import DatasetConfig
from appliance.errors import TrainingError
from appliance.features import store_of
from appliance.storage import Catalog, incomplete_files_message, ingest
from appliance.training._frame import load_frame

CSV = "id,region,amount\n1,north,1.5\n2,south,2\n3,south,4\n"


def partitioned(catalog: Catalog, write_file: WriteFile):
    settings = DatasetConfig(name="sales", partition_by="region")
    return ingest(catalog, "sales", [write_file("a.csv", CSV)], settings=settings)


def test_complete_version_passes(catalog: Catalog, write_file: WriteFile) -> None:
    version = partitioned(catalog, write_file).version

    assert incomplete_files_message(catalog.db, version) is None


def test_lost_partition_named(catalog: Catalog, write_file: WriteFile) -> None:
    version = partitioned(catalog, write_file).version
    shutil.rmtree(version.path / "region=south")

    message = incomplete_files_message(catalog.db, version)

    assert message is not None
    assert f"version {version.version} recorded 3 rows" in message
    assert f"1 files in {version.path} contain 1" in message
    assert "a partition folder or file is missing" in message
    assert "ingest its source files" in message


def test_lost_partition_view_unreadable(
    catalog: Catalog, write_file: WriteFile
) -> None:
    version = partitioned(catalog, write_file).version
    shutil.rmtree(version.path / "region=north")

    store = store_of([version])

    assert "sales" in store.unreadable
    assert "recorded 3 rows" in store.unreadable["sales"]


def test_lost_partition_rows_command_fails(tmp_path: Path, cli) -> None:
    home = tmp_path / "home"
    config = tmp_path / "config.toml"
    config.write_text(
        f'[storage]\nhome = "{home}"\n[datasets.sales]\npartition_by = "region"\n'
    )
    source = tmp_path / "a.csv"
    source.write_text(CSV)
    assert cli(config, home, "ingest", "sales", str(source)).returncode == 0
    (folder,) = (home / "lake" / "sales").iterdir()
    shutil.rmtree(folder / "region=south")

    done = cli(config, home, "datasets", "rows", "sales")

    assert done.returncode != 0
    assert "recorded 3 rows" in done.stderr
    assert "contain 1" in done.stderr
    assert "Traceback" not in done.stderr


def test_lost_partition_stops_training(tmp_path: Path) -> None:
    config = load_config_text(
        tmp_path,
        f'[storage]\nhome = "{tmp_path / "home"}"\n'
        '[datasets.sales]\npartition_by = "region"\n'
        '[models.m]\ndataset = "sales"\ntarget = "amount"\ntask = "regression"\n'
        'algorithm = "random_forest"\nfeatures = ["id"]\n',
    )
    source = tmp_path / "a.csv"
    source.write_text(CSV)
    with Catalog(config.storage.home) as catalog:
        version = ingest(catalog, "sales", [source], settings=config.dataset("sales"))
        shutil.rmtree(version.version.path / "region=south")

        with pytest.raises(TrainingError, match="recorded 3 rows") as raised:
            load_frame(catalog, config.model("m"))

    assert "cannot train model 'm'" in str(raised.value)
    assert "a partition folder or file is missing" in str(raised.value)
