"""Save the flights ONNX model as an MLflow pyfunc model, for `mlflow models serve`.

The pyfunc runs the same ONNX file with onnxruntime, fed column by column as
the appliance does. Run with the MLflow venv: python mlflow_model.py MODEL_FOLDER OUT
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import mlflow.pyfunc


class OnnxFlights(mlflow.pyfunc.PythonModel):
    def load_context(self, context):  # noqa: ANN001, ANN201
        import onnxruntime as ort

        folder = Path(context.artifacts["model"])
        self.schema = json.loads((folder / "schema.json").read_text())
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self.session = ort.InferenceSession(str(folder / "model.onnx"), options)
        names = [output.name for output in self.session.get_outputs()]
        self.output = "probabilities" if "probabilities" in names else names[-1]

    def predict(self, context, model_input, params=None):  # noqa: ANN001, ANN201
        import numpy as np

        feed = {}
        for spec in self.schema["inputs"]:
            column = model_input[spec["name"]]
            if spec["type"] == "number":
                feed[spec["name"]] = column.to_numpy(np.float32).reshape(-1, 1)
            else:
                values = column.fillna("").astype(str).to_numpy(object)
                feed[spec["name"]] = values.reshape(-1, 1)
        output = self.session.run([self.output], feed)[0]
        return np.asarray(output)


if __name__ == "__main__":
    mlflow.pyfunc.save_model(
        sys.argv[2], python_model=OnnxFlights(), artifacts={"model": sys.argv[1]}
    )
