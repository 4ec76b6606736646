"""The prediction log: every served prediction, written in the background."""

from appliance.predictions._journal import journal_dir, read_segment, segment_files
from appliance.predictions._log import PredictionLog
from appliance.predictions._rows import LogEntry, entries_to_table
from appliance.predictions._store import (
    LOG_SCHEMA,
    create_table,
    labelled,
    newest_inputs,
    newest_logged_inputs,
    parquet_dir,
    query,
    utc_text,
)

__all__ = [
    "LOG_SCHEMA",
    "LogEntry",
    "PredictionLog",
    "create_table",
    "entries_to_table",
    "journal_dir",
    "labelled",
    "newest_inputs",
    "newest_logged_inputs",
    "parquet_dir",
    "query",
    "read_segment",
    "segment_files",
    "utc_text",
]
