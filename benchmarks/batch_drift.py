"""Benchmark: batch drift of the appliance against Evidently's data drift preset.

Both sides compare 50,000 reference rows with 50,000 current rows of the flights
features used by the replay (11 numeric, 3 categorical), side by side in one
run, with the same tests and threshold: two-sample KS on numeric features and
chi-squared on categorical features, drift when the p-value is below 0.05. The
appliance's effect-size floors and PSI rule are switched off for the
comparison and reported separately.

Evidently runs in its own virtual environment, created on first use:
``benchmarks/.venvs/evidently`` (never a project dependency).

Usage: .venv/bin/python benchmarks/batch_drift.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "scripts"))

from replay import CATEGORICAL, NUMERIC, load_flights  # noqa: E402

from appliance.monitoring import DriftThresholds, batch_drift  # noqa: E402

EVIDENTLY_VENV = HERE / ".venvs" / "evidently"
EVIDENTLY_PINS = ["evidently==0.7.23", "pandas<3"]
ROWS = 50_000
P_VALUE = 0.05


def evidently_python() -> Path:
    """Return the benchmark venv's Python, creating the venv on first use."""
    python = EVIDENTLY_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(EVIDENTLY_VENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", *EVIDENTLY_PINS], check=True
        )
    return python


def scenarios(frame: pd.DataFrame) -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
    """Return named (reference, current) pairs of 50,000 rows each."""
    winter = frame[frame["day"] < "2013-04-01"]
    summer = frame[frame["day"] >= "2013-07-01"]
    shuffled = frame.sample(frac=1.0, random_state=0)
    columns = NUMERIC + CATEGORICAL
    return {
        "first 50k of January vs first 50k from July": (
            winter.head(ROWS)[columns],
            summer.head(ROWS)[columns],
        ),
        "two disjoint random samples of the year": (
            shuffled.iloc[:ROWS][columns],
            shuffled.iloc[ROWS : 2 * ROWS][columns],
        ),
    }


def run_appliance(reference: pd.DataFrame, current: pd.DataFrame, repeats: int, rules):
    """Time `batch_drift` from DataFrames to a report; return seconds and report."""
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        ref = {c: reference[c].to_numpy() for c in reference.columns}
        cur = {c: current[c].to_numpy() for c in current.columns}
        report = batch_drift(ref, cur, NUMERIC, CATEGORICAL, rules)
        seconds.append(time.perf_counter() - started)
    return seconds, report


def run_evidently(reference: pd.DataFrame, current: pd.DataFrame, repeats: int) -> dict:
    """Run Evidently in its venv on the same rows; return its timings and p-values."""
    with tempfile.TemporaryDirectory() as folder:
        ref_path, cur_path = Path(folder, "ref.parquet"), Path(folder, "cur.parquet")
        reference.to_parquet(ref_path)
        current.to_parquet(cur_path)
        output = subprocess.run(
            [
                str(evidently_python()),
                str(HERE / "_evidently_runner.py"),
                str(ref_path),
                str(cur_path),
                ",".join(NUMERIC),
                ",".join(CATEGORICAL),
                str(repeats),
                str(P_VALUE),
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    same_test = DriftThresholds(
        min_samples=1,
        psi=float("inf"),
        p_value=P_VALUE,
        ks_floor=0.0,
        cramers_v_floor=0.0,
    )
    frame = load_flights()
    print(f"machine: {platform.machine()}, {platform.python_version()}, load {_load()}")
    for name, (reference, current) in scenarios(frame).items():
        ours_seconds, ours = run_appliance(reference, current, args.repeats, same_test)
        _, defaults = run_appliance(reference, current, 1, DriftThresholds())
        theirs = run_evidently(reference, current, args.repeats)
        ours_flags = set(ours.drifted)
        theirs_flags = {c for c, p in theirs["p_values"].items() if p < P_VALUE}
        ours_median = statistics.median(ours_seconds)
        theirs_median = statistics.median(theirs["seconds"])
        print(f"\n## {name}: {len(reference)} vs {len(current)} rows")
        print(f"appliance  median {ours_median:.3f} s  runs {_fmt(ours_seconds)}")
        print(
            f"evidently  median {theirs_median:.3f} s  runs {_fmt(theirs['seconds'])}"
        )
        print(f"speed-up   {theirs_median / ours_median:.1f}x")
        print(f"flagged (p < {P_VALUE}): appliance {sorted(ours_flags)}")
        print(f"flagged (p < {P_VALUE}): evidently {sorted(theirs_flags)}")
        print(f"same features flagged: {ours_flags == theirs_flags}")
        print(
            f"appliance defaults (effect floors, PSI >= 0.2): {sorted(defaults.drifted)}"
        )
        for kind, names in (("numeric", NUMERIC), ("categorical", CATEGORICAL)):
            print(
                f"largest p-value difference, {kind}: "
                f"{_largest_difference(ours, theirs['p_values'], names):.3g}"
            )
        for feature in ours.features:
            print(
                f"  {feature.feature:<15} ours p={feature.p_value:.3g} "
                f"evidently p={theirs['p_values'].get(feature.feature, float('nan')):.3g}"
            )
    return 0


def _largest_difference(report, theirs: dict[str, float], names: list[str]) -> float:  # noqa: ANN001
    """Return the largest absolute p-value difference over the features `names`."""
    return max(
        abs(f.p_value - theirs[f.feature])
        for f in report.features
        if f.feature in names
    )


def _fmt(values: list[float]) -> str:
    return ", ".join(f"{v:.3f}" for v in values)


def _load() -> str:
    import os

    return ", ".join(f"{v:.1f}" for v in os.getloadavg())


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
