"""Ordinal codes and rare-category grouping of one text column, with ONNX converters.

scikit-learn's `OrdinalEncoder` treats only None and NaN as missing, while the
appliance marks a missing category as ``""`` in both the training frame and
the ONNX feed (a string tensor cannot hold None). `OrdinalCodes` reads ``""``
as missing, so the native pipeline and the exported graph agree on every
value: training categories, infrequent ones, unseen ones and missing ones.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

MISSING = ""
"""The value that marks a missing category."""


class OrdinalCodes(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """Encode one text column as integer codes, kept as floats.

    Training categories get the codes 0, 1, ... in sorted order. Categories
    seen in fewer than `min_frequency` training rows share the next code.

    Args:
        unknown_value: Code of a category not seen in training.
        missing_value: Code of a missing value (``""``).
        min_frequency: Rows a category needs to get a code of its own.
    """

    def __init__(
        self,
        unknown_value: int = -1,
        missing_value: int = -2,
        min_frequency: int | None = None,
    ) -> None:
        self.unknown_value = unknown_value
        self.missing_value = missing_value
        self.min_frequency = min_frequency

    def fit(self, X: Any, y: Any = None) -> OrdinalCodes:
        """Learn the categories of the single column of `X`."""
        values = _column(X)
        counts = Counter(v for v in values.tolist() if v != MISSING)
        floor = self.min_frequency or 1
        self.categories_ = sorted(v for v, n in counts.items() if n >= floor)
        self.infrequent_categories_ = sorted(v for v, n in counts.items() if n < floor)
        self.mapping_: dict[str, float] = {
            value: float(code) for code, value in enumerate(self.categories_)
        }
        infrequent_code = float(len(self.categories_))
        for value in self.infrequent_categories_:
            self.mapping_[value] = infrequent_code
        self.mapping_[MISSING] = float(self.missing_value)
        self.n_features_in_ = 1
        return self

    def transform(self, X: Any) -> np.ndarray:
        """Return the codes of the single column of `X`, shaped ``(rows, 1)``."""
        unknown = float(self.unknown_value)
        codes = [self.mapping_.get(v, unknown) for v in _column(X).tolist()]
        return np.asarray(codes, dtype=np.float64).reshape(-1, 1)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Return the name of the output column, the input's name."""
        name = "x0" if input_features is None else str(input_features[0])
        return np.asarray([name], dtype=object)


INFREQUENT = "\u0000infrequent"
"""The category that stands for every rare training category."""
UNKNOWN = "\u0000unknown"
"""The category that stands for every category unseen in training."""


class RareCategories(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """Replace rare categories of one text column by `INFREQUENT`.

    Categories seen in fewer than `min_frequency` training rows become
    `INFREQUENT`; categories unseen in training become `UNKNOWN`, which a
    one-hot encoder fitted after this step ignores. skl2onnx 1.20 cannot
    export the infrequent categories of a one-hot encoder that reads a single
    column, so the grouping happens here.

    Args:
        min_frequency: Rows a category needs to keep its own value.
    """

    def __init__(self, min_frequency: int = 1) -> None:
        self.min_frequency = min_frequency

    def fit(self, X: Any, y: Any = None) -> RareCategories:
        """Learn which categories of the single column of `X` are frequent."""
        counts = Counter(_column(X).tolist())
        self.mapping_: dict[str, str] = {
            value: value if n >= self.min_frequency else INFREQUENT
            for value, n in counts.items()
        }
        self.n_features_in_ = 1
        return self

    def transform(self, X: Any) -> np.ndarray:
        """Return the column with rare and unseen categories replaced."""
        values = [self.mapping_.get(v, UNKNOWN) for v in _column(X).tolist()]
        return np.asarray(values, dtype=object).reshape(-1, 1)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Return the name of the output column, the input's name."""
        name = "x0" if input_features is None else str(input_features[0])
        return np.asarray([name], dtype=object)


def _column(X: Any) -> np.ndarray:
    array = np.asarray(X, dtype=object)
    if array.ndim == 2:
        if array.shape[1] != 1:
            raise ValueError(
                f"OrdinalCodes encodes one column, got {array.shape[1]} columns"
            )
        array = array[:, 0]
    return np.asarray([str(v) for v in array.tolist()], dtype=object)


def register_converter() -> None:
    """Register the skl2onnx converters of `OrdinalCodes` and `RareCategories`."""
    from skl2onnx import update_registered_converter

    update_registered_converter(OrdinalCodes, "ApplianceOrdinalCodes", _shape, _convert)
    update_registered_converter(
        RareCategories, "ApplianceRareCategories", _shape_text, _convert_rare
    )


def _shape_text(operator: Any) -> None:
    from skl2onnx.common.data_types import StringTensorType

    rows = operator.inputs[0].get_first_dimension()
    operator.outputs[0].type = StringTensorType([rows, 1])


def _convert_rare(scope: Any, operator: Any, container: Any) -> None:
    grouping: RareCategories = operator.raw_operator
    keys = list(grouping.mapping_)
    container.add_node(
        "LabelEncoder",
        operator.inputs[0].full_name,
        operator.outputs[0].full_name,
        op_domain="ai.onnx.ml",
        op_version=2,
        name=scope.get_unique_operator_name("RareCategories"),
        keys_strings=keys,
        values_strings=[grouping.mapping_[k] for k in keys],
        default_string=UNKNOWN,
    )


def _shape(operator: Any) -> None:
    from skl2onnx.common.data_types import FloatTensorType

    rows = operator.inputs[0].get_first_dimension()
    operator.outputs[0].type = FloatTensorType([rows, 1])


def _convert(scope: Any, operator: Any, container: Any) -> None:
    encoder: OrdinalCodes = operator.raw_operator
    keys = list(encoder.mapping_)
    container.add_node(
        "LabelEncoder",
        operator.inputs[0].full_name,
        operator.outputs[0].full_name,
        op_domain="ai.onnx.ml",
        op_version=2,
        name=scope.get_unique_operator_name("OrdinalCodes"),
        keys_strings=keys,
        values_floats=[encoder.mapping_[k] for k in keys],
        default_float=float(encoder.unknown_value),
    )
