"""Declarations of the route parameters that several handlers share.

Litestar 2.25 warns with `LitestarDeprecationWarning` about each handler
parameter whose source, path or query, it infers, because Litestar 3 no longer
infers it. So every route handler declares each parameter with `PathParameter`
or `QueryParameter`. The aliases here declare the parameters of several routes
once, with the description that the OpenAPI document shows.
"""

from __future__ import annotations

from typing import Annotated

from litestar.params import PathParameter, QueryParameter

ModelName = Annotated[str, PathParameter(description="Name of the model.")]
"""The ``{name}`` path segment of the model routes."""
DatasetName = Annotated[str, PathParameter(description="Name of the dataset.")]
"""The ``{name}`` path segment of the dataset routes."""
ModelFilter = Annotated[
    str | None,
    QueryParameter(
        description="Only the records of this model, or of every model when absent."
    ),
]
"""An optional query parameter that keeps the records of one model."""
VersionReference = Annotated[
    str | None,
    QueryParameter(
        description="Version number or alias. The champion when absent, which "
        "is the latest version while none was promoted."
    ),
]
"""An optional query parameter that names a registered model version."""
