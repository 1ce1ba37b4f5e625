"""``edgecnn eval``: accuracy, per-class metrics and confusion matrix of a model directory
(Keras) or of one format of a bundle, on a labelled folder or recordings."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from edgecnn.console import stderr_line
from edgecnn.data import load_dataset
from edgecnn.deploy.bundle import Bundle
from edgecnn.deploy.errors import DataError, InputError
from edgecnn.deploy.spec import DEFAULT_CHANNEL
from edgecnn.metrics import classification_metrics
from edgecnn.modeldir import ModelDir, is_model_dir
from edgecnn.predictors import KerasPredictor, predict_batched
from edgecnn.tensors import to_tensors


def open_predictor(model: str | Path, fmt: str | None = None, threads: int = 1,
                   trust=None):
    """(predictor, spec, task, description) for a model directory or a bundle/shipped name
    (``trust``: the keys a bundle must be signed by, see ``Bundle.open``)."""
    if is_model_dir(model):
        if fmt not in (None, "keras"):
            raise InputError(f"{model} is a Keras model directory; --format {fmt} needs a "
                             "bundle (make one with 'edgecnn export')")
        if trust is not None and trust.required:
            raise InputError(f"{model} is a model directory, which is never signed, and "
                             "signatures are required (--trusted-key or EDGECNN_TRUSTED_KEYS): "
                             "evaluate its signed bundle, or run without them")
        model_dir = ModelDir.open(model)
        task = model_dir.manifest.get("training", {}).get("task")
        return (KerasPredictor.from_model_dir(model_dir), model_dir.spec, task,
                f"{model} (keras)")
    from edgecnn.deploy.engine import EngineOptions, open_engine

    bundle = Bundle.open(model, trust)
    fmt = fmt or bundle.default_format()
    engine = open_engine(bundle, fmt, EngineOptions(threads=threads))
    return engine, bundle.spec, bundle.manifest.get("task"), f"{bundle.path} ({fmt})"


def model_channel(spec, loader_options: dict) -> dict:
    """``loader_options`` with the channel the model was trained on, unless one is given:
    a model trained with ``--channel acc_y`` is measured on acc_y, as the runtime reads it."""
    given = loader_options.get("channel")
    if spec.kind != "signal" or given not in (None, DEFAULT_CHANNEL) or \
            spec.signal.channel == DEFAULT_CHANNEL:
        return loader_options
    return {**loader_options, "channel": spec.signal.channel}


def load_for_model(spec, task: str | None, data: str | Path, *, stride: int | None = None,
                   **loader_options):
    """Labelled data read with the model's own spec and label order.

    The one place that decides how a folder is cut for measuring (eval, parity, export's
    held-out check): signal windows every quarter window (``measurement_stride``) unless a
    stride is given, so eval and parity count the same windows of the same folder."""
    if task is None:
        raise InputError("the model does not record its task; pass --task")
    from edgecnn.tasks import get_task

    kind = get_task(task).kind
    if kind != spec.kind:
        raise InputError(f"the model takes {spec.kind} input and --task {task} reads "
                         f"{kind} data: give a task of the model's kind (or leave --task "
                         "out to use the model's own)")
    if spec.kind == "signal" and stride is None:
        from edgecnn.data.windows import measurement_stride

        stride = measurement_stride(spec.signal)
    samples = load_dataset(task, data, spec, stride=stride, labels=spec.labels,
                           **model_channel(spec, loader_options))
    if len(samples) == 0:
        raise DataError(f"no usable samples in {data} ({len(samples.skipped)} files skipped)")
    return samples


def evaluate(model: str | Path, data: str | Path, *, fmt: str | None = None,
             task: str | None = None, stride: int | None = None, threads: int = 1,
             batch_size: int = 64, log: Callable[[str], None] = stderr_line, trust=None,
             **loader_options) -> dict:
    predictor, spec, model_task, description = open_predictor(model, fmt, threads, trust)
    samples = load_for_model(spec, task or model_task, data, stride=stride, **loader_options)
    log(f"evaluating {description} on {len(samples)} samples from {data}")
    tensors = to_tensors(samples, spec)
    started = time.perf_counter()
    probabilities = predict_batched(predictor, tensors, batch_size, log)
    seconds = time.perf_counter() - started
    metrics = classification_metrics(samples.labels, probabilities.argmax(axis=1), spec.labels,
                                     skipped=len(samples.skipped))
    metrics.update({"model": str(model), "format": predictor.format, "data": str(data),
                    "task": task or model_task, "seconds": round(seconds, 3),
                    "skipped_files": [s.path for s in samples.skipped]})
    return metrics
