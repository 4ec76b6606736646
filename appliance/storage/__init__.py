"""Storage: the DuckDB catalog, the Parquet lake, runs and model versions."""

from appliance.storage._buffer import IngestBuffer
from appliance.storage._catalog import Catalog
from appliance.storage._datasets import (
    DatasetVersion,
    Mode,
    apply_retention,
    diff_versions,
    get_dataset_version,
    latest_version,
    list_versions,
    scan_sql,
)
from appliance.storage._ingest import IngestResult, ingest, stored_contract
from appliance.storage._models import (
    MODEL_FILE,
    SCHEMA_FILE,
    ModelVersion,
    get_version,
    latest_models,
    list_models,
    register_version,
)
from appliance.storage._quarantine import QuarantinedRow, list_quarantine
from appliance.storage._runs import (
    Run,
    fail_run,
    finish_run,
    get_run,
    list_runs,
    start_run,
)

__all__ = [
    "MODEL_FILE",
    "SCHEMA_FILE",
    "Catalog",
    "DatasetVersion",
    "IngestBuffer",
    "IngestResult",
    "Mode",
    "ModelVersion",
    "QuarantinedRow",
    "Run",
    "apply_retention",
    "diff_versions",
    "get_dataset_version",
    "list_quarantine",
    "scan_sql",
    "stored_contract",
    "fail_run",
    "finish_run",
    "get_run",
    "get_version",
    "ingest",
    "latest_models",
    "latest_version",
    "list_models",
    "list_runs",
    "list_versions",
    "register_version",
    "start_run",
]
