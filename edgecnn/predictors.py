"""Keras models behind the engines' ``predict`` contract, and batched prediction.

Evaluation, export verification, parity and the benchmark all get class probabilities
through ``predict_batched(predictor, tensors)``, whether the predictor is an ONNX Runtime /
LiteRT engine (``edgecnn.deploy.engine``) or a Keras model wrapped here.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np


class KerasPredictor:
    """A Keras model as a predictor: ``model(x, training=False)``, float32 out."""

    format = "keras"

    def __init__(self, model, path=None):
        self.model = model
        self.path = path

    @classmethod
    def from_model_dir(cls, model_dir) -> "KerasPredictor":
        return cls(model_dir.load_keras(), model_dir.model_file)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        out = self.model(batch, training=False)
        out = out.numpy() if hasattr(out, "numpy") else np.asarray(out)
        return out.astype(np.float32, copy=False)


class KerasPredictCall(KerasPredictor):
    """The lecture's way of classifying a frame: ``model.predict(x)`` (benchmarked as the
    baseline; it computes exactly what ``model(x)`` does, with Keras's per-call overhead)."""

    format = "keras-predict"

    def predict(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.predict(batch, batch_size=len(batch), verbose=0),
                          dtype=np.float32)


def predict_batched(predictor, tensors: np.ndarray, batch_size: int = 64,
                    log: Callable[[str], None] | None = None,
                    what: str = "evaluating") -> np.ndarray:
    """Class probabilities for all tensors in batches (bounded memory), with a progress
    line to ``log`` about every 2 seconds."""
    outputs = []
    last = time.perf_counter()
    for start in range(0, len(tensors), batch_size):
        outputs.append(predictor.predict(tensors[start:start + batch_size]))
        now = time.perf_counter()
        if log is not None and now - last > 2.0:
            log(f"{what} {min(start + batch_size, len(tensors))}/{len(tensors)}")
            last = now
    if not outputs:
        return np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(outputs).astype(np.float32, copy=False)
