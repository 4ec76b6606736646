"""Promotion and rollback of model versions, for the CLI and the daemon.

A version is loaded and its sha256 checked before any alias moves, so a
corrupted artifact is rejected and the previous champion keeps serving. When
a `ModelSet` is attached (inside the daemon), a change of the champion is
activated at once without a restart.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

from appliance.serving import ModelSet, OnnxModel
from appliance.storage import (
    CHAMPION,
    AliasEvent,
    Catalog,
    ModelVersion,
    champion_models,
    get_version,
    rollback_alias,
    rollback_target,
    set_alias,
    verify_artifact,
)

logger = logging.getLogger(__name__)


class Promoter:
    """Moves aliases in the catalog and, with `models`, swaps the served model.

    Args:
        home: The appliance home holding the catalog.
        models: The daemon's served models; None outside the daemon.
        threads: Intra-op threads of each onnxruntime session it loads.
    """

    def __init__(self, home: Path, models: ModelSet | None = None, threads: int = 1):
        self.home = home
        self.models = models
        self.threads = threads

    def promote(
        self, model: str, version: int, alias: str, actor: str, reason: str
    ) -> dict[str, Any]:
        """Point `alias` at `version` after checking its artifact.

        Raises:
            NotFoundError: The model or version does not exist.
            IntegrityError: The artifact does not match its sha256; no alias
                changed.
        """
        with Catalog(self.home) as catalog:
            target = get_version(catalog, model, version)
            loaded = self._check(target, alias)
            event = set_alias(catalog, model, alias, version, actor, reason)
        return self._apply(event, loaded)

    def rollback(
        self, model: str, alias: str, actor: str, reason: str
    ) -> dict[str, Any]:
        """Point `alias` back at its previous version after checking it.

        Raises:
            RegistryError: The alias has no previous version.
            IntegrityError: The previous version's artifact is corrupted.
        """
        with Catalog(self.home) as catalog:
            target = get_version(catalog, model, rollback_target(catalog, model, alias))
            loaded = self._check(target, alias)
            event = rollback_alias(catalog, model, actor, reason, alias)
        return self._apply(event, loaded)

    def reload(self) -> list[dict[str, Any]]:
        """Serve the current champion of every model, as the catalog records it.

        A champion whose artifact fails its check is logged and skipped, and
        the version served before stays.
        """
        if self.models is None:
            return []
        with Catalog(self.home, read_only=True) as catalog:
            champions = champion_models(catalog)
        changed = []
        for version in champions:
            served = self.models.models.get(version.model)
            if served is not None and served.version == version.version:
                continue
            try:
                loaded = self.load(version)
            except Exception:
                logger.exception(
                    "model reload failed model=%s version=%d",
                    version.model,
                    version.version,
                )
                continue
            self.models.activate(version.model, loaded)
            changed.append({"model": version.model, "version": version.version})
        return changed

    def load_version(self, model: str, version: int) -> OnnxModel:
        """Load version `version` of `model`, checking its sha256."""
        with Catalog(self.home, read_only=True) as catalog:
            found = get_version(catalog, model, version)
        return self.load(found)

    def load(self, version: ModelVersion) -> OnnxModel:
        """Load a version's ONNX session after checking its sha256."""
        return OnnxModel.load(version.path, version.sha256, self.threads)

    def _check(self, version: ModelVersion, alias: str) -> OnnxModel | None:
        if self.models is not None and alias == CHAMPION:
            return self.load(version)
        verify_artifact(version)
        return None

    def _apply(self, event: AliasEvent, loaded: OnnxModel | None) -> dict[str, Any]:
        result = asdict(event)
        result["changed_at"] = event.changed_at.isoformat()
        if loaded is not None and self.models is not None:
            self.models.activate(event.model, loaded)
            result["serving"] = loaded.version
        return result
