"""The set of served models, swapped atomically when a version is promoted.

Readers take the current mapping of model name to `OnnxModel` without a lock.
`activate` builds a new mapping and replaces the reference in one assignment,
so a request that already holds a model finishes on it while new requests get
the new version: nothing fails in flight and nothing restarts.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from types import MappingProxyType

from appliance.errors import NotFoundError
from appliance.serving._onnx import OnnxModel

logger = logging.getLogger(__name__)

VersionLoader = Callable[[str, int], OnnxModel]
"""Load version N of a model, verifying its artifact; raises NotFoundError."""


class ModelSet:
    """The served version of each model, plus every other version loaded so far.

    Args:
        models: The served version of each model, by name.
        loader: Loads a version on its first request by number; without one,
            only versions already loaded can be requested.
    """

    def __init__(
        self, models: Mapping[str, OnnxModel], loader: VersionLoader | None = None
    ) -> None:
        self._served: Mapping[str, OnnxModel] = MappingProxyType(dict(models))
        self._versions = {(m.name or n, m.version): m for n, m in models.items()}
        self._loader = loader
        self._lock = threading.Lock()
        self.loaded_at = time.time()

    @property
    def models(self) -> Mapping[str, OnnxModel]:
        """Return the served version of each model (a read-only snapshot)."""
        return self._served

    def get(self, name: str, version: int | None = None) -> OnnxModel:
        """Return the served version of `name`, or its version `version`.

        Raises:
            NotFoundError: No model of that name is served, or the version
                does not exist.
            IntegrityError: The requested version's artifact is corrupted.
        """
        served = self._served
        if name not in served:
            known = ", ".join(sorted(served)) or "none"
            raise NotFoundError(f"model {name!r} is not served; served models: {known}")
        if version is None or served[name].version == version:
            return served[name]
        return self._version(name, version)

    def activate(self, name: str, model: OnnxModel) -> OnnxModel | None:
        """Serve `model` as model `name` from the next request on.

        Returns:
            The version served before, or None for a new model.
        """
        with self._lock:
            previous = self._served.get(name)
            self._versions[(name, model.version)] = model
            served = dict(self._served)
            served[name] = model
            self._served = MappingProxyType(served)
        logger.info(
            "model activated model=%s version=%d previous=%s",
            name,
            model.version,
            previous.version if previous else None,
        )
        return previous

    def _version(self, name: str, version: int) -> OnnxModel:
        cached = self._versions.get((name, version))
        if cached is not None:
            return cached
        if self._loader is None:
            raise NotFoundError(f"model {name!r} version {version} is not loaded")
        model = self._loader(name, version)
        with self._lock:
            # NOTE: every version requested by number stays loaded until the
            # daemon stops; a box with many versions may want an LRU bound.
            model = self._versions.setdefault((name, version), model)
        logger.info("model version loaded model=%s version=%d", name, version)
        return model
