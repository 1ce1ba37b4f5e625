"""``edgecnn train``: data -> InputSpec -> model -> model directory with a report.

Deterministic (one seed for split, initialisation and augmentation order), validation held
out from the training data without leakage (see ``edgecnn.splits``), balanced class weights,
best weights kept by validation loss with early stopping, one progress line per epoch.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from edgecnn.data import load_dataset
from edgecnn.deploy.errors import InputError
from edgecnn.deploy.preprocess import apply_transform, magnitude_spectrogram
from edgecnn.deploy.spec import InputSpec
from edgecnn.metrics import classification_metrics
from edgecnn.modeldir import ModelDir, write_model_dir
from edgecnn.report import write_report
from edgecnn.splits import validation_split
from edgecnn.tasks import task_defaults
from edgecnn.tensors import to_tensors
from edgecnn.console import stderr_line



@dataclass
class TrainConfig:
    task: str
    data: str
    out: str
    architecture: str | None = None
    epochs: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    patience: int | None = None
    seed: int = 0
    val_fraction: float = 0.2
    augment: bool = True
    image_size: int | None = None          # images: square side the model sees
    color: str | None = None               # images: gray / bgr / rgb
    interpolation: str | None = None       # images: resize to the input size (see ImageSpec)
    window_length: int | None = None       # signals: samples per window
    stride: int | None = None              # signals: training window stride
    transform: str | None = None           # signals: none / log / log1p / db
    channel: str = "DE"
    sample_rate: float | None = None       # recordings that do not state their rate
    label_pattern: str | None = None
    manifest: str | None = None
    allow_pickle: bool = False
    extra: dict = field(default_factory=dict)


@dataclass
class TrainResult:
    model_dir: ModelDir
    metrics: dict
    seconds: float
    epochs_run: int
    report: dict


def _spec_overrides(config: TrainConfig, kind: str) -> dict:
    if kind == "image":
        side = config.image_size
        return {"height": side, "width": side, "color": config.color,
                "interpolation": config.interpolation}
    return {"window_length": config.window_length, "transform": config.transform,
            "channel": config.channel}


def _fit_signal_normalisation(samples, spec: InputSpec, train_index) -> InputSpec:
    """Mean and std of the transformed spectrogram over the training windows only."""
    signal = spec.signal
    windows = np.asarray(samples.items)[train_index]
    total = count = squares = 0.0
    for start in range(0, len(windows), 1024):
        values = apply_transform(magnitude_spectrogram(windows[start:start + 1024], signal),
                                 signal)
        total += values.sum()
        squares += np.square(values).sum()
        count += values.size
    mean = total / count
    std = float(np.sqrt(max(squares / count - mean * mean, 1e-12)))
    return spec.replace(signal=replace(signal, mean=float(mean), std=std))


def _augmenter(kinds: tuple[str, ...], spec: InputSpec, seed: int):
    import tensorflow as tf

    square = spec.kind == "image" and spec.image.height == spec.image.width
    gain = 0.35 / spec.signal.std if spec.kind == "signal" else 0.0

    def augment(x, y):
        if "flip" in kinds:
            x = tf.image.random_flip_left_right(x)
            x = tf.image.random_flip_up_down(x)
        if "shift" in kinds and spec.kind == "image":  # up to 2 pixels each way
            height, width = spec.image.height, spec.image.width
            x = tf.image.resize_with_crop_or_pad(x, height + 4, width + 4)
            x = tf.image.random_crop(x, [height, width, spec.image.channels])
        if "rot90" in kinds and square:
            x = tf.image.rot90(x, tf.random.uniform([], 0, 4, dtype=tf.int32))
        if "gain" in kinds and spec.kind == "signal" and spec.signal.transform in ("log", "db"):
            scale = 20.0 / np.log(10.0) if spec.signal.transform == "db" else 1.0
            x = x + tf.random.uniform([], -gain, gain) * scale
        return x, y

    return augment


class _EpochProgress:
    """One line per epoch on stderr: losses, accuracies, learning rate and time."""

    def __new__(cls, epochs: int, log: Callable[[str], None]):
        import keras

        class Progress(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self.started = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                logs = logs or {}
                log(f"epoch {epoch + 1:3d}/{epochs}  loss {logs.get('loss', 0):.4f}  "
                    f"acc {logs.get('accuracy', 0) * 100:6.2f}%  "
                    f"val_loss {logs.get('val_loss', 0):.4f}  "
                    f"val_acc {logs.get('val_accuracy', 0) * 100:6.2f}%  "
                    f"{time.perf_counter() - self.started:5.1f}s")

        return Progress()


def train(config: TrainConfig, log: Callable[[str], None] = stderr_line) -> TrainResult:
    """Train ``config.architecture`` (default: the task's edge architecture) and write the
    model directory ``config.out``."""
    defaults = task_defaults(config.task)
    architecture = config.architecture or defaults.architecture
    epochs = config.epochs or defaults.epochs
    batch_size = config.batch_size or defaults.batch_size
    learning_rate = config.learning_rate or defaults.learning_rate
    patience = config.patience or defaults.patience
    for name, value in (("epochs", epochs), ("batch size", batch_size), ("patience", patience)):
        if value < 1:
            raise InputError(f"{name} must be at least 1; found {value}")

    from edgecnn.models import get_entry

    entry = get_entry(architecture)  # an unknown name fails before any data is read
    if defaults.kind not in entry.kinds:
        raise InputError(f"model {architecture!r} takes {' or '.join(entry.kinds)} input; "
                         f"task {config.task!r} is {defaults.kind}")

    from edgecnn.tfquiet import import_tensorflow

    import_tensorflow("training")  # a line-PC install says which extra, before any data is read

    # Labels come from the data; a placeholder pair lets the loader read the spec's
    # colour, sample rate and window length first.
    spec = defaults.spec(("?", "??"), **_spec_overrides(config, defaults.kind))
    stride = config.stride or defaults.stride
    if spec.kind == "signal" and stride is None:
        stride = spec.signal.window_length // 4
    log(f"loading {config.task} data from {config.data}")
    started = time.perf_counter()
    samples = load_dataset(config.task, config.data, spec, stride=stride,
                           allow_pickle=config.allow_pickle, label_pattern=config.label_pattern,
                           manifest=config.manifest, channel=config.channel,
                           sample_rate=config.sample_rate)
    samples.require_trainable(config.data)
    spec = spec.replace(labels=tuple(samples.class_names))
    window = spec.signal.window_length if spec.kind == "signal" else None
    train_index, val_index = validation_split(samples, config.val_fraction, config.seed, window)
    if spec.kind == "signal":
        spec = _fit_signal_normalisation(samples, spec, train_index)
    counts = samples.counts()
    log(f"{len(samples)} samples in {len(counts)} classes "
        f"({', '.join(f'{k} {v}' for k, v in counts.items())}); {len(samples.skipped)} files "
        f"skipped; {len(train_index)} train / {len(val_index)} validation")

    x_all = to_tensors(samples, spec)
    x_train, y_train = x_all[train_index], samples.labels[train_index]
    x_val, y_val = x_all[val_index], samples.labels[val_index]
    del x_all
    log(f"tensors {x_train.shape[1:]} ready in {time.perf_counter() - started:.1f}s")

    import keras
    import tensorflow as tf

    from edgecnn.models import create_model

    keras.utils.set_random_seed(config.seed)
    model = create_model(architecture, spec)
    steps = int(np.ceil(len(x_train) / batch_size))
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, epochs * steps, alpha=0.02)
    model.compile(optimizer=keras.optimizers.Adam(schedule),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    augment = defaults.augment if config.augment else ()
    dataset = tf.data.Dataset.from_tensor_slices((x_train, y_train))
    dataset = dataset.shuffle(len(x_train), seed=config.seed, reshuffle_each_iteration=True)
    if augment:
        dataset = dataset.map(_augmenter(augment, spec, config.seed),
                              num_parallel_calls=tf.data.AUTOTUNE)
    dataset = dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)
    present = np.bincount(y_train, minlength=spec.num_classes)
    class_weight = {i: float(len(y_train) / (spec.num_classes * c))
                    for i, c in enumerate(present) if c}

    log(f"training {architecture} ({model.count_params():,} parameters) for up to "
        f"{epochs} epochs")
    fit_started = time.perf_counter()
    history = model.fit(
        dataset, epochs=epochs, validation_data=(x_val, y_val), class_weight=class_weight,
        verbose=0, callbacks=[
            _EpochProgress(epochs, log),
            # Validation loss is noisy early on (batch-norm statistics settle while the
            # learning rate is high): stop early only in the second half of the schedule.
            keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience,
                                          restore_best_weights=True,
                                          start_from_epoch=epochs // 2),
        ])
    seconds = time.perf_counter() - fit_started
    history = {k: [float(v) for v in values] for k, values in history.history.items()}

    probabilities = model.predict(x_val, batch_size=256, verbose=0)
    metrics = classification_metrics(y_val, probabilities.argmax(axis=1), spec.labels,
                                     skipped=len(samples.skipped))
    metrics["split"] = "validation"
    log(f"validation accuracy {metrics['accuracy'] * 100:.2f} % on {metrics['n']} samples "
        f"after {len(history['loss'])} epochs ({seconds:.0f}s)")
    training = {**{k: v for k, v in asdict(config).items() if k not in ("out", "extra")},
                "architecture": architecture, "epochs": epochs, "batch_size": batch_size,
                "learning_rate": learning_rate, "patience": patience, "stride": stride,
                "augment": list(augment), "epochs_run": len(history["loss"]),
                "train_seconds": round(seconds, 1), "train_samples": int(len(x_train)),
                "val_samples": int(len(x_val))}
    data = {"path": str(config.data), "fingerprint": samples.fingerprint,
            "samples": len(samples), "class_counts": counts,
            "skipped": [asdict(s) for s in samples.skipped]}
    model_dir = write_model_dir(config.out, model, spec, architecture=architecture,
                                training=training, data=data,
                                metrics={"validation": {k: metrics[k] for k in
                                                        ("accuracy", "n", "per_class")}})
    report = write_report(Path(config.out) / "report", metrics, history)
    return TrainResult(model_dir, metrics, seconds, len(history["loss"]), report)
