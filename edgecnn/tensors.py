"""LabelledSamples -> model tensors, through the InputSpec's preprocessing in deploy/."""

from __future__ import annotations

import numpy as np

from edgecnn.data.samples import LabelledSamples
from edgecnn.deploy.errors import SpecError
from edgecnn.deploy.preprocess import preprocess_images, preprocess_windows
from edgecnn.deploy.spec import InputSpec


def to_tensors(samples: LabelledSamples, spec: InputSpec, chunk: int = 2048) -> np.ndarray:
    """All samples as one float32 N x H x W x C array (chunked to bound peak memory)."""
    if samples.kind != spec.kind:
        raise SpecError(f"the model takes {spec.kind} input; the data is {samples.kind}")
    out = np.empty((len(samples), *spec.input_shape), dtype=np.float32)
    for start in range(0, len(samples), chunk):
        part = samples.items[start:start + chunk]
        if spec.kind == "image":
            out[start:start + len(part)] = preprocess_images(part, spec)
        else:
            out[start:start + len(part)] = preprocess_windows(np.asarray(part), spec)
    return out
