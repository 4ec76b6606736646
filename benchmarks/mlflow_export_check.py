"""Check that MLflow itself loads an exported model and predicts like the appliance.

Exports a registered version with ``--format mlflow``, loads the folder in
MLflow's own venv (``benchmarks/.venvs/mlflow``, see `tracking.py`) with
``mlflow.onnx.load_model`` and ``mlflow.pyfunc.load_model``, predicts a few
rows and prints the largest difference from the appliance's predictions.
The test suite checks the export with onnxruntime only, because MLflow is
never a dependency of the appliance.

Usage:
    .venv/bin/python benchmarks/mlflow_export_check.py CONFIG NAME[@VERSION] ROWS.csv
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from appliance.config import load_config
from appliance.registry import export_version
from appliance.serving import OnnxModel
from appliance.signing import trusted_keys
from appliance.storage import Catalog, resolve_version

VENV_PYTHON = Path(__file__).resolve().parent / ".venvs" / "mlflow" / "bin" / "python"

_LOAD = """
import json, sys
import numpy as np
import mlflow.onnx, mlflow.pyfunc
folder, inputs = sys.argv[1], json.loads(sys.stdin.read())
mlflow.onnx.load_model(folder)
model = mlflow.pyfunc.load_model(folder)
feed = {
    k: np.array(v["values"], dtype=v["dtype"]).reshape(-1, 1)
    for k, v in inputs.items()
}
output = model.predict(feed)
print(json.dumps({k: np.asarray(v).tolist() for k, v in output.items()}))
"""


def main() -> None:
    config_path, reference, rows_path = sys.argv[1:4]
    name, _, ref = reference.partition("@")
    config = load_config(config_path)
    with Catalog(config.storage.home, read_only=True) as catalog:
        version = resolve_version(catalog, name, ref or None)
    rows = pd.read_csv(rows_path)
    trusted = trusted_keys(config)
    served = OnnxModel.load(version.path, version.sha256, trusted=trusted)
    inputs = {}
    for spec in served.inputs:
        column = rows[spec["name"]]
        if spec["type"] == "number":
            inputs[spec["name"]] = {
                "values": column.astype(float).tolist(),
                "dtype": "float32",
            }
        else:
            inputs[spec["name"]] = {
                "values": column.fillna("").astype(str).tolist(),
                "dtype": "object",
            }
    expected = served.run(
        {
            k: np.array(v["values"], dtype=v["dtype"]).reshape(-1, 1)
            for k, v in inputs.items()
        }
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "model"
        export_version(version, folder, "mlflow", trusted)
        result = subprocess.run(
            [str(VENV_PYTHON), "-c", _LOAD, str(folder)],
            input=json.dumps(inputs),
            capture_output=True,
            text=True,
            check=True,
        )
    output = json.loads(result.stdout.strip().splitlines()[-1])
    key = "probabilities" if served.task == "classification" else next(iter(output))
    got = np.asarray(output[key], dtype=float).reshape(expected.shape)
    print(
        f"{name} version {version.version}: MLflow loaded the export and predicted "
        f"{len(rows)} rows; largest difference {np.abs(got - expected).max():.3g}"
    )


if __name__ == "__main__":
    main()
