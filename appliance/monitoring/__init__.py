"""Monitoring: drift detectors, live metrics, alerts and the retraining policy.

The detectors, statistics and decisions are pure; `MonitoringStore` and
`send_webhook` are the only parts that do I/O. Nothing here imports
scikit-learn or LightGBM, so the daemon can use all of it.
"""

from appliance.monitoring._alerts import (
    Alert,
    AlertCandidate,
    AlertStatus,
    batch_drift_alert,
    drift_event_alerts,
    performance_alert,
    service_alerts,
)
from appliance.monitoring._batch import (
    DriftReport,
    DriftThresholds,
    FeatureDrift,
    batch_drift,
    chi2_test,
    ks_test,
    psi_categorical,
    psi_numeric,
)
from appliance.monitoring._checks import check_drift, schedule_drift_checks, thresholds
from appliance.monitoring._jobs import (
    JOBS_FILE,
    DuckDBJobStore,
    run_job,
    schedule_interval,
)
from appliance.monitoring._monitor import (
    DetectorSettings,
    DriftEvent,
    StreamMonitor,
)
from appliance.monitoring._performance import LiveMetrics, roc_auc, row_loss
from appliance.monitoring._policy import (
    HIGHER_IS_BETTER,
    Decision,
    decide_promotion,
    decide_retrain,
    decide_rollback,
    training_window,
)
from appliance.monitoring._service import ModelInfo, MonitoringService, output_values
from appliance.monitoring._store import (
    STORE_FILE,
    MonitoringStore,
    RetrainRecord,
    drift_summary,
)
from appliance.monitoring._streaming import (
    CategoryDriftDetector,
    MeanDriftDetector,
    NumericDriftDetector,
)
from appliance.monitoring._webhook import send_webhook

__all__ = [
    "Alert",
    "AlertCandidate",
    "AlertStatus",
    "CategoryDriftDetector",
    "Decision",
    "DetectorSettings",
    "DriftEvent",
    "DriftReport",
    "DriftThresholds",
    "DuckDBJobStore",
    "FeatureDrift",
    "HIGHER_IS_BETTER",
    "JOBS_FILE",
    "LiveMetrics",
    "MeanDriftDetector",
    "ModelInfo",
    "MonitoringService",
    "MonitoringStore",
    "NumericDriftDetector",
    "RetrainRecord",
    "STORE_FILE",
    "StreamMonitor",
    "batch_drift",
    "batch_drift_alert",
    "check_drift",
    "chi2_test",
    "decide_promotion",
    "decide_retrain",
    "decide_rollback",
    "drift_event_alerts",
    "drift_summary",
    "ks_test",
    "output_values",
    "performance_alert",
    "psi_categorical",
    "psi_numeric",
    "roc_auc",
    "row_loss",
    "run_job",
    "schedule_drift_checks",
    "schedule_interval",
    "send_webhook",
    "service_alerts",
    "thresholds",
    "training_window",
]
