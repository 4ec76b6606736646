"""Aliases: promotion history with who, when and why, rollback, resolution."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.errors import IntegrityError, NotFoundError, RegistryError
from appliance.registry import history, promote, rollback
from appliance.storage import (
    CHAMPION,
    Catalog,
    alias_history,
    aliases,
    champion_models,
    register_version,
    resolve_version,
)


def _register(home: Path, count: int) -> None:
    with Catalog(home) as catalog:
        for index in range(count):
            register_version(
                catalog,
                "m",
                f"run{index}",
                "regression",
                f"not really onnx {index}".encode(),
                {"task": "regression", "inputs": []},
                0.0,
            )


def _promote(home: Path, version: int, alias: str, actor: str, reason: str) -> None:
    with Catalog(home) as catalog:
        promote(catalog, "m", version, alias, actor, reason)


def _rollback(home: Path, actor: str, reason: str) -> dict[str, int | None]:
    with Catalog(home) as catalog:
        event, _ = rollback(catalog, "m", CHAMPION, actor, reason)
    return {"version": event.version, "previous_version": event.previous_version}


def _champion(home: Path) -> int:
    with Catalog(home, read_only=True) as catalog:
        return resolve_version(catalog, "m", CHAMPION).version


def test_champion_defaults_to_latest(tmp_path: Path) -> None:
    _register(tmp_path, 3)

    assert _champion(tmp_path) == 3
    with Catalog(tmp_path, read_only=True) as catalog:
        assert [v.version for v in champion_models(catalog)] == [3]
        assert aliases(catalog) == {}


def test_promote_records_history(tmp_path: Path) -> None:
    _register(tmp_path, 3)

    _promote(tmp_path, 1, CHAMPION, "alice", "best holdout AUC")
    _promote(tmp_path, 2, "challenger", "bob", "try the new features")
    _promote(tmp_path, 3, CHAMPION, "carol", "passed the shadow test")

    assert _champion(tmp_path) == 3
    with Catalog(tmp_path, read_only=True) as catalog:
        history = alias_history(catalog, "m")
        assert resolve_version(catalog, "m", "challenger").version == 2
        assert resolve_version(catalog, "m", "1").version == 1
    assert [(e.alias, e.version, e.previous_version) for e in history] == [
        # Version 3, the latest, was served before the first promotion.
        (CHAMPION, 1, 3),
        ("challenger", 2, None),
        (CHAMPION, 3, 1),
    ]
    assert [e.actor for e in history] == ["alice", "bob", "carol"]
    assert history[0].reason == "best holdout AUC"
    assert history[0].changed_at <= history[1].changed_at <= history[2].changed_at
    assert [e.action for e in history] == ["set", "set", "set"]


def test_history_marks_replaced_promotion_not_judged(tmp_path: Path) -> None:
    _register(tmp_path, 3)
    _promote(tmp_path, 1, CHAMPION, "alice", "release 1")
    _promote(tmp_path, 2, CHAMPION, "alice", "release 2")

    with Catalog(tmp_path, read_only=True) as catalog:
        records = history(catalog, "m", CHAMPION)

    assert [r["version"] for r in records] == [1, 2]
    assert records[0]["watch"]["outcome"] == "not_judged"
    assert "changed again" in records[0]["watch"]["reason"]
    assert records[1]["watch"]["outcome"] == "pending"


def test_rollback_walks_history_back(tmp_path: Path) -> None:
    _register(tmp_path, 3)
    for version in (1, 2, 3):
        _promote(tmp_path, version, CHAMPION, "alice", f"release {version}")

    first = _rollback(tmp_path, "bob", "version 3 drifts")
    assert (first["version"], first["previous_version"]) == (2, 3)
    assert _champion(tmp_path) == 2

    _rollback(tmp_path, "bob", "version 2 too")
    assert _champion(tmp_path) == 1

    # Before the first promotion the latest version, 3, was served.
    _rollback(tmp_path, "bob", "back to the latest")
    assert _champion(tmp_path) == 3

    with pytest.raises(RegistryError, match="no earlier champion") as raised:
        _rollback(tmp_path, "bob", "nothing left")
    assert _champion(tmp_path) == 3
    assert "version 3 is the first champion that the earlier promotions" in str(
        raised.value
    )

    with Catalog(tmp_path, read_only=True) as catalog:
        history = alias_history(catalog, "m", CHAMPION)
    assert [e.action for e in history] == ["set"] * 3 + ["rollback"] * 3
    assert history[-1].actor == "bob"
    assert history[-1].reason == "back to the latest"


def test_rollback_to_same_version_rejected(tmp_path: Path) -> None:
    _register(tmp_path, 2)
    # Version 2, the latest, was served before this first promotion.
    _promote(tmp_path, 2, CHAMPION, "alice", "pin the latest")

    with pytest.raises(RegistryError, match="no earlier champion") as raised:
        _rollback(tmp_path, "bob", "")

    assert "a rollback would change nothing" in str(raised.value)
    assert "'appliance models promote m VERSION' to choose" in str(raised.value)
    with Catalog(tmp_path, read_only=True) as catalog:
        history = alias_history(catalog, "m")
    assert [e.action for e in history] == ["set"]
    assert _champion(tmp_path) == 2


def test_rollback_hint_names_alias(tmp_path: Path) -> None:
    _register(tmp_path, 2)
    _promote(tmp_path, 1, "staging", "alice", "")

    with Catalog(tmp_path) as catalog:
        with pytest.raises(RegistryError, match="no earlier staging") as raised:
            rollback(catalog, "m", "staging", "bob", "")

    expected = "'appliance models promote m VERSION --alias staging' to choose"
    assert expected in str(raised.value)


def test_long_alias_rejected(tmp_path: Path) -> None:
    _register(tmp_path, 1)
    _promote(tmp_path, 1, "a" * 64, "alice", "")

    with pytest.raises(RegistryError, match="use at most 64 characters") as raised:
        _promote(tmp_path, 1, "b" * 5000, "alice", "")

    assert "(5000 characters)" in str(raised.value)
    assert len(str(raised.value)) < 200
    with Catalog(tmp_path, read_only=True) as catalog:
        assert list(aliases(catalog, "m")["m"]) == ["a" * 64]


def test_rollback_without_history_rejected(tmp_path: Path) -> None:
    _register(tmp_path, 2)

    with pytest.raises(RegistryError, match="no earlier champion"):
        _rollback(tmp_path, "bob", "")


def test_promote_unknown_version_rejected(tmp_path: Path) -> None:
    _register(tmp_path, 2)

    with pytest.raises(NotFoundError, match="has no version 7; versions: 2, 1"):
        _promote(tmp_path, 7, CHAMPION, "alice", "")


@pytest.mark.parametrize("alias", ["", "12", "has space", "a/b"])
def test_invalid_alias_rejected(tmp_path: Path, alias: str) -> None:
    _register(tmp_path, 1)

    with pytest.raises(RegistryError, match="invalid alias"):
        _promote(tmp_path, 1, alias, "alice", "")


def test_promote_corrupted_artifact_rejected(tmp_path: Path) -> None:
    _register(tmp_path, 2)
    _promote(tmp_path, 1, CHAMPION, "alice", "")
    artifact = tmp_path / "models" / "m" / "2" / "model.onnx"
    data = bytearray(artifact.read_bytes())
    data[3] ^= 0x01
    artifact.write_bytes(bytes(data))

    with pytest.raises(IntegrityError, match=r"version 2 has sha256 .* expected"):
        _promote(tmp_path, 2, CHAMPION, "alice", "")

    assert _champion(tmp_path) == 1
    with Catalog(tmp_path, read_only=True) as catalog:
        assert len(alias_history(catalog, "m")) == 1
