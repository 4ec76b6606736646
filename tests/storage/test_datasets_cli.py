"""The dataset commands run as an operator would: ``python -m appliance ...``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

CONFIG = """
[storage]
home = "home"

[datasets.sales]
partition_by = "region"

[datasets.sales.contract]
unique_key = ["id"]

[datasets.sales.contract.columns.amount]
type = "DOUBLE"
min = 0

[datasets.sales.contract.columns.region]
"""


def appliance(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "appliance",
            "--config",
            str(tmp_path / "c.toml"),
            *args,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_datasets_commands_end_to_end(tmp_path: Path) -> None:
    (tmp_path / "c.toml").write_text(CONFIG)
    first = tmp_path / "a.csv"
    first.write_text("id,region,amount\n1,north,5.0\n2,south,-1\n3,north,2.5\n")
    second = tmp_path / "b.csv"
    second.write_text("id,region,amount\n4,south,1.0\n1,north,3.0\n")

    ingested = appliance(tmp_path, "ingest", "sales", str(first))
    appended = appliance(tmp_path, "ingest", "sales", str(second), "--mode", "append")
    listed = appliance(tmp_path, "datasets", "list", "--json")
    quarantined = appliance(tmp_path, "datasets", "quarantine", "sales", "--json")

    assert ingested.returncode == 0, ingested.stderr
    assert "accepted=2 quarantined=1 (created)" in ingested.stdout
    assert appended.returncode == 0, appended.stderr
    assert "rows=3 mode=append accepted=1 quarantined=1" in appended.stdout
    versions = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [v["rows"] for v in versions] == [3, 2]
    assert versions[0]["parent"] == versions[1]["version"]
    rows = [json.loads(line) for line in quarantined.stdout.splitlines()]
    assert [(r["line"], r["column"], r["reason"]) for r in rows] == [
        (3, "amount", 'value "-1" is below the minimum 0'),
        (3, "id", "duplicate unique key (id=1)"),
    ]
    assert rows[0]["source"] == str(first.resolve())
    assert rows[1]["source"] == str(second.resolve())

    newest, oldest = versions[0]["version"], versions[1]["version"]
    shown = appliance(tmp_path, "datasets", "show", f"sales@{newest}")
    diff = appliance(tmp_path, "datasets", "diff", f"sales@{oldest}", f"sales@{newest}")

    assert shown.returncode == 0, shown.stderr
    assert f"parent      {oldest}" in shown.stdout
    assert "partitioned region" in shown.stdout
    assert "quality: duplicate rows 0" in shown.stdout
    assert "  distinct: approximate, HyperLogLog" in shown.stdout
    assert diff.returncode == 0, diff.stderr
    assert "rows 2 -> 3" in diff.stdout
    assert "max 3 -> 4" in diff.stdout
    assert (
        tmp_path / "home" / "lake" / "sales" / f"version={newest}" / "region=south"
    ).is_dir()


def test_show_and_diff_null_tokens(tmp_path: Path) -> None:
    (tmp_path / "c.toml").write_text('[storage]\nhome = "home"\n')
    first = tmp_path / "a.csv"
    first.write_text("id,name,amount\n1,a,5.0\n2,NA,1.0\n3,,2.5\n4,b,NA\n")
    second = tmp_path / "b.csv"
    second.write_text("id,name,amount\n1,a,5.0\n2,,1.0\n")
    assert appliance(tmp_path, "ingest", "t", str(first)).returncode == 0
    assert appliance(tmp_path, "ingest", "t", str(second)).returncode == 0
    listed = appliance(tmp_path, "datasets", "list", "--json")
    newest, oldest = [
        json.loads(line)["version"] for line in listed.stdout.splitlines()
    ]

    shown = appliance(tmp_path, "datasets", "show", f"t@{oldest}")
    shown_json = appliance(tmp_path, "datasets", "show", f"t@{oldest}", "--json")
    diff = appliance(tmp_path, "datasets", "diff", f"t@{oldest}", f"t@{newest}")

    assert shown.returncode == 0, shown.stderr
    assert '  name: "" 1, NA 1, null 0, NULL 0\n' in shown.stdout
    assert '  amount: "" 0, NA 1, null 0, NULL 0\n' in shown.stdout
    assert "  null_sources: exact counts of each CSV null token" in shown.stdout
    columns = json.loads(shown_json.stdout)["report"]["quality"]["columns"]
    assert columns["name"]["null_sources"] == {"": 1, "NA": 1, "null": 0, "NULL": 0}
    assert "null_sources" not in columns["id"]
    assert diff.returncode == 0, diff.stderr
    assert (
        'null_sources {"" 1, NA 1, null 0, NULL 0} -> {"" 1, NA 0, null 0, NULL 0}'
        in diff.stdout
    )
    assert 'null_sources {"" 0, NA 1, null 0, NULL 0} -> (none)' in diff.stdout


def test_strict_ingest_exits_with_error(tmp_path: Path) -> None:
    (tmp_path / "c.toml").write_text(CONFIG)
    path = tmp_path / "a.csv"
    path.write_text("id,region,amount\n1,north,-5\n")

    result = appliance(tmp_path, "ingest", "sales", str(path), "--strict")

    assert result.returncode == 1
    assert "1 of 1 rows break the contract" in result.stderr
    assert "line 2, column 'amount'" in result.stderr


def test_append_of_new_column_all_quarantined(tmp_path: Path) -> None:
    (tmp_path / "c.toml").write_text(CONFIG)
    first = tmp_path / "w1.jsonl"
    first.write_text('{"id":1,"v":1.5}\n')
    later = tmp_path / "w7.csv"
    later.write_text("id,newc,v\n2,5,abc\n")

    created = appliance(tmp_path, "ingest", "wid7", str(first))
    appended = appliance(tmp_path, "ingest", "wid7", str(later), "--mode", "append")
    rows = appliance(tmp_path, "datasets", "rows", "wid7")

    assert created.returncode == 0, created.stderr
    assert appended.returncode == 0, appended.stderr
    assert "Traceback" not in appended.stderr
    assert "accepted=0 quarantined=1" in appended.stdout
    assert "new column 'newc' of type BIGINT" in appended.stdout
    assert rows.returncode == 0, rows.stderr
    assert rows.stdout.split("\n")[0].split() == ["id", "v"]


class _RecordingClient:
    """Stand-in for a running daemon that records each POST and its timeout."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, float | None]] = []

    def post(self, path: str, body: Any, timeout: float | None = None) -> Any:
        self.posts.append((path, timeout))
        version = {"dataset": body["dataset"], "version": "abc", "row_count": 1}
        return {"version": version, "created": False}


def test_ingest_through_daemon_waits_long(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from appliance import client as client_module
    from appliance.cli import main

    (tmp_path / "c.toml").write_text(CONFIG)
    data = tmp_path / "sales.csv"
    data.write_text("id,region,amount\n1,north,2.5\n")
    recording = _RecordingClient()
    monkeypatch.setattr(
        client_module, "find_daemon", lambda home, config=None, key=None: recording
    )

    status = main(["--config", str(tmp_path / "c.toml"), "ingest", "sales", str(data)])

    assert status == 0
    assert recording.posts == [("/v1/admin/ingest", client_module.LONG_TIMEOUT_SECONDS)]


def test_listing_into_closed_pipe_quiet(tmp_path: Path) -> None:
    (tmp_path / "c.toml").write_text(CONFIG)
    path = tmp_path / "a.csv"
    rows = "".join(f"{i},north,-1\n" for i in range(200))
    path.write_text("id,region,amount\n" + rows)
    assert appliance(tmp_path, "ingest", "sales", str(path)).returncode == 0
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
    command = [sys.executable, "-m", "appliance", "--config", str(tmp_path / "c.toml")]
    process = subprocess.Popen(
        [*command, "datasets", "quarantine", "sales", "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    # Closing the read end at once makes the command's first write fail.
    assert process.stdout is not None
    process.stdout.close()
    _, stderr = process.communicate(timeout=120)

    assert process.returncode == 141
    assert b"Traceback" not in stderr
    assert b"BrokenPipeError" not in stderr


WEATHER_CONFIG = """
[storage]
home = "home"

[feature_views.weather]
sql = "SELECT origin, CAST(time_hour AS TIMESTAMPTZ) AS time_hour FROM weather"
entities = ["origin"]
timestamp = "time_hour"
"""


def test_cli_force_replaces(tmp_path: Path) -> None:
    (tmp_path / "c.toml").write_text(WEATHER_CONFIG)
    (tmp_path / "a.csv").write_text(
        "origin,time_hour,temp\nEWR,2013-01-01 05:00:00,39.0\n"
    )
    (tmp_path / "b.csv").write_text("time_hour,temp\n2013-01-01 06:00:00,40.0\n")

    first = appliance(tmp_path, "ingest", "weather", str(tmp_path / "a.csv"))
    rejected = appliance(tmp_path, "ingest", "weather", str(tmp_path / "b.csv"))
    forced = appliance(
        tmp_path, "ingest", "weather", str(tmp_path / "b.csv"), "--force"
    )

    assert first.returncode == 0, first.stderr
    assert rejected.returncode == 1
    assert "drops column 'origin', which feature view 'weather'" in rejected.stderr
    assert forced.returncode == 0, forced.stderr
    assert "warning: column 'origin' is missing" in forced.stdout


def test_listing_at_its_limit_says_so(tmp_path: Path) -> None:
    (tmp_path / "c.toml").write_text(CONFIG)
    source = tmp_path / "a.csv"
    source.write_text("id,region,amount\n1,north,-1\n2,south,-2\n3,north,4\n")
    assert appliance(tmp_path, "ingest", "sales", str(source)).returncode == 0

    cut = appliance(tmp_path, "datasets", "quarantine", "sales", "--limit", "1")
    whole = appliance(tmp_path, "datasets", "quarantine", "sales", "--limit", "3")
    rows = appliance(tmp_path, "datasets", "rows", "sales", "--limit", "1", "--json")
    above = appliance(tmp_path, "predictions", "query", "--limit", "10001")
    tail = appliance(tmp_path, "predictions", "tail", "m", "-n", "10001")
    none = appliance(tmp_path, "datasets", "rows", "sales", "--limit", "0")

    note = "showing 1 row, the limit; more may match, so pass a larger --limit"
    assert note in cut.stderr
    assert len(cut.stdout.splitlines()) == 2
    assert "the limit" not in whole.stderr
    assert note in rows.stderr
    assert len(rows.stdout.splitlines()) == 1
    assert above.returncode == 1
    assert "--limit 10001 is above the maximum of 10000 rows per query" in above.stderr
    assert tail.returncode == 1
    assert "--rows 10001 is above the maximum" in tail.stderr
    assert "since" not in tail.stderr
    assert "the limit" not in none.stderr


def test_rows_of_lost_folder_named(tmp_path: Path) -> None:
    import shutil

    (tmp_path / "c.toml").write_text(CONFIG)
    source = tmp_path / "a.csv"
    source.write_text("id,region,amount\n1,north,1\n")
    assert appliance(tmp_path, "ingest", "sales", str(source)).returncode == 0
    shutil.rmtree(tmp_path / "home" / "lake" / "sales")

    shown = appliance(tmp_path, "datasets", "rows", "sales")

    assert shown.returncode == 1
    assert "Traceback" not in shown.stderr
    assert "dataset 'sales' version" in shown.stderr
    assert "restore that folder from a backup" in shown.stderr


def test_ingest_command_rebuilds_lost_folder(tmp_path: Path) -> None:
    import shutil

    (tmp_path / "c.toml").write_text(CONFIG)
    source = tmp_path / "a.csv"
    source.write_text("id,region,amount\n1,north,1\n2,south,2\n3,north,-1\n")
    assert appliance(tmp_path, "ingest", "sales", str(source)).returncode == 0
    before = appliance(tmp_path, "datasets", "rows", "sales", "--json")
    shutil.rmtree(tmp_path / "home" / "lake" / "sales")
    lost = appliance(tmp_path, "datasets", "rows", "sales")

    again = appliance(tmp_path, "ingest", "sales", str(source))
    after = appliance(tmp_path, "datasets", "rows", "sales", "--json")

    listed = appliance(tmp_path, "datasets", "list", "--json")
    version = json.loads(listed.stdout.splitlines()[0])["version"]
    assert f"ingest its source files ({source}) again" in lost.stderr
    assert again.returncode == 0, again.stderr
    assert again.stdout == (
        f"lake files rebuilt from these files: sales@{version} (2 files); "
        "no new version was stored\n"
    )
    assert after.returncode == 0, after.stderr
    assert sorted(after.stdout.splitlines()) == sorted(before.stdout.splitlines())
    assert len(after.stdout.splitlines()) == 2
