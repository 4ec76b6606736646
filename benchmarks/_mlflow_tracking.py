"""MLflow side of the tracking benchmark; runs inside MLflow's own venv.

Usage: python _mlflow_tracking.py STORE_URI MODE METRICS ARTIFACTS ARTIFACT_BYTES
Prints one JSON line: {"seconds": ..., "metrics": ..., "artifacts": ...}.
MODE is ``per_call`` (one log_metric call per value) or ``batch`` (log_batch
with up to 1,000 metrics per call, MLflow's limit).
"""

from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")

import mlflow  # noqa: E402
from mlflow.entities import Metric  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402


def main() -> None:
    uri, mode, n_metrics, n_artifacts, size = sys.argv[1:6]
    n_metrics, n_artifacts, size = int(n_metrics), int(n_artifacts), int(size)
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    keys = 100
    texts = [(f"artifact_{i:03d}.txt", _text(i, size)) for i in range(n_artifacts)]

    started = time.perf_counter()
    run = client.create_run("0")
    run_id = run.info.run_id
    if mode == "per_call":
        for index in range(n_metrics):
            client.log_metric(
                run_id, f"metric_{index % keys}", index * 0.5, step=index // keys
            )
    else:
        stamp = int(time.time() * 1000)
        batch = [
            Metric(f"metric_{i % keys}", i * 0.5, stamp, i // keys)
            for i in range(n_metrics)
        ]
        for start in range(0, n_metrics, 1000):
            client.log_batch(run_id, metrics=batch[start : start + 1000])
    for name, text in texts:
        client.log_text(run_id, text, name)
    client.set_terminated(run_id)
    seconds = time.perf_counter() - started

    history = client.get_metric_history(run_id, "metric_0")
    artifacts = client.list_artifacts(run_id)
    print(
        json.dumps(
            {
                "seconds": seconds,
                "metric_0_values": len(history),
                "artifacts": len(artifacts),
                "version": mlflow.__version__,
            }
        )
    )


def _text(index: int, size: int) -> str:
    line = f"artifact {index} " * 8 + "\n"
    return (line * (size // len(line) + 1))[:size]


if __name__ == "__main__":
    main()
