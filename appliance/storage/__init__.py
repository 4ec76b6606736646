"""Storage: the DuckDB catalog, the Parquet lake, runs and model versions."""

from appliance.storage._catalog import Catalog
from appliance.storage._datasets import (
    DatasetVersion,
    IngestResult,
    ingest,
    latest_version,
    list_versions,
)
from appliance.storage._models import (
    MODEL_FILE,
    SCHEMA_FILE,
    ModelVersion,
    get_version,
    latest_models,
    list_models,
    register_version,
)
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
    "IngestResult",
    "ModelVersion",
    "Run",
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
