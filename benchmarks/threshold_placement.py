"""Time the parts of an ONNX export of a large LightGBM model.

Fits a LightGBM classifier of TREES trees with 63 leaves on ROWS synthetic
rows of 8 inputs (values of up to 7 significant digits, so that many training
values round to the same float32 as a split threshold). Converts it with
skl2onnx and onnxmltools, then places the float32 thresholds with
`appliance.training._export.round_thresholds` against the training values,
as a training does. Each part is timed REPEATS times on the same model;
the table gives medians. Writes the "ONNX export of a large LightGBM model"
section of docs/benchmarks.md.

Run: .venv/bin/python benchmarks/threshold_placement.py [ROWS] [TREES] [REPEATS]
"""

from __future__ import annotations

import copy
import sys
import time

import numpy as np
from _report import machine, median, write_section

ROWS = 300_000
TREES = 300
REPEATS = 3


def main() -> int:
    rows, trees, repeats = (
        int(a) for a in (sys.argv[1:] + [ROWS, TREES, REPEATS][len(sys.argv) - 1 :])
    )
    import lightgbm
    import onnx
    import skl2onnx
    from lightgbm import LGBMClassifier
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.pipeline import Pipeline

    from appliance.training import _export

    x, y = _data(rows)
    started = time.perf_counter()
    estimator = LGBMClassifier(n_estimators=trees, num_leaves=63, verbose=-1)
    pipeline = Pipeline([("estimator", estimator)]).fit(x, y)
    fit_seconds = time.perf_counter() - started
    _export._register_lightgbm()
    _export.register_converter()
    types = [("x", FloatTensorType([None, x.shape[1]]))]
    options = {id(estimator): {"zipmap": False}}
    reference = {i: x[:, i] for i in range(x.shape[1])}
    thresholds = _export.estimator_thresholds(estimator)
    converted, placed, moved = [], [], 0
    for _ in range(repeats):
        started = time.perf_counter()
        model = convert_sklearn(
            pipeline, initial_types=types, target_opset=_export._OPSET, options=options
        )
        converted.append(time.perf_counter() - started)
        copied = copy.deepcopy(model)
        started = time.perf_counter()
        moved = _export.round_thresholds(copied, thresholds, reference)
        placed.append(time.perf_counter() - started)
    nodes = sum(
        len(a.floats)
        for node in model.graph.node
        for a in node.attribute
        if a.name == "nodes_values"
    )
    versions = (
        f"lightgbm {lightgbm.__version__}, skl2onnx {skl2onnx.__version__}, "
        f"onnx {onnx.__version__}"
    )
    body = f"""## ONNX export of a large LightGBM model

Written by `benchmarks/threshold_placement.py` (rows={rows}, trees={trees},
repeats={repeats}).

- {machine()}
- {versions}
- Fit of the model (once): {fit_seconds:.1f} s; {nodes} tree nodes, {moved}
  thresholds moved by the placement.

| export part | median s | runs (s) | per tree node, us |
| --- | ---: | --- | ---: |
{_row("skl2onnx and onnxmltools conversion", converted, nodes)}
{_row("float32 threshold placement (`round_thresholds`)", placed, nodes)}

The placement searches each node's float32 in the sorted training values of
its input. Before, it compared the float32 with every training value of the
input at each node: 330 s for 300 trees on 300,000 rows from a similar
generator, in a one-off run of the old code on 2026-12-05.
"""
    write_section("threshold_placement", body)
    print(body)
    return 0


def _data(rows: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    columns = [
        rng.normal(size=rows).round(rng.integers(0, 4)) * 10 ** rng.integers(0, 4)
        for _ in range(6)
    ]
    columns.append(1000 + rng.normal(size=rows) * 1e-3)
    columns.append(3.3 + rng.normal(size=rows) * 1e-6)
    x = np.column_stack(columns)
    signal = x[:, 1] + (x[:, 6] - 1000) * 1e3 + (x[:, 7] - 3.3) * 1e6
    y = (signal + rng.normal(size=rows) > 0).astype(int)
    return x, y


def _row(part: str, seconds: list[float], nodes: int) -> str:
    runs = ", ".join(f"{v:.3f}" for v in seconds)
    per_node = median(seconds) / nodes * 1e6
    return f"| {part} | {median(seconds):.3f} | {runs} | {per_node:.1f} |"


if __name__ == "__main__":
    raise SystemExit(main())
