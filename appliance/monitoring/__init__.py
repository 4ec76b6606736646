"""Monitoring: drift detectors, live metrics, alerts and the retraining policy.

The detectors, statistics and decisions are pure; the store, the webhook
sender, the scheduled jobs (drift, health, rollback watch) and the daemon's
monitoring service do the I/O. Nothing here imports scikit-learn or LightGBM,
so the daemon can use all of it.
"""

from appliance.monitoring._alerts import (
    VERSIONED_SUBJECTS,
    Alert,
    AlertCandidate,
    AlertStatus,
    RequestStats,
    batch_drift_alert,
    drift_event_alerts,
    performance_alert,
    request_alerts,
    versioned_subject,
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
from appliance.monitoring._checks import (
    JOB_ALERT,
    DriftCheck,
    check_drift,
    run_drift_check,
    schedule_drift_checks,
    thresholds,
)
from appliance.monitoring._health import (
    LIVE_METRICS,
    SameRows,
    ServedVersion,
    WatchedDaemon,
    check_health,
    live_metric,
    notify,
    notify_in_background,
    raise_alerts,
    register_daemon,
    resolve_alert,
    resolve_alerts,
    schedule_health_checks,
    schedule_prediction_expiry,
    unregister_daemon,
    watched_daemon,
)
from appliance.monitoring._jobs import (
    JOBS_FILE,
    DuckDBJobStore,
    job_state,
    run_job,
    schedule_interval,
    wait_for_jobs,
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
from appliance.monitoring._rollback import (
    RollbackVerdict,
    last_promotion,
    watch_rollback,
)
from appliance.monitoring._service import (
    ModelInfo,
    MonitoringService,
    label_target,
    output_values,
)
from appliance.monitoring._store import (
    STORE_FILE,
    MonitoringStore,
    RetrainRecord,
    drift_summary,
)
from appliance.monitoring._streaming import (
    CategoryDriftDetector,
    LossDriftDetector,
    NumericDriftDetector,
)
from appliance.monitoring._versions import VersionMetrics
from appliance.monitoring._webhook import send_webhook

__all__ = [
    "Alert",
    "AlertCandidate",
    "AlertStatus",
    "batch_drift",
    "batch_drift_alert",
    "CategoryDriftDetector",
    "check_drift",
    "check_health",
    "chi2_test",
    "decide_promotion",
    "decide_retrain",
    "decide_rollback",
    "Decision",
    "DetectorSettings",
    "drift_event_alerts",
    "drift_summary",
    "DriftCheck",
    "DriftEvent",
    "DriftReport",
    "DriftThresholds",
    "DuckDBJobStore",
    "FeatureDrift",
    "HIGHER_IS_BETTER",
    "JOB_ALERT",
    "job_state",
    "JOBS_FILE",
    "ks_test",
    "last_promotion",
    "live_metric",
    "LIVE_METRICS",
    "LiveMetrics",
    "LossDriftDetector",
    "ModelInfo",
    "MonitoringService",
    "MonitoringStore",
    "notify",
    "notify_in_background",
    "NumericDriftDetector",
    "label_target",
    "output_values",
    "performance_alert",
    "psi_categorical",
    "psi_numeric",
    "raise_alerts",
    "register_daemon",
    "request_alerts",
    "RequestStats",
    "resolve_alert",
    "resolve_alerts",
    "RetrainRecord",
    "roc_auc",
    "RollbackVerdict",
    "row_loss",
    "run_drift_check",
    "run_job",
    "schedule_drift_checks",
    "schedule_health_checks",
    "schedule_prediction_expiry",
    "schedule_interval",
    "send_webhook",
    "SameRows",
    "ServedVersion",
    "STORE_FILE",
    "StreamMonitor",
    "thresholds",
    "training_window",
    "unregister_daemon",
    "VERSIONED_SUBJECTS",
    "versioned_subject",
    "VersionMetrics",
    "watch_rollback",
    "wait_for_jobs",
    "watched_daemon",
    "WatchedDaemon",
]
