"""Training: frames, pipelines, search, evaluation, ONNX export and registration."""

from appliance.training._environment import code_version, package_versions
from appliance.training._frame import TrainingWindow
from appliance.training._train import PARITY_TOLERANCE, TrainResult, train_model
from appliance.training._trained_rows import sample_trained_rows

__all__ = [
    "PARITY_TOLERANCE",
    "TrainResult",
    "TrainingWindow",
    "code_version",
    "package_versions",
    "sample_trained_rows",
    "train_model",
]
