"""A version whose schema.json is damaged gets a clear error, not a traceback.

Loading, exporting and the model card reject it as changed after signing.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from support import run_appliance, start_daemon, stop_daemon

from appliance.config import Config
from appliance.training import train_model

ROW = {"distance": 700.0, "hour": 18, "carrier": "B6"}
DAMAGED = [
    pytest.param(b'{"task": "classification"', id="cut"),
    pytest.param(b"\xff\xfe{}", id="not-utf8"),
    pytest.param(b"[1, 2]", id="array"),
]


@pytest.mark.parametrize("content", DAMAGED)
def test_cli_names_damaged_schema(
    trips: Callable[[str], Config], tmp_path: Path, content: bytes
) -> None:
    config = trips()
    version = train_model(config, "late").model_version
    schema = version.path / "schema.json"
    schema.write_bytes(content)
    source = tmp_path / "rows.csv"
    source.write_text("distance,hour,carrier\n700,18,B6\n", encoding="utf-8")

    commands = {
        "card": ("models", "card", "late@1", str(tmp_path / "card.html")),
        "export": ("models", "export", "late@1", str(tmp_path / "exported")),
        "predict": ("predict", "late", str(source), str(tmp_path / "out.parquet")),
    }
    changed = "schema.json of model 'late' version 1 was changed after signing"
    for name, args in commands.items():
        result = run_appliance(config.path, config.storage.home, *args)

        assert result.returncode == 1, (name, result.stderr)
        assert "Traceback" not in result.stderr, name
        assert changed in result.stderr, (name, result.stderr)
        assert "restore it from a backup or retrain" in result.stderr, name


def test_daemon_rejects_damaged_schema(
    trips: Callable[[str], Config], tmp_path: Path
) -> None:
    config = trips()
    train_model(config, "late")
    second = train_model(config, "late").model_version
    schema = second.path / "schema.json"
    schema.write_text("{bad", encoding="utf-8")
    daemon = start_daemon(config.path, config.storage.home, tmp_path / "daemon.log")
    try:
        with httpx.Client(base_url=daemon.base_url, trust_env=False) as client:
            promoted = client.post(
                "/v1/admin/registry/models/late/promote", json={"version": 1}
            )
            pinned = client.post(
                "/v1/models/late/predict?version=2", json={"rows": [ROW]}
            )
            card = client.get(
                "/v1/admin/registry/models/late/card", params={"reference": "2"}
            )
            served = client.post("/v1/models/late/predict", json={"rows": [ROW]})
    finally:
        stop_daemon(daemon)

    assert promoted.status_code == 200, promoted.text
    assert served.status_code == 200
    assert served.json()["version"] == 1
    for response in (pinned, card):
        assert response.status_code == 409, response.text
    changed = "schema.json of model 'late' version 2 was changed after signing"
    for response in (pinned, card):
        assert response.json()["type"] == "SignatureError"
        assert changed in response.json()["error"]
