"""Training: frames, pipelines, metrics, ONNX export and registration."""

from appliance.training._train import PARITY_TOLERANCE, TrainResult, train_model

__all__ = ["PARITY_TOLERANCE", "TrainResult", "train_model"]
