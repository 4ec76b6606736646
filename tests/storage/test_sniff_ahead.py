"""The CSV sniff that runs while the ingest hashes the files."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path

import pytest

from appliance.config import DatasetConfig
from appliance.errors import IngestError
from appliance.storage import Catalog, ingest
from appliance.storage import _ingest as ingest_module
from appliance.storage import _loading as loading
from appliance.storage._sources import open_source

WriteFile = Callable[[str, bytes | str], Path]


def test_sniff_ahead_until_hashes_done(catalog: Catalog, write_file: WriteFile) -> None:
    good = write_file("good.csv", "a;b\n1;x\n2;y\n")
    bad = write_file("bad.csv", "id,id\n1,2\n")
    settings = DatasetConfig(name="d")
    running: Future[None] = Future()
    done: Future[None] = Future()
    done.set_result(None)

    sniffed = ingest_module._sniff_ahead(catalog, [good, bad], settings, running)
    skipped = ingest_module._sniff_ahead(catalog, [good, bad], settings, done)

    assert sniffed[0] is not None
    assert sniffed[0].delimiter == ";"
    assert sniffed[0].columns == ["a", "b"]
    assert sniffed[1] is None
    assert skipped == [None, None]


def test_staging_uses_sniffed_dialect(
    catalog: Catalog, write_file: WriteFile, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_file("rows.csv", "a;b\n1;x\n2;y\n")
    running: Future[None] = Future()
    settings = DatasetConfig(name="d")
    (dialect,) = ingest_module._sniff_ahead(catalog, [path], settings, running)
    source = replace(open_source(path, "d"), dialect=dialect)

    def no_sniff(*args: object) -> None:
        raise AssertionError("staging sniffed a file sniffed ahead")

    monkeypatch.setattr(loading, "sniff_dialect", no_sniff)
    monkeypatch.setattr(ingest_module, "_open_sources", lambda *args: [source])
    result = ingest(catalog, "d", [path], settings=settings)

    assert result.accepted == 2
    assert list(result.version.schema) == ["a", "b"]


def test_failed_sniff_ahead_raised_by_staging(
    catalog: Catalog, write_file: WriteFile, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_file("dup.csv", "id,id\n1,2\n")
    # A future that never finishes makes the sniff ahead run on every file.
    running: Future[None] = Future()
    sniff_ahead = ingest_module._sniff_ahead
    monkeypatch.setattr(
        ingest_module,
        "_sniff_ahead",
        lambda catalog, paths, settings, hashing: sniff_ahead(
            catalog, paths, settings, running
        ),
    )

    with pytest.raises(IngestError, match=r"line 1: duplicate column name 'id'"):
        ingest(catalog, "d", [path])
