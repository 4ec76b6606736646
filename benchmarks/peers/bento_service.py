"""A BentoML service running the flights ONNX model with onnxruntime.

The model folder comes from FLIGHTS_MODEL. Serve with the BentoML venv:
bentoml serve bento_service:Flights --port PORT --host 127.0.0.1
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import bentoml
import numpy as np


@bentoml.service(workers=1)
class Flights:
    def __init__(self) -> None:
        import onnxruntime as ort

        folder = Path(os.environ["FLIGHTS_MODEL"])
        self.schema = json.loads((folder / "schema.json").read_text())
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self.session = ort.InferenceSession(str(folder / "model.onnx"), options)
        names = [output.name for output in self.session.get_outputs()]
        self.output = "probabilities" if "probabilities" in names else names[-1]

    @bentoml.api
    def predict(self, rows: list[dict[str, Any]]) -> list[list[float]]:
        feed = {}
        for spec in self.schema["inputs"]:
            name = spec["name"]
            if spec["type"] == "number":
                values = [np.nan if r.get(name) is None else r[name] for r in rows]
                feed[name] = np.array(values, np.float32).reshape(-1, 1)
            else:
                values = ["" if r.get(name) is None else str(r[name]) for r in rows]
                feed[name] = np.array(values, object).reshape(-1, 1)
        return self.session.run([self.output], feed)[0].tolist()
