"""Run Evidently's data drift preset on two Parquet files; print JSON timings.

Runs inside the benchmark's own virtual environment (benchmarks/.venvs/evidently),
never the project's: ``python _evidently_runner.py REF CUR NUMERIC CATEGORICAL
REPEATS P_VALUE``.
"""

from __future__ import annotations

import json
import sys
import time

import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset


def main() -> None:
    reference_path, current_path, numeric, categorical, repeats, p_value = sys.argv[1:]
    numeric_columns = numeric.split(",")
    categorical_columns = categorical.split(",")
    reference = pd.read_parquet(reference_path)
    current = pd.read_parquet(current_path)
    definition = DataDefinition(
        numerical_columns=numeric_columns, categorical_columns=categorical_columns
    )
    seconds = []
    values: dict[str, float] = {}
    for _ in range(int(repeats)):
        started = time.perf_counter()
        report = Report(
            [
                DataDriftPreset(
                    num_method="ks", cat_method="chisquare", threshold=float(p_value)
                )
            ]
        )
        snapshot = report.run(
            Dataset.from_pandas(current, data_definition=definition),
            Dataset.from_pandas(reference, data_definition=definition),
        )
        result = snapshot.dict()
        seconds.append(time.perf_counter() - started)
    for metric in result["metrics"]:
        column = metric["config"].get("column")
        if column is not None:
            values[column] = float(metric["value"])
    print(json.dumps({"seconds": seconds, "p_values": values}))


if __name__ == "__main__":
    main()
