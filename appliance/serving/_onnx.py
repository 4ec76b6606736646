"""ONNX models: an onnxruntime session plus the schema that explains its outputs.

This module imports neither scikit-learn nor LightGBM, so the daemon starts
without the training libraries.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pyarrow as pa

from appliance.errors import RequestError
from appliance.serving._derived import check_schema_sql, derived_features
from appliance.serving._inputs import (
    ARROW_MISSING,
    Columns,
    check_float32,
    check_ranges,
    columns_to_feed,
    request_spec,
    rows_to_columns,
    table_to_columns,
)
from appliance.signing import TrustedKeys, verified_files
from appliance.storage import MODEL_FILE, SCHEMA_FILE, parse_schema

logger = logging.getLogger(__name__)

RUN_CHUNK_ROWS = 2_048
"""Rows per onnxruntime run of a large feed. The session's memory arena keeps
the largest intermediate tensors it has held, such as the one-hot columns
joined into one float32 matrix, for the life of the daemon. On the flights
LightGBM model (onnxruntime 1.32, one thread), a 300,000-row feed left the
process 99 MB larger in runs of 65,536 rows and 5 MB larger in runs of 2,048.
The smaller runs also took 7 % less CPU time, likely because their tensors
stay in the CPU caches."""


class OnnxModel:
    """One model version ready to predict.

    Args:
        onnx_bytes: The serialized ONNX model.
        schema: Inputs, task and classes as written at registration.
        threads: Intra-op threads of the onnxruntime session.
    """

    def __init__(self, onnx_bytes: bytes, schema: dict[str, Any], threads: int = 1):
        self.schema = schema
        self.name: str = schema.get("model", "")
        self.version: int = schema.get("version", 0)
        self.task: str = schema["task"]
        self.inputs: list[dict[str, str]] = schema["inputs"]
        self.classes: list[Any] | None = schema.get("classes")
        self.request: list[dict[str, str]] = request_spec(schema)
        """Columns a request sends; derived features are computed from them."""
        self.derive: dict[str, str] = schema.get("derive", {})
        check_schema_sql(self.name, self.version, self.derive, self.request)
        self.checks: dict[str, dict[str, float]] = schema.get("checks", {})
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Spinning threads would burn the CPUs that other sessions and the
        # event loop need on a small box.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(
            onnx_bytes, options, providers=["CPUExecutionProvider"]
        )
        self._output = self._pick_output()

    @classmethod
    def load(
        cls,
        folder: Path,
        sha256: str | None = None,
        threads: int = 1,
        *,
        trusted: TrustedKeys,
    ) -> OnnxModel:
        """Load a registered version from its folder once its signature is verified.

        Args:
            folder: The version folder ``models/NAME/VERSION``.
            sha256: The ONNX file's sha256 recorded in the catalog, if known.
            threads: Intra-op threads of the onnxruntime session.
            trusted: Keys whose signatures are accepted.

        Raises:
            SignatureError: The signature is missing, invalid or untrusted, or
                a file differs from its signed hash.
            IntegrityError: The schema is not a JSON object, or the ONNX
                file's sha256 differs from the recorded one.
        """
        files = verified_files(folder, trusted, sha256)
        schema = parse_schema(files[SCHEMA_FILE], folder / SCHEMA_FILE)
        return cls(files[MODEL_FILE], schema, threads)

    def run(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        """Return class probabilities ``(rows, classes)`` or values ``(rows,)``.

        A feed of more than `RUN_CHUNK_ROWS` rows runs in chunks of that many.
        """
        rows = len(next(iter(feed.values()))) if feed else 0
        if rows <= RUN_CHUNK_ROWS:
            return self._run(feed)
        parts = [
            self._run({k: v[start : start + RUN_CHUNK_ROWS] for k, v in feed.items()})
            for start in range(0, rows, RUN_CHUNK_ROWS)
        ]
        return np.concatenate(parts)

    def _run(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        (output,) = self.session.run([self._output], feed)
        output = np.asarray(output)
        if self.task == "regression":
            return output.reshape(-1).astype(np.float64)
        return output.astype(np.float64)

    def predict_rows(self, rows: list[Any]) -> list[dict[str, Any]]:
        """Predict JSON rows and return one JSON-ready result per row.

        Raises:
            RequestError: A row does not fit the input schema.
        """
        if not rows:
            raise RequestError(
                f"the request to model {self.name!r} has no rows; send "
                '{"rows": [{...}, ...]} with at least one row',
                model=self.name,
            )
        results, _ = self.predict_request(rows)
        return results

    def predict_request(
        self, rows: list[Any]
    ) -> tuple[list[dict[str, Any]], list[str]]:
        """Predict JSON rows and return the results and warnings for the response.

        Raises:
            RequestError: A row does not fit the request columns.
        """
        if not rows:
            raise RequestError(
                f"the request to model {self.name!r} has no rows; send "
                '{"rows": [{...}, ...]} with at least one row',
                model=self.name,
            )
        feed, warnings = self.feed_rows(rows)
        return self.format(self.run(feed)), warnings

    def predict_table(self, table: pa.Table) -> tuple[list[dict[str, Any]], list[str]]:
        """Predict the rows of an Arrow table; see `predict_request`."""
        feed, warnings = self.feed_table(table)
        return self.format(self.run(feed)), warnings

    def feed_rows(self, rows: list[Any]) -> tuple[dict[str, np.ndarray], list[str]]:
        """Return the ONNX feed of JSON rows and the warnings about them."""
        columns, warnings = rows_to_columns(self.name, self.request, rows)
        return self._feed(columns), warnings

    def feed_table(
        self, table: pa.Table, missing: str = ARROW_MISSING
    ) -> tuple[dict[str, np.ndarray], list[str]]:
        """Return the ONNX feed of an Arrow table and the warnings about it.

        Args:
            missing: Which values the table's source reads as missing; see
                `table_to_columns`.
        """
        columns, warnings = table_to_columns(self.name, self.request, table, missing)
        return self._feed(columns), warnings

    def _feed(self, columns: Columns) -> dict[str, np.ndarray]:
        if self.derive:
            columns.update(self.derived_features(columns))
        check_ranges(self.name, self.checks, columns)
        check_float32(self.name, self.inputs, columns)
        return columns_to_feed(self.inputs, columns)

    def derived_features(self, columns: Columns) -> Columns:
        """Compute the derived features from checked request columns.

        Raises:
            RequestError: A value cannot be cast to its dataset type, or an
                expression fails on these rows.
        """
        return derived_features(
            self.name, self.derive, self.request, self.inputs, columns
        )

    def format(self, output: np.ndarray) -> list[dict[str, Any]]:
        """Turn raw outputs into ``{"label", "probabilities"}`` or ``{"value"}``."""
        if self.task == "regression":
            return [{"value": _finite(v)} for v in output.tolist()]
        assert self.classes is not None
        keys = [class_key(c) for c in self.classes]
        results = []
        for probabilities in output.tolist():
            best = max(range(len(keys)), key=probabilities.__getitem__)
            results.append(
                {
                    "label": self.classes[best],
                    "probabilities": {
                        key: _finite(p) for key, p in zip(keys, probabilities)
                    },
                }
            )
        return results

    def format_table(self, output: np.ndarray) -> pa.Table:
        """Turn raw outputs into an Arrow table.

        Columns: ``prediction`` (the label or value) and, for classifiers,
        ``probability_<class>`` per class.
        """
        if self.task == "regression":
            return pa.table({"prediction": pa.array(output, pa.float64())})
        assert self.classes is not None
        best = output.argmax(axis=1) if len(output) else np.zeros(0, dtype=np.int64)
        columns = {
            "prediction": pa.array(
                np.asarray(self.classes, dtype=object)[best].tolist()
            )
        }
        for index, value in enumerate(self.classes):
            columns[f"probability_{class_key(value)}"] = pa.array(
                output[:, index], pa.float64()
            )
        return pa.table(columns)

    def _pick_output(self) -> str:
        outputs = self.session.get_outputs()
        if self.task == "classification":
            for output in outputs:
                if output.name == "probabilities":
                    return output.name
            return outputs[-1].name
        return outputs[0].name


def class_key(value: Any) -> str:
    """Return the JSON object key used for a class value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _finite(value: float) -> float | None:
    """Return the value, or None for NaN so that JSON stays valid."""
    return None if math.isnan(value) else value
