"""Response body schemas of routes that write their JSON bodies themselves.

The routes encode plain dicts with msgspec for speed, so Litestar receives only
bytes and would document a string. These Structs document the bodies in the
OpenAPI document, through ``ResponseSpec`` or `describe_responses`, and the
daemon tests compare their fields with real responses.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import UNSET, Meta, UnsetType


class ErrorBody(msgspec.Struct):
    """Body of every error response, from a 400 to a 503."""

    error: Annotated[str, Meta(description="What failed, and what to do next.")]
    request_id: Annotated[
        str,
        Meta(description="Id of this response; the daemon's log line names it."),
    ]
    type: (
        Annotated[
            str,
            Meta(
                description="Error class, such as RequestError or NotFoundError. "
                "Absent for errors of the HTTP layer, such as an unknown route or a "
                "query parameter of the wrong type."
            ),
        ]
        | UnsetType
    ) = UNSET
    model: Annotated[str, Meta(description="Model the request names.")] | UnsetType = (
        UNSET
    )
    dataset: (
        Annotated[str, Meta(description="Dataset the request names.")] | UnsetType
    ) = UNSET
    row: (
        Annotated[
            int, Meta(description="Index of the rejected row in the request, from 0.")
        ]
        | UnsetType
    ) = UNSET
    column: (
        Annotated[str, Meta(description="Column of the rejected value.")] | UnsetType
    ) = UNSET
    limit: (
        Annotated[int, Meta(description="The configured maximum a request exceeded.")]
        | UnsetType
    ) = UNSET
    parameters: (
        Annotated[list[str], Meta(description="Query parameters that were rejected.")]
        | UnsetType
    ) = UNSET
    job_id: (
        Annotated[str, Meta(description="Id of the running job that blocks this one.")]
        | UnsetType
    ) = UNSET


class Prediction(msgspec.Struct):
    """Prediction of one row: label and probabilities, or value."""

    label: (
        Annotated[Any, Meta(description="Predicted class of a classifier.")] | UnsetType
    ) = UNSET
    probabilities: (
        Annotated[
            dict[str, float],
            Meta(description="Probability of each class of a classifier, by class."),
        ]
        | UnsetType
    ) = UNSET
    value: (
        Annotated[
            float | None,
            Meta(description="Predicted value of a regression model."),
        ]
        | UnsetType
    ) = UNSET


class PredictResult(msgspec.Struct):
    """Predictions of a JSON request, in the order of its rows."""

    model: str
    version: Annotated[int, Meta(description="Model version that predicted.")]
    request_id: Annotated[
        str,
        Meta(
            description="Id of the request; labels sent to the feedback route name it."
        ),
    ]
    predictions: list[Prediction]
    warnings: (
        Annotated[
            list[str],
            Meta(description="Request columns that the model ignored, when any."),
        ]
        | UnsetType
    ) = UNSET


class TrainResult(msgspec.Struct):
    """A trained, exported and registered model version."""

    run_id: str
    model: str
    version: int
    dataset_version: Annotated[
        str, Meta(description="Dataset version the model was trained on.")
    ]
    metrics: Annotated[dict[str, float], Meta(description="Holdout metrics, by name.")]
    parity: Annotated[
        float,
        Meta(
            description="Largest difference between the ONNX and the native "
            "model's predictions on the holdout rows."
        ),
    ]
    rows_train: int
    rows_test: int
    path: Annotated[str, Meta(description="Folder of the version's files.")]
    sha256: Annotated[str, Meta(description="Hash of the ONNX file.")]
    served: Annotated[
        bool,
        Meta(
            description="Whether the daemon serves the new version now; false "
            "while a promoted champion serves."
        ),
    ]
    trials: Annotated[
        int, Meta(description="Child runs of the search; 0 without a search.")
    ]
    warnings: list[str]


class Traffic(msgspec.Struct):
    """Prediction requests in the last minute, or since start when shorter."""

    window_seconds: float
    requests: int
    requests_per_second: float
    error_rate: Annotated[
        float | None,
        Meta(
            description="Share of requests completed with an error status; "
            "null without requests."
        ),
    ]
    p50_ms: float | None
    p99_ms: float | None


class ServedModel(msgspec.Struct):
    """A served model version."""

    model: str
    version: int
    task: str


class ScheduledJob(msgspec.Struct):
    """A scheduled job and its last recorded run."""

    id: str
    name: str
    trigger: str
    next_run_at: str | None
    last_run_at: str | None
    last_outcome: str | None


class PredictionLogStatus(msgspec.Struct):
    """Rows of the prediction log by state."""

    queued: int
    written: int
    spilled: int


class Overview(msgspec.Struct):
    """Summary of the daemon for the overview screen of the terminal UI."""

    status: Annotated[str, Meta(description="ok, or starting before ready.")]
    pid: int
    started_at: Annotated[str, Meta(description="Start time, ISO 8601 in UTC.")]
    uptime_seconds: float
    traffic: Traffic
    models: list[ServedModel]
    jobs: list[ScheduledJob]
    prediction_log: PredictionLogStatus
