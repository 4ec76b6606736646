"""Retraining inside the daemon: decisions, challenger runs and promotion.

`RetrainService` runs one job per model at a time off the event loop, on a
drift alarm, a cron schedule or an operator's request. The training libraries
are imported only when a job trains, so importing this package loads neither
scikit-learn nor LightGBM.
"""

from appliance.retraining._job import run_offline
from appliance.retraining._scoring import (
    effective_metric,
    record_dict,
    score,
    window_bounds,
)
from appliance.retraining._service import (
    TRIGGERS,
    RetrainService,
    run_scheduled,
    schedule_retraining,
)

__all__ = [
    "TRIGGERS",
    "RetrainService",
    "effective_metric",
    "record_dict",
    "run_offline",
    "run_scheduled",
    "schedule_retraining",
    "score",
    "window_bounds",
]
