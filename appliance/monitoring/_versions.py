"""Live metrics per model version, kept apart so versions can be compared.

The streaming monitor of a model follows the served version and starts afresh
when it changes. The live performance check and the rollback watch need the
window of each version instead: the new champion's labels since its promotion
and, when the previous champion cannot score the new one's rows, its labels
from before the promotion. `VersionMetrics` keeps one `LiveMetrics` window per
``(model, version)``, fed with each label by the version whose prediction it
scores.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence

from appliance.errors import StorageError
from appliance.monitoring._performance import LiveMetrics

_STATE_FORMAT = 1
"""Version of the serialized state; a mismatch starts empty windows."""

_UNREADABLE = (
    pickle.UnpicklingError,
    EOFError,
    ImportError,
    LookupError,
    AttributeError,
    TypeError,
    ValueError,
)
"""Exceptions that unpickling damaged or foreign bytes raises."""

MAX_VERSIONS = 8
"""Windows kept per model; the least recently fed versions are dropped first."""


class VersionMetrics:
    """One live metrics window per model version.

    Args:
        window: Labelled predictions kept per version.

    >>> versions = VersionMetrics(window=100)
    >>> _ = versions.update("m", 2, "classification", 1, [0.3, 0.7])
    >>> versions.metrics("m", 2, min_auc_labels=1)["accuracy"]
    1.0
    >>> versions.metrics("m", 1) is None
    True
    """

    def __init__(self, window: int = 5000) -> None:
        self.window = window
        self._windows: dict[tuple[str, int], LiveMetrics] = {}

    def update(
        self,
        model: str,
        version: int,
        task: str,
        label: float,
        output: Sequence[float] | float,
    ) -> VersionMetrics:
        """Add one label with the output that `version` of `model` gave."""
        key = (model, version)
        live = self._windows.pop(key, None) or LiveMetrics(task, self.window)
        # Re-inserting keeps the dict ordered from least to most recently fed.
        self._windows[key] = live.update(label, output)
        kept = [k for k in self._windows if k[0] == model]
        for old in kept[: max(0, len(kept) - MAX_VERSIONS)]:
            del self._windows[old]
        return self

    def metrics(
        self, model: str, version: int, min_auc_labels: int = 200
    ) -> dict[str, float | int | None] | None:
        """Return the live metrics of one version, or None before its first label."""
        live = self._windows.get((model, version))
        return None if live is None else live.metrics(min_auc_labels)

    def versions(self, model: str) -> list[int]:
        """Return the versions of `model` with a window, least recently fed first."""
        return [version for name, version in self._windows if name == model]

    def to_bytes(self) -> bytes:
        """Serialize every window."""
        return pickle.dumps(
            (_STATE_FORMAT, self.window, self._windows), pickle.HIGHEST_PROTOCOL
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> VersionMetrics:
        """Restore windows saved by `to_bytes`; the bytes must be our own.

        Raises:
            StorageError: The bytes are not windows of this format.
        """
        try:
            version, window, windows = pickle.loads(data)
        except _UNREADABLE as exc:
            raise StorageError(
                f"stored live metrics per version cannot be read "
                f"({type(exc).__name__}: {exc}); delete them to start empty windows"
            ) from None
        if version != _STATE_FORMAT or not isinstance(windows, dict):
            raise StorageError(
                f"stored live metrics per version have format {version!r}, "
                f"expected {_STATE_FORMAT}; delete them to start empty windows"
            )
        restored = cls(window)
        restored._windows = windows
        return restored
