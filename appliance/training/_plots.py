"""Evaluation plots as PNG bytes, drawn with matplotlib's headless Agg backend.

matplotlib is imported inside `_figure` only, so neither the daemon nor the
CLI pays for it unless a training draws plots.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np

_SIZE = (5.0, 4.0)
_DPI = 80


def roc_png(y_true: np.ndarray, proba: np.ndarray, classes: Sequence[Any]) -> bytes:
    """Draw the ROC curve of each class against the rest (the positive class
    alone for binary tasks)."""
    from sklearn.metrics import roc_curve

    fig, ax = _figure()
    for index, label in _curves(classes):
        fpr, tpr, _ = roc_curve(y_true == index, proba[:, index])
        ax.plot(fpr, tpr, label=str(label))
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    ax.legend(loc="lower right", fontsize="small")
    return _png(fig)


def pr_png(y_true: np.ndarray, proba: np.ndarray, classes: Sequence[Any]) -> bytes:
    """Draw the precision-recall curve of each class against the rest."""
    from sklearn.metrics import precision_recall_curve

    fig, ax = _figure()
    for index, label in _curves(classes):
        precision, recall, _ = precision_recall_curve(y_true == index, proba[:, index])
        ax.plot(recall, precision, label=str(label))
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall")
    ax.legend(loc="upper right", fontsize="small")
    return _png(fig)


def calibration_png(curve: dict[str, list[float]]) -> bytes:
    """Draw a reliability curve as returned by `calibration_curve`."""
    fig, ax = _figure()
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey", label="perfect")
    ax.plot(curve["predicted"], curve["observed"], marker="o", label="model")
    ax.set(
        xlabel="mean predicted probability",
        ylabel="observed frequency",
        title="Calibration",
        xlim=(0, 1),
        ylim=(0, 1),
    )
    ax.legend(loc="upper left", fontsize="small")
    return _png(fig)


def confusion_png(matrix: list[list[int]], classes: Sequence[Any]) -> bytes:
    """Draw the confusion matrix with counts in the cells."""
    fig, ax = _figure()
    values = np.asarray(matrix)
    ax.imshow(values, cmap="Blues")
    ticks = range(len(classes))
    ax.set_xticks(ticks, [str(c) for c in classes])
    ax.set_yticks(ticks, [str(c) for c in classes])
    threshold = values.max() / 2 if values.size else 0
    for (row, col), count in np.ndenumerate(values):
        color = "white" if count > threshold else "black"
        ax.text(col, row, str(count), ha="center", va="center", color=color)
    ax.set(xlabel="predicted", ylabel="true", title="Confusion matrix")
    return _png(fig)


def importance_png(
    names: Sequence[str], values: Sequence[float], top: int = 20
) -> bytes:
    """Draw the `top` largest feature importances as horizontal bars."""
    order = np.argsort(np.abs(np.asarray(values, dtype=float)))[::-1][:top][::-1]
    fig, ax = _figure(height=max(2.5, 0.25 * len(order) + 1))
    ax.barh([names[i] for i in order], [values[i] for i in order])
    ax.set(xlabel="importance", title="Feature importance")
    ax.tick_params(axis="y", labelsize="small")
    return _png(fig)


def residuals_png(y_true: np.ndarray, predicted: np.ndarray) -> bytes:
    """Draw residuals (true minus predicted) against the predicted value."""
    fig, ax = _figure()
    ax.scatter(predicted, y_true - predicted, s=6, alpha=0.5)
    ax.axhline(0, color="grey", linestyle=":")
    ax.set(xlabel="predicted", ylabel="residual", title="Residuals")
    return _png(fig)


def _curves(classes: Sequence[Any]) -> list[tuple[int, Any]]:
    if len(classes) == 2:
        return [(1, classes[1])]
    return list(enumerate(classes))


def _figure(height: float = _SIZE[1]) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(_SIZE[0], height), dpi=_DPI, layout="constrained")
    return fig, fig.add_subplot()


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()
