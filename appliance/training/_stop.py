"""Cooperative stop of a training, checked between its steps.

The daemon sets a `threading.Event` when it stops. A training given that event
checks it between pipeline steps, before each cross-validation fold and search
candidate, and after each LightGBM boosting iteration, and raises
`TrainingStopped` once it is set. A step without a check, such as the ONNX
export or reading the frame, runs to its end first.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from appliance.errors import TrainingStopped


class StopCheck:
    """Check of a stop event that raises `TrainingStopped` once it is set.

    Without an event the check does nothing. scikit-learn clones an estimator
    by deep-copying its parameters, and a `threading.Event` cannot be copied,
    so a copy of a check is the check itself.
    """

    def __init__(self, event: threading.Event | None = None) -> None:
        self.event = event

    def __call__(self, where: str) -> None:
        """Raise `TrainingStopped` naming `where` when the event is set."""
        if self.event is not None and self.event.is_set():
            raise TrainingStopped(f"training stopped {where}")

    def __deepcopy__(self, memo: dict[int, Any]) -> StopCheck:
        return self

    def fit_params(self, algorithm: str) -> dict[str, Any]:
        """Return the pipeline's fit parameters that check after each boosting
        iteration; none for algorithms other than LightGBM or without an event."""
        if self.event is None or algorithm != "lightgbm":
            return {}
        return {"estimator__callbacks": [self._lightgbm_callback()]}

    def _lightgbm_callback(self) -> Callable[[Any], None]:
        def check_iteration(env: Any) -> None:
            self(f"at boosting iteration {env.iteration}")

        return check_iteration
