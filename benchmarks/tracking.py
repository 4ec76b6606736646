"""Benchmark: log 10,000 metric values and 100 small artifacts in one run.

The appliance (DuckDB catalog plus content-addressed blobs) and MLflow's local
file store do the same work side by side in one invocation, each in a fresh
store. The work is repeated and the page gets the median. MLflow runs in its own venv under
``benchmarks/.venvs/mlflow`` (created on first use) and is never a dependency
of the appliance.

Usage: .venv/bin/python benchmarks/tracking.py [--repeats N]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _report import ROOT, machine, median, write_section

from appliance.storage import (
    Catalog,
    RunLog,
    RunResult,
    finish_run,
    list_artifacts,
    metric_series,
    start_run,
)

METRICS = 10_000
KEYS = 100
ARTIFACTS = 100
ARTIFACT_BYTES = 1024
MLFLOW_VERSION = "3.18.0"
VENV = ROOT / "benchmarks" / ".venvs" / "mlflow"


def appliance_once(folder: Path) -> tuple[float, float, int, int]:
    """Log the workload with the appliance.

    Returns:
        Total seconds, seconds spent writing artifacts, and the number of
        values of one key and of artifacts read back.
    """
    texts = [
        (f"artifact_{i:03d}.txt", _text(i, ARTIFACT_BYTES)) for i in range(ARTIFACTS)
    ]
    started = time.perf_counter()
    with Catalog(folder) as catalog:
        run_id = start_run(catalog, "bench", "none", {}, "bench")
        log = RunLog(catalog, run_id)
        for index in range(METRICS):
            log.log_metric(f"metric_{index % KEYS}", index * 0.5, step=index // KEYS)
        blobs_started = time.perf_counter()
        for name, text in texts:
            log.log_artifact(name, text.encode(), "text/plain")
        blob_seconds = time.perf_counter() - blobs_started
        finish_run(catalog, run_id, RunResult(None, {}), log)
    seconds = time.perf_counter() - started
    with Catalog(folder, read_only=True) as catalog:
        values = len(metric_series(catalog, run_id)["metric_0"])
        artifacts = len(list_artifacts(catalog, run_id))
    return seconds, blob_seconds, values, artifacts


def mlflow_once(folder: Path, mode: str) -> dict[str, float]:
    """Run the MLflow side in its venv and return its JSON result."""
    script = ROOT / "benchmarks" / "_mlflow_tracking.py"
    uri = (folder / "mlruns").as_uri()
    args = [uri, mode, str(METRICS), str(ARTIFACTS), str(ARTIFACT_BYTES)]
    result = subprocess.run(
        [str(VENV / "bin" / "python"), str(script), *args],
        capture_output=True,
        text=True,
        check=True,
        cwd=folder,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def ensure_mlflow() -> None:
    """Create MLflow's venv and install mlflow-skinny into it when missing."""
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    check = subprocess.run([str(python), "-c", "import mlflow"], capture_output=True)
    if check.returncode != 0:
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "-q",
                f"mlflow-skinny=={MLFLOW_VERSION}",
            ],
            check=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    ensure_mlflow()
    header = machine()

    ours: list[float] = []
    blobs: list[float] = []
    theirs: dict[str, list[float]] = {"per_call": [], "batch": []}
    version = ""
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            seconds, blob_seconds, values, artifacts = appliance_once(Path(tmp))
            assert values == METRICS // KEYS
            assert artifacts == ARTIFACTS
            ours.append(seconds)
            blobs.append(blob_seconds)
        for mode in theirs:
            with tempfile.TemporaryDirectory() as tmp:
                found = mlflow_once(Path(tmp), mode)
                assert found["metric_0_values"] == METRICS // KEYS
                assert found["artifacts"] == ARTIFACTS
                theirs[mode].append(found["seconds"])
                version = str(found["version"])
        print(f"appliance {ours[-1]:.3f} s, mlflow {[v[-1] for v in theirs.values()]}")

    appliance = median(ours)
    rows = [
        f"| appliance, `RunLog.log_metric` per value | {appliance:.3f} s | 1.0 |",
        f"| of which 100 artifact writes (fsync each) | {median(blobs):.3f} s | |",
    ]
    for mode, label in (
        ("per_call", "`log_metric` per value"),
        ("batch", "`log_batch`, 1,000 per call"),
    ):
        value = median(theirs[mode])
        ratio = value / appliance
        rows.append(
            f"| MLflow {version} file store, {label} | {value:.3f} s | {ratio:.1f} |"
        )
    body = f"""
## Tracking: 10,000 metric values and 100 artifacts in one run

`benchmarks/tracking.py`, median of {args.repeats} runs, each in a fresh store.
One run logs 10,000 values ({KEYS} keys x {METRICS // KEYS} steps) and
{ARTIFACTS} text artifacts of {ARTIFACT_BYTES} bytes, then closes; the time
covers run start to run end (imports excluded). The appliance writes one
DuckDB transaction at the end of the run and one fsynced, content-addressed
file per artifact; MLflow {version} (`mlflow-skinny`, `file:` store with
`MLFLOW_ALLOW_FILE_STORE=true`) appends a line per value to a file per key
and copies each artifact. Both sides read the data back afterwards to check
that nothing was dropped.

Machine: {header}.

| store | time | time / appliance time |
| --- | --- | --- |
{chr(10).join(rows)}
"""
    write_section("tracking", body)
    print(body)


def _text(index: int, size: int) -> str:
    line = f"artifact {index} " * 8 + "\n"
    return (line * (size // len(line) + 1))[:size]


if __name__ == "__main__":
    main()
