"""The HTTP replay script, run end to end on three days with a tiny model.

It starts a real daemon on 127.0.0.1 in a fresh home, sends the days through
the predict, dataset rows and feedback routes, and lets the daemon retrain on
its drift alarms with a one-day cool-down.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from appliance.homelock import read_address

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_SECONDS = 300


def test_replay_script_three_days(tmp_path: Path) -> None:
    home = tmp_path / "home"
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "replay.py"),
            "--days",
            "3",
            "--estimators",
            "5",
            "--first-quarter-from",
            "2013-03-15",
            "--cooldown-days",
            "1",
            "--holdout-days",
            "1",
            "--min-new-labels",
            "100",
            # Three days are about 2,700 rows: windows of 100 let the
            # detectors, silent for their first 7 windows, raise alarms.
            "--stream-horizon",
            "100",
            "--home",
            str(home),
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    month = re.search(r"^\s+4\s+(v[\d,v]+)\s+([\d.]+)", out, re.MULTILINE)
    assert month is not None, out
    assert month.group(1).startswith("v1"), out
    assert 0.5 < float(month.group(2)) < 1.0, out
    assert "gap recovered:" in out
    assert re.search(r"retrain \(drift\) (promoted|rejected)", out), out
    assert read_address(home) is None, "the daemon still holds its home"
