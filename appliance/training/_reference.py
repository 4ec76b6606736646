"""Reference values of a model's inputs, against which explanations occlude.

They are stored in ``schema.json`` under ``reference``, so the version's
signature covers them and serving needs no training data.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd


def reference_values(
    frame: pd.DataFrame, numeric: list[str], categorical: list[str]
) -> dict[str, Any]:
    """Return the median of each numeric input and the most frequent text of
    each categorical input over the training rows.

    A numeric input missing in every row gets None, and a categorical one
    ``""``: both mean a missing value, as in a request. Ties of the most
    frequent value go to the first value in sorted order.
    """
    values: dict[str, Any] = {}
    for name in numeric:
        median = float(pd.to_numeric(frame[name], errors="coerce").median())
        values[name] = None if math.isnan(median) else median
    for name in categorical:
        present = frame[name][frame[name] != ""].astype(str)
        counts = present.value_counts()
        if counts.empty:
            values[name] = ""
            continue
        top = counts.max()
        values[name] = min(counts[counts == top].index)
    return values
