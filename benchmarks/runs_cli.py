"""Benchmark: list and compare 1,000 runs with the ``appliance`` command.

Creates a home with 1,000 finished runs of realistic size (estimator defaults,
30 metrics, 5 folds, per-segment evaluation) through the same API that
training uses. Then it times each command as a new process from a warm start.
Each command runs once untimed so the files are in the page cache, and the
median of the timed runs is kept.

Usage: .venv/bin/python benchmarks/runs_cli.py [--runs N] [--repeats N]
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _report import machine, median, write_section

from appliance.storage import Catalog, RunResult, finish_run, start_run

PARAMS = {
    "algorithm": "lightgbm",
    "boosting_type": "gbdt",
    "class_weight": None,
    "colsample_bytree": 1.0,
    "importance_type": "split",
    "learning_rate": 0.05,
    "max_depth": -1,
    "min_child_samples": 20,
    "min_child_weight": 0.001,
    "min_split_gain": 0.0,
    "n_estimators": 300,
    "n_jobs": 2,
    "num_leaves": 63,
    "objective": None,
    "random_state": 0,
    "reg_alpha": 0.0,
    "reg_lambda": 0.0,
    "subsample": 1.0,
    "subsample_for_bin": 200000,
    "subsample_freq": 0,
    "verbose": -1,
}
METRIC_NAMES = (
    "roc_auc pr_auc log_loss brier accuracy precision recall f1 f1_macro "
    "calibration_error"
).split()


def populate(home: Path, runs: int) -> list[str]:
    """Record `runs` finished runs and return their ids."""
    rng = random.Random(0)
    ids = []
    with Catalog(home) as catalog:
        for index in range(runs):
            params = dict(PARAMS, num_leaves=rng.choice([15, 31, 63, 127]))
            run_id = start_run(
                catalog,
                f"model_{index % 5}",
                "flights",
                params,
                "git:bench",
                tags={"owner": "ops"},
                packages={"python": "3.11", "lightgbm": "4.7"},
            )
            metrics = {name: rng.random() for name in METRIC_NAMES}
            metrics.update({f"cv_{n}_mean": rng.random() for n in METRIC_NAMES})
            metrics.update({f"cv_{n}_std": rng.random() / 10 for n in METRIC_NAMES})
            folds = [{n: rng.random() for n in METRIC_NAMES} for _ in range(5)]
            segments = {
                "carrier": {
                    code: {n: rng.random() for n in METRIC_NAMES}
                    for code in ("AA", "B6", "DL", "UA", "WN", "EV", "MQ", "US")
                }
            }
            finish_run(
                catalog,
                run_id,
                RunResult(
                    "abc123",
                    metrics,
                    index + 1,
                    folds=folds,
                    evaluation={"segments": segments},
                ),
            )
            ids.append(run_id)
    return ids


def timed(
    command: list[str], env: dict[str, str], repeats: int
) -> tuple[float, float, int]:
    """Run `command` once untimed, then `repeats` times.

    Returns:
        The median wall time, the median CPU time (user plus system) of the
        process, and the size of its output in bytes.
    """
    subprocess.run(command, env=env, capture_output=True, check=True)
    wall, cpu = [], []
    size = 0
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        result = subprocess.run(command, env=env, capture_output=True, check=True)
        wall.append(time.perf_counter() - started)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        size = len(result.stdout)
    return median(wall), median(cpu), size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    header = machine()

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        config = Path(tmp) / "config.toml"
        config.write_text(f'[storage]\nhome = "{home}"\n', encoding="utf-8")
        started = time.perf_counter()
        ids = populate(home, args.runs)
        populate_seconds = time.perf_counter() - started
        env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
        base = [sys.executable, "-m", "appliance", "--config", str(config)]
        commands = {
            f"runs list ({args.runs} rows, table)": ["runs", "list"],
            f"runs list --json ({args.runs} rows)": ["runs", "list", "--json"],
            "runs compare RUN RUN": ["runs", "compare", ids[0], ids[1]],
            f"runs compare of all {args.runs} runs --json": [
                "runs",
                "compare",
                *ids,
                "--json",
            ],
            f"runs compare of all {args.runs} runs --differences": [
                "runs",
                "compare",
                *ids,
                "--differences",
            ],
            "--help (interpreter and CLI start only)": ["--help"],
        }
        rows = []
        for label, extra in commands.items():
            wall, cpu, size = timed(base + extra, env, args.repeats)
            rows.append(
                f"| `appliance {label}` | {wall:.3f} s | {cpu:.3f} s | "
                f"{size / 1e6:.2f} MB |"
            )
            print(rows[-1])

    body = f"""
## Listing and comparing runs from the CLI

`benchmarks/runs_cli.py`: {args.runs} finished runs (LightGBM parameters with
defaults, 30 metrics, 5 folds, 8 segments each), recorded in
{populate_seconds:.1f} s through `start_run` and `finish_run`. Each command
is a new `python -m appliance` process; the time is wall clock from a warm
start (one untimed run first), median of {args.repeats}. The goal is under
1 s of wall time. CPU time (user plus system of the process) is given too,
because on a loaded machine the wall time mostly measures waiting for a core.

Machine: {header}.

| command | wall time | CPU time | output |
| --- | --- | --- | --- |
{chr(10).join(rows)}
"""
    write_section("runs-cli", body)
    print(body)


if __name__ == "__main__":
    main()
