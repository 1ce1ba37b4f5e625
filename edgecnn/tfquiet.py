"""Import TensorFlow/Keras without the wall of start-up noise on a CPU-only machine."""

from __future__ import annotations

import os
import warnings


def quiet_tensorflow() -> None:
    """Call before the first TensorFlow import (training, export, benchmarks)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")
    warnings.filterwarnings("ignore", message=".*`shuffle=True` was passed.*")
    warnings.filterwarnings("ignore", category=DeprecationWarning, module="tf2onnx")
    try:
        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)
    except ImportError:
        pass
