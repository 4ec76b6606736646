"""Benchmark: cost of the streaming drift path next to ONNX prediction.

Measures, on the flights features of the replay, in one process:

- prediction: rows per second of `OnnxModel.predict_rows` (the daemon's model
  call) on requests of 1 and of 100 rows;
- drift path: rows per second of `StreamMonitor.observe_prediction`, which
  updates one detector per feature plus the prediction detector for each row;
- the drift share: the monitor's time per row over the prediction's time per
  row, the fraction of serving throughput the drift path would take if it ran
  on the same core.

Usage: .venv/bin/python benchmarks/streaming_drift.py [--rows 20000]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from replay import CATEGORICAL, NUMERIC, fit, load_flights, model_config  # noqa: E402

from appliance.monitoring import StreamMonitor  # noqa: E402
from appliance.serving import OnnxModel  # noqa: E402
from appliance.training._export import input_schema, to_onnx  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    args = parser.parse_args()
    frame = load_flights()
    train = frame[frame["day"] < "2013-04-01"]
    pipeline = fit(model_config(100), train)
    inputs = input_schema(NUMERIC, CATEGORICAL)
    model = OnnxModel(
        to_onnx(pipeline, inputs, "classification"),
        {"task": "classification", "inputs": inputs, "classes": [0, 1]},
    )
    rows = _json_rows(frame[frame["day"] >= "2013-04-01"].head(args.rows))
    print(
        f"machine: {platform.machine()}, Python {platform.python_version()}, "
        f"load {', '.join(f'{v:.1f}' for v in os.getloadavg())}"
    )

    predictions = {}
    for batch in (1, 100):
        started = time.perf_counter()
        outputs = []
        for i in range(0, len(rows), batch):
            outputs += model.predict_rows(rows[i : i + batch])
        seconds = time.perf_counter() - started
        predictions[batch] = seconds / len(rows)
        print(f"predict, {batch:>3} rows per call: {len(rows) / seconds:10.0f} rows/s")

    monitor = StreamMonitor("classification", NUMERIC, CATEGORICAL)
    probabilities = [
        [o["probabilities"]["0"], o["probabilities"]["1"]] for o in outputs
    ]
    started = time.perf_counter()
    for row, proba in zip(rows, probabilities, strict=True):
        monitor.observe_prediction(row, proba)
    drift = (time.perf_counter() - started) / len(rows)
    print(f"drift path (14 features + prediction): {1 / drift:10.0f} rows/s")
    for batch, per_row in predictions.items():
        share = drift / (drift + per_row)
        print(f"drift share of serving time, {batch:>3}-row requests: {share:.1%}")
    return 0


def _json_rows(part: pd.DataFrame) -> list[dict]:
    records = part[NUMERIC + CATEGORICAL].to_dict("records")
    for record in records:
        for name in NUMERIC:
            if isinstance(record[name], float) and np.isnan(record[name]):
                record[name] = None
    return records


if __name__ == "__main__":
    sys.exit(main())
