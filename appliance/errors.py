"""Exceptions raised by the appliance.

Every error the appliance raises on purpose derives from `ApplianceError`, so a
caller can catch one family and show its message. The tree::

    ApplianceError
    ├── ConfigError          the configuration file or a setting is invalid
    │   └── ServingConfigError  the daemon's configuration keeps a model from
    │                           being served, such as a view whose SQL fails
    ├── StorageError         the catalog or the lake cannot be read or written
    │   └── ViewDataError    a feature view's SQL binds but fails on the rows
    │                        of the dataset versions it reads
    ├── IngestError          an input file cannot be read or is empty
    ├── NotFoundError        a dataset, model, version or run does not exist
    ├── TrainingError        a model cannot be trained on the data given
    ├── ExportError          ONNX conversion failed or lost parity
    ├── IntegrityError       a stored artifact does not match its hash
    │   └── SignatureError   a model version's signature is missing or invalid
    ├── ColumnKeyError       the column key is missing, invalid or not the one
    │                        that encrypted the stored values
    ├── RegistryError        an alias change the registry rejects
    ├── ApiKeyError          an API key change the key store rejects
    ├── JobRunningError      a job of the same kind and model is running
    ├── InUseError           a dataset to remove is still used, or its buffer
    │                        holds rows that no version stores
    ├── RequestError         a prediction request does not fit the model
    │   └── LimitError       a request above the configured rows or bytes
    ├── DaemonRunningError   another daemon already holds the home
    └── DaemonError          the running daemon cannot be reached or failed

`TrainingStopped` is outside the tree. It derives from `BaseException`, like
`KeyboardInterrupt`, so that it passes the ``except Exception`` handlers
between the stop check and the training's caller.

Messages are one or two sentences that name the thing at fault and, where
there is one, the fix. A value from a request or a file is shown with `shown`,
so a huge value cannot flood a response or the log.
"""

from __future__ import annotations

from typing import Any

SHOWN_CHARACTERS = 80
"""Maximum characters of a value that a message shows, before the cut mark."""


def cut(text: str, limit: int = SHOWN_CHARACTERS) -> str:
    """Return `text`, or its first `limit` characters and its length when longer.

    >>> cut("x" * 100, 5)
    'xxxxx... (100 characters)'
    """
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} characters)"


def one_line(text: str) -> str:
    """Return `text` with each line break and the blank space around it as one space.

    >>> one_line("Binder Error: not found\nCandidate bindings: a")
    'Binder Error: not found Candidate bindings: a'
    """
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def shown(value: Any, limit: int = SHOWN_CHARACTERS) -> str:
    """Return ``repr(value)`` for a message, cut as `cut` does.

    A text is cut after `limit` characters of the text itself, and only that
    head is converted, so a value of megabytes costs no more than a short one.

    >>> shown("abc" * 40, 8)
    "'abcabcab... (120 characters)"
    """
    if isinstance(value, str):
        if len(value) <= limit:
            return repr(value)
        # The head's repr without its closing quote, which the cut mark replaces.
        return f"{repr(value[:limit])[:-1]}... ({len(value)} characters)"
    return cut(repr(value), limit)


class ApplianceError(Exception):
    """Root of every error the appliance raises on purpose."""


class ConfigError(ApplianceError):
    """Invalid configuration file, key or value."""


class ServingConfigError(ConfigError):
    """The daemon's own configuration keeps a model from being served now.

    The daemon returns 503 for such a request, because the fault is the
    server's and no change of the request avoids it.
    """


class StorageError(ApplianceError):
    """The catalog or the lake cannot be read or written."""


class ViewDataError(StorageError):
    """A feature view's SQL binds but fails on the rows it reads, or a dataset
    it reads has no version.

    Examples are a value that the SQL cannot convert, such as text that is
    no time under ``CAST(... AS TIMESTAMPTZ)``, and a dataset removed while a
    registered model joins a view over it. These are faults of the data, so
    the daemon returns 503 for the models that join the view.
    """


class IngestError(ApplianceError):
    """An input file that cannot be ingested."""


class NotFoundError(ApplianceError):
    """A dataset, model, version or run that does not exist."""


class TrainingError(ApplianceError):
    """Data or settings that a model cannot be trained on."""


class ExportError(ApplianceError):
    """An ONNX conversion that failed or does not match the native model."""


class IntegrityError(ApplianceError):
    """A stored artifact whose bytes do not match the recorded hash."""


class SignatureError(IntegrityError):
    """A model version whose signature is missing, invalid or untrusted, or
    whose files differ from the signed hashes."""


class ColumnKeyError(ApplianceError):
    """A column key that is missing, invalid or not the one that encrypted the data."""


class RegistryError(ApplianceError):
    """An alias name or alias change that the registry rejects."""


class ApiKeyError(ApplianceError):
    """An API key change the key store rejects, such as a taken name."""


class AliasMovedError(RegistryError):
    """An alias change made only while the alias points at a version it left."""


class JobRunningError(ApplianceError):
    """A job was requested while another of the same model runs.

    Attributes:
        detail: JSON-ready fields naming the running job (``job_id``).
    """

    def __init__(self, message: str, **detail: Any) -> None:
        super().__init__(message)
        self.detail = detail


class InUseError(ApplianceError):
    """A removal that would break what depends on the thing, or lose rows."""


class RequestError(ApplianceError):
    """A prediction request that does not fit the model's input schema.

    Attributes:
        detail: JSON-ready fields that locate the problem (model, row, column).
    """

    def __init__(self, message: str, **detail: Any) -> None:
        super().__init__(message)
        self.detail = detail


class LimitError(RequestError):
    """A prediction request above the configured maximum of rows or bytes."""


class MediaTypeError(RequestError):
    """A request body in a format that its route does not accept."""


class DaemonRunningError(ApplianceError):
    """Another daemon already holds the home."""


class DaemonError(ApplianceError):
    """The running daemon cannot be reached, or it rejected a request.

    Attributes:
        status: HTTP status of the daemon's response, 0 when none arrived.
        refused: The daemon's port refused the connection, as it does once
            the daemon has stopped.
    """

    def __init__(self, message: str, status: int = 0, refused: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.refused = refused


class TrainingStopped(BaseException):
    """A training that ended early because its stop event was set.

    Not an `Exception`, so that scikit-learn's search, which records a
    candidate's `Exception` as an unscored trial and goes on, lets it through.
    """
