"""edgecnn.deploy: the lean line-side runtime (numpy, scipy, OpenCV, ONNX Runtime).

It owns the preprocessing contract (InputSpec) and its implementation; training and export
import them from here. Nothing in this package imports TensorFlow.
"""

from .errors import (
                     BundleError,
                     CheckFailed,
                     DataError,
                     EdgecnnError,
                     InputError,
                     SourceError,
                     SpecError,
)
from .spec import ImageSpec, InputSpec, SignalSpec

__all__ = [
    "BundleError", "CheckFailed", "DataError", "EdgecnnError", "InputError", "SourceError",
    "SpecError", "ImageSpec", "InputSpec", "SignalSpec",
]
