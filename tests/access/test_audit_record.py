"""Audit entries written on a catalog whose earlier write was interrupted."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.access import Actor, list_entries, record
from appliance.access import _audit as audit_module
from appliance.storage import Catalog

ACTOR = Actor("ops", "operator")


def test_interrupted_entry_leaves_no_transaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An interrupt between BEGIN and COMMIT rolls back, so the next entry
    on the same connection is recorded."""

    def interrupt(*args: object) -> str:
        raise KeyboardInterrupt

    with Catalog(tmp_path / "home") as catalog:
        monkeypatch.setattr(audit_module, "entry_hash", interrupt)
        with pytest.raises(KeyboardInterrupt):
            record(catalog, "model.promote", "trips", actor=ACTOR)
        monkeypatch.undo()

        entry = record(catalog, "model.promote", "trips", actor=ACTOR)

        assert entry is not None
        assert entry.seq == 1
        assert [e.seq for e in list_entries(catalog)] == [1]
