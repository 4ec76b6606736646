"""Live model performance over a sliding window of labelled predictions.

Pure numpy and scipy, so the daemon computes it without scikit-learn.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence

import numpy as np

_CLIP = 1e-15
"""Probabilities are clipped to [1e-15, 1 - 1e-15] in log loss, as scikit-learn."""


class LiveMetrics:
    """Accuracy, log loss and AUC (classification) or MAE (regression).

    Args:
        task: ``classification`` or ``regression``.
        window: Labelled predictions kept; older ones fall out.

    >>> live = LiveMetrics("classification", window=4)
    >>> for y, p in [(1, [0.2, 0.8]), (0, [0.6, 0.4]), (1, [0.7, 0.3])]:
    ...     _ = live.update(y, p)
    >>> live.metrics(min_auc_labels=2)["accuracy"]
    0.6666666666666666
    """

    def __init__(self, task: str, window: int = 5000) -> None:
        if task not in ("classification", "regression"):
            raise ValueError(f"task must be classification or regression, got {task!r}")
        if window < 1:
            raise ValueError(f"window must be at least 1, got {window}")
        self.task = task
        self.window = window
        self._reset()

    def _reset(self) -> None:
        self._labels: deque[float] = deque(maxlen=self.window)
        self._outputs: deque[tuple[float, ...]] = deque(maxlen=self.window)
        self._seen = 0

    @property
    def seen(self) -> int:
        """Labelled predictions received since the start."""
        return self._seen

    def update(self, label: float, output: Sequence[float] | float) -> LiveMetrics:
        """Add one label with the model's output for the same row.

        Args:
            label: Class index for classification, the true value for
                regression.
            output: Class probabilities in class-index order, or the
                predicted value.
        """
        values = (float(output),) if np.isscalar(output) else tuple(map(float, output))
        self._labels.append(float(label))
        self._outputs.append(values)
        self._seen += 1
        return self

    def metrics(self, min_auc_labels: int = 200) -> dict[str, float | int | None]:
        """Return the metrics of the rows in the window; None where undefined.

        Args:
            min_auc_labels: Fewest labels, with both classes present, for an AUC.
        """
        n = len(self._labels)
        if n == 0:
            return {"labels": 0}
        labels = np.asarray(self._labels)
        outputs = np.asarray(self._outputs)
        if self.task == "regression":
            error = np.abs(outputs[:, 0] - labels)
            return {"labels": n, "mae": float(error.mean())}
        index = labels.astype(np.int64)
        true_proba = np.clip(outputs[np.arange(n), index], _CLIP, 1 - _CLIP)
        result: dict[str, float | int | None] = {
            "labels": n,
            "accuracy": float((outputs.argmax(axis=1) == index).mean()),
            "log_loss": float(-np.log(true_proba).mean()),
            "roc_auc": None,
        }
        if outputs.shape[1] == 2 and n >= min_auc_labels:
            result["roc_auc"] = roc_auc(index, outputs[:, 1])
        return result


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """Return the binary ROC AUC from ranks (ties share their mean rank).

    None when only one class is present.

    >>> roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
    0.75
    """
    positives = int(labels.sum())
    negatives = labels.size - positives
    if positives == 0 or negatives == 0:
        return None
    ranks = _average_ranks(scores)
    total = ranks[labels == 1].sum() - positives * (positives + 1) / 2
    return float(total / (positives * negatives))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """Return 1-based ranks with ties sharing their mean rank, as
    ``scipy.stats.rankdata(values)`` does."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return ((ends - counts + 1 + ends) / 2.0)[inverse.reshape(-1)]


def row_loss(task: str, label: float, output: Sequence[float] | float) -> float:
    """Return one row's loss: log loss of the true class, or absolute error."""
    if task == "regression":
        return abs(float(output) - float(label))  # type: ignore[arg-type]
    proba = float(output[int(label)])  # type: ignore[index]
    return -math.log(min(max(proba, _CLIP), 1 - _CLIP))
