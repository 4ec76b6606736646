"""Score a model's previous champion on the rows its new champion served.

The rollback watch compares a promoted version with the one it replaced. Each
version's live window contains the labels of its own predictions, made in
different weeks, and on seasonal data those weeks differ more than the two
versions do. So the watch scores the previous version again on the promoted
version's labelled rows: the logged input rows (as served, with the feature
views' values filled in), the stored labels, and the promoted version's
logged outputs. Both metrics then come from the same rows.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

from appliance.errors import ApplianceError, RequestError
from appliance.monitoring import (
    LiveMetrics,
    ModelInfo,
    SameRows,
    label_target,
    output_values,
)
from appliance.predictions import labelled
from appliance.serving._onnx import OnnxModel
from appliance.serving._routes_monitoring import model_info
from appliance.serving._state import DaemonState
from appliance.signing import trusted_keys
from appliance.storage import get_version

logger = logging.getLogger(__name__)


class RescoreError(ApplianceError):
    """The previous version cannot score the promoted version's rows."""


def same_rows(
    state: DaemonState,
    model: str,
    version: int,
    previous: int,
    since: datetime,
    min_auc_labels: int,
) -> SameRows:
    """Score `previous` on the labelled rows `version` served since `since`.

    Reads the newest labels, at most as many as the live metrics window.

    Raises:
        RescoreError: `version` is not served, or `previous` cannot score
            its rows (different classes, inputs it cannot read).
        NotFoundError: `previous` is not registered.
        IntegrityError: The signature or files of `previous` fail verification.
    """
    served = state.models.models.get(model)
    if served is None or served.version != version:
        raise RescoreError(f"version {version} of model {model!r} is not served")
    info = model_info(served, state.config)
    limit = state.monitoring.settings.metrics_window
    view = state.catalog.cursor()
    try:
        rows = labelled(view, model, version, since, limit)
        found = get_version(view, model, previous)
    finally:
        view.close()
    old = OnnxModel.load(found.path, found.sha256, trusted=trusted_keys(state.config))
    if old.task != served.task or old.classes != served.classes:
        raise RescoreError(
            f"version {previous} of model {model!r} has classes {old.classes} "
            f"and version {version} has {served.classes}, so the rows of one "
            "cannot score the other"
        )
    promoted, earlier = _score(info, old, rows)
    logger.info(
        "previous version rescored model=%s version=%d previous=%d rows=%d",
        model,
        version,
        previous,
        len(rows),
    )
    return SameRows(
        len(rows),
        promoted.metrics(min_auc_labels),
        earlier.metrics(min_auc_labels),
    )


def _score(
    info: ModelInfo, old: OnnxModel, rows: list[tuple[str, str, str]]
) -> tuple[LiveMetrics, LiveMetrics]:
    """Return the live metrics of the logged outputs and of `old` on `rows`."""
    window = max(1, len(rows))
    promoted = LiveMetrics(info.task, window)
    earlier = LiveMetrics(info.task, window)
    if not rows:
        return promoted, earlier
    inputs: list[Any] = [json.loads(text) for _, text, _ in rows]
    try:
        feed, _ = old.feed_rows(inputs)
    except RequestError as exc:
        raise RescoreError(
            f"version {old.version} of model {info.name!r} cannot read the "
            f"logged inputs: {exc}"
        ) from None
    outputs = old.run(feed)
    for (label, _, output), again in zip(rows, outputs, strict=True):
        target = label_target(info, json.loads(label))
        promoted.update(target, output_values(info, json.loads(output)))
        earlier.update(target, again)
    return promoted, earlier
