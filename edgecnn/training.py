"""``edgecnn train``: data -> InputSpec -> model -> model directory with a report.

Deterministic (one seed for split, initialisation and augmentation order), validation held
out from the training data without leakage (see ``edgecnn.splits``), class weights (the
square root of the inverse class frequency by default), epoch budget and patience scaled to
the data, label smoothing for images, best weights kept by validation balanced accuracy
with early stopping (see ``edgecnn.schedule``), one progress line per epoch.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from edgecnn.console import stderr_line
from edgecnn.data import load_dataset
from edgecnn.deploy.errors import InputError
from edgecnn.deploy.preprocess import apply_transform, magnitude_spectrogram
from edgecnn.deploy.spec import DEFAULT_CHANNEL, InputSpec, sample_rate_problem
from edgecnn.heldout import save_heldout
from edgecnn.metrics import baseline_line, classification_metrics
from edgecnn.modeldir import ModelDir, write_model_dir
from edgecnn.report import write_report
from edgecnn.schedule import (
    DEFAULT_BALANCE,
    LABEL_SMOOTHING,
    STEP_BUDGET,
    average_steps,
    balance_power,
    balanced_early_stopping,
    class_weights,
    describe_weights,
    epoch_budget,
    patience_for,
    training_loss,
)
from edgecnn.splits import validation_split
from edgecnn.tasks import get_task
from edgecnn.tensors import to_tensors


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
    augment: bool | str | tuple = True     # True: the task's families; False/'none'; names
    augment_strength: float | None = None  # None: the task's strength
    label_smoothing: float | None = None   # None: LABEL_SMOOTHING for images, 0 for signals
    balance: str = DEFAULT_BALANCE         # class balance: sqrt / full / none (schedule.BALANCE)
    image_size: int | None = None          # images: square side the model sees
    color: str | None = None               # images: gray / bgr / rgb
    interpolation: str | None = None       # images: resize to the input size (see ImageSpec)
    fit: str | None = None                 # images: stretch / letterbox / crop (see choose_fit)
    bit_depth: int | None = None           # images: bits in 16-bit files (None: from the data)
    window_length: int | None = None       # signals: samples per window
    stride: int | None = None              # signals: training window stride
    transform: str | None = None           # signals: none / log / log1p / db
    channel: str = DEFAULT_CHANNEL
    sample_rate: float | None = None       # recordings that do not state their rate
    label_pattern: str | None = None
    manifest: str | None = None
    allow_pickle: bool = False
    weights: str | None = None             # backbones: 'imagenet' or a file (edgecnn.transfer)
    frozen_epochs: int | None = None       # with weights: head-only epochs first
    unfreeze: str | None = None            # with weights: all / none / top N layers
    fine_tune_lr: float | None = None      # with weights: learning rate once unfrozen
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Numbers the user gave are used as given or refused: never a silent default."""
        for flag, value in (("--epochs", self.epochs), ("--batch-size", self.batch_size),
                            ("--patience", self.patience), ("--stride", self.stride),
                            ("--image-size", self.image_size),
                            ("--window-length", self.window_length),
                            ("--frozen-epochs", self.frozen_epochs)):
            if value is not None and value < (0 if flag == "--frozen-epochs" else 1):
                low = 0 if flag == "--frozen-epochs" else 1
                raise InputError(f"{flag} must be at least {low}; found {value}")
        for flag, value in (("--lr", self.learning_rate), ("--fine-tune-lr", self.fine_tune_lr)):
            if value is not None and not (np.isfinite(value) and value > 0):
                raise InputError(f"{flag} must be a positive number; found {value}")
        if self.sample_rate is not None and (
                why := sample_rate_problem(self.sample_rate)) is not None:
            raise InputError(f"--sample-rate: {why}")
        if not 0.0 < self.val_fraction < 1.0:      # (NaN too) before any data is read
            raise InputError(f"--val-fraction must be between 0 and 1; found "
                             f"{self.val_fraction}")


@dataclass
class TrainResult:
    model_dir: ModelDir
    metrics: dict
    seconds: float
    epochs_run: int
    report: dict


def _check_out(out: Path, data: Path) -> bool:
    """--out is a new or empty folder, or a model directory (replaced), never the data or
    a folder inside it, and writable: checked before the training, not after. True when
    this made the folder."""
    from edgecnn.modeldir import is_model_dir

    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a directory")
    real_out, real_data = out.resolve(), data.resolve()
    if real_out == real_data or real_out.is_relative_to(real_data):
        raise InputError(f"--out {out} is inside the training data {data}: its files would "
                         "be read as data next time; choose a folder outside it")
    if out.is_dir() and any(out.iterdir()) and not is_model_dir(out):
        raise InputError(f"--out {out} is not empty and not an edgecnn model directory; "
                         "refusing to write into it (choose a new or empty folder)")
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".edgecnn-write-check"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise InputError(f"cannot write --out {out}: {exc.strerror or exc}") from None
    return created


_IMAGE_OPTIONS = (("--image-size", "image_size"), ("--color", "color"),
                  ("--interpolation", "interpolation"), ("--fit", "fit"))
_SIGNAL_OPTIONS = (("--window-length", "window_length"), ("--transform", "transform"))


def _spec_overrides(config: TrainConfig, kind: str) -> dict:
    """The task's input options the user gave; one of the other kind of input is refused
    (it would be ignored, yet recorded in edgecnn.json as if used)."""
    other = _SIGNAL_OPTIONS if kind == "image" else _IMAGE_OPTIONS
    given = [flag for flag, field in other if getattr(config, field) is not None]
    if given:
        reads = "images" if kind == "image" else "recordings"
        raise InputError(f"{', '.join(given)} appl{'ies' if len(given) == 1 else 'y'} to "
                         f"{'signal' if kind == 'image' else 'image'} tasks; task "
                         f"{config.task} reads {reads}")
    if kind == "image":
        side = config.image_size
        return {"height": side, "width": side, "color": config.color,
                "interpolation": config.interpolation, "fit": config.fit,
                "bit_depth": config.bit_depth}
    return {"window_length": config.window_length, "transform": config.transform,
            "channel": config.channel}


def _scaled_budget(config: TrainConfig, defaults, train_samples: int, batch_size: int,
                   log) -> tuple[int, int]:
    """Epochs and patience: the user's when given, else scaled to the data (edgecnn.schedule)."""
    epochs = (config.epochs if config.epochs is not None
              else epoch_budget(defaults.epochs, train_samples, batch_size))
    patience = (config.patience if config.patience is not None
                else patience_for(epochs, defaults.patience))
    if config.epochs is None and epochs != defaults.epochs:
        log(f"epoch budget {epochs} for {train_samples} training samples "
            f"(about {STEP_BUDGET} steps of {batch_size}; --epochs overrides), patience "
            f"{patience}")
    return epochs, patience


def _follow_data_rate(config: TrainConfig, spec: InputSpec, log) -> InputSpec:
    """The spec at the recordings' own sample rate (see ``spec_for_rate`` for the window
    rule), so no band of the sensor is thrown away."""
    from edgecnn.data.loaders import vibration_rule
    from edgecnn.data.windows import data_sample_rate, probe_sample_rates, spec_for_rate

    rule = vibration_rule(Path(config.data), config.manifest, config.label_pattern)
    rates = probe_sample_rates(config.data, rule, config.channel, config.sample_rate)
    if not rates:
        return spec  # nothing readable: the loader reports every file
    rate = data_sample_rate(rates)
    signal = spec_for_rate(spec.signal, rate, config.window_length)
    if rate != spec.signal.sample_rate:
        default = spec.signal.window_length / spec.signal.sample_rate
        log(f"recordings at {rate:g} Hz: training at that rate with {signal.window_length}-"
            f"sample windows ({signal.window_length / rate:.3f} s) and {signal.nperseg}-sample "
            f"spectrogram segments (the {spec.signal.sample_rate / 1000:g} kHz defaults, "
            f"{default:.3f} s, scaled to the nearest power of two; --window-length sets "
            "another)")
    return spec.replace(signal=signal)


# Aspect ratios within this share of the model input's are stretched (a 128x122 image
# changes shape by 5 %); beyond it the image is letterboxed.
STRETCH_TOLERANCE = 0.10


def _shown(name: str) -> str:
    """A class name as the log shows it: quoted where spaces would hide it (``'scratch '``)."""
    return repr(name) if name != name.strip() or not name or " " in name else name


def _note_unvalidated(samples, val_index, log) -> None:
    """Classes too small to leave a validation sample: trained, but nothing says how well
    the model finds them (the balanced metrics leave them out)."""
    counts = samples.counts()
    present = {samples.class_names[int(k)] for k in np.unique(samples.labels[val_index])}
    missing = [name for name in samples.class_names if name not in present]
    if missing:
        log(f"note: {len(missing)} class(es) with no validation sample (too few): "
            + ", ".join(f"{_shown(name)} ({counts[name]} sample(s))" for name in missing)
            + "; they are trained but not validated: add samples, or leave them out")


def choose_fit(images, spec: InputSpec) -> tuple[str, str]:
    """(fit, reason) for training images of these sizes, by one written rule: "stretch" when
    every image's aspect ratio is within STRETCH_TOLERANCE of the model input's (today's
    resize, nothing lost), otherwise "letterbox" (the whole image, undistorted, padded with
    its mean grey: a defect at the edge is never cut off, as a crop could)."""
    target = spec.image.width / spec.image.height
    ratios = np.asarray([image.shape[1] / image.shape[0] for image in images], dtype=float)
    if len(ratios) == 0:
        return "stretch", "no images"
    spread = f"aspect ratios {ratios.min():.2f}-{ratios.max():.2f} (width/height)"
    if np.all(np.abs(ratios / target - 1.0) <= STRETCH_TOLERANCE):
        return "stretch", f"{spread}, within {STRETCH_TOLERANCE:.0%} of the input's"
    return "letterbox", f"{spread}, beyond {STRETCH_TOLERANCE:.0%} of the input's {target:.2f}"


# Bilinear resizing reads 2 x 2 source pixels per output pixel: up to a downscale of 2 per
# axis that covers every pixel; beyond it pixels are skipped, and a defect thinner than the
# gaps can vanish. Beyond this factor (median over the training images) the area average
# replaces it. NEU test split at 48 px (4.2x), seeds 0/1: linear 96.33/97.00 %, area
# 98.00/98.33 %; at 32 px (6.25x), seed 0: linear 96.67 %, area 96.33 %.
AREA_BEYOND = 2.0


def choose_interpolation(images, spec: InputSpec) -> tuple[str, str | None]:
    """(interpolation, reason it changed or None): the task's bilinear resize, or "area" when
    the images are more than AREA_BEYOND times the model input on their larger axis."""
    image = spec.image
    if image.interpolation != "linear" or len(images) == 0:
        return image.interpolation, None
    factors = np.asarray([max(i.shape[1] / image.width, i.shape[0] / image.height)
                          for i in images], dtype=float)
    factor = float(np.median(factors))
    if factor <= AREA_BEYOND:
        return "linear", None
    return "area", (f"the images are {factor:.1f}x the {image.width}x{image.height} input "
                    f"(median); bilinear would skip pixels beyond {AREA_BEYOND:g}x")


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


def _augmentation(config: TrainConfig, defaults) -> tuple[tuple[str, ...], float]:
    """The raw-domain augmentation families and strength (see ``edgecnn.augment``)."""
    from edgecnn.augment import check_strength, parse_families

    families = parse_families(config.augment, defaults.kind, defaults.augment)
    strength = defaults.augment_strength if config.augment_strength is None \
        else config.augment_strength
    return families, check_strength(strength)


def _label_smoothing(config: TrainConfig, kind: str) -> float:
    """The label smoothing of the loss (edgecnn.schedule): the user's, else LABEL_SMOOTHING
    for images trained from scratch (measured there); none for signals and for pretrained
    backbones (edgecnn.transfer compiles its phases with plain cross-entropy)."""
    if config.label_smoothing is None:
        return LABEL_SMOOTHING if kind == "image" and not config.weights else 0.0
    value = config.label_smoothing
    if not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise InputError(f"label smoothing must be in [0, 1); found {value!r}")
    if value and config.weights:
        raise InputError("label smoothing with pretrained weights is not supported: the "
                         "transfer phases use plain cross-entropy")
    return float(value)


def _training_batches(samples, train_index, y_train, x_train, spec, batch_size, families,
                      strength, seed):
    """Per-epoch augmented batches of the raw training samples (``edgecnn.batches``)."""
    from edgecnn.batches import training_batches

    items = samples.items
    raw = [items[i] for i in train_index]
    return training_batches(raw, y_train, spec, batch_size=batch_size, families=families,
                            strength=strength, seed=seed, tensors=x_train)


def _health_envelope(samples, train_index, spec) -> dict:
    """What the training inputs look like, for the run-time source-health checks."""
    from edgecnn.deploy.health import fit_envelope

    items, native = samples.items, samples.native_features
    return fit_envelope([items[i] for i in train_index], spec, samples.labels[train_index],
                        None if native is None else [native[i] for i in train_index])


def _robustness_report(model, samples, val_index, y_val, spec, report_dir, log) -> dict:
    """The robustness suite (``edgecnn.robustness``) on the validation samples, Keras model."""
    from edgecnn.report import write_json
    from edgecnn.robustness import plot_robustness, run_suite

    class InMemory:
        def predict(self, batch):
            return np.asarray(model(batch, training=False))

    items = samples.items
    result = run_suite({"keras": InMemory()}, [items[i] for i in val_index], y_val, spec,
                       log=lambda line: None)
    log(f"robustness on validation: mean {result['mean']['keras'] * 100:.2f} %, worst "
        f"{result['worst']['keras']['accuracy'] * 100:.2f} % "
        f"({result['worst']['keras']['cell']})")
    return {"robustness": str(write_json(result, report_dir / "robustness.json")),
            "robustness_png": str(plot_robustness(result, report_dir / "robustness.png"))}


class _EpochProgress:
    """One line per epoch on stderr: losses, accuracies, learning rate and time."""

    def __new__(cls, epochs: int, log: Callable[[str], None]):
        import keras

        class Progress(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self.started = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                logs = logs or {}
                balanced = logs.get("val_balanced_accuracy")
                log(f"epoch {epoch + 1:3d}/{epochs}  loss {logs.get('loss', 0):.4f}  "
                    f"acc {logs.get('accuracy', 0) * 100:6.2f}%  "
                    f"val_loss {logs.get('val_loss', 0):.4f}  "
                    f"val_acc {logs.get('val_accuracy', 0) * 100:6.2f}%  "
                    + (f"val_bal {balanced * 100:6.2f}%  " if balanced is not None else "")
                    + f"{time.perf_counter() - self.started:5.1f}s")

        return Progress()


def _freeze_then_fine_tune(config: TrainConfig, model, epochs: int, learning_rate: float,
                           total_steps: int, fit_args: dict, log) -> dict | None:
    """With pretrained backbone weights: the head-only phase, then the model unfrozen and
    compiled for fine-tuning (edgecnn.transfer); None (one phase) otherwise."""
    from edgecnn.transfer import plan_transfer, run_frozen_phase

    plan = plan_transfer(config.weights, epochs, learning_rate, config.frozen_epochs,
                         config.unfreeze, config.fine_tune_lr)
    if plan is None:
        return None
    log(plan.describe(epochs))
    progress = _EpochProgress(plan.frozen_epochs, lambda line: log(f"frozen {line}"))
    frozen = run_frozen_phase(model, plan, fit_args, total_steps, progress, log)
    return {**plan.to_dict(), "frozen_history": frozen}


def train(config: TrainConfig, log: Callable[[str], None] = stderr_line) -> TrainResult:
    """Train ``config.architecture`` (default: the task's edge architecture) and write the
    model directory ``config.out``."""
    defaults = get_task(config.task)
    architecture = config.architecture or defaults.architecture
    def given(value, default):
        return default if value is None else value

    epochs = given(config.epochs, defaults.epochs)
    batch_size = given(config.batch_size, defaults.batch_size)
    learning_rate = given(config.learning_rate, defaults.learning_rate)
    patience = given(config.patience, defaults.patience)
    for name, value in (("epochs", epochs), ("batch size", batch_size), ("patience", patience)):
        if value < 1:
            raise InputError(f"{name} must be at least 1; found {value}")

    from edgecnn.models import get_entry

    entry = get_entry(architecture)  # an unknown name fails before any data is read
    if defaults.kind not in entry.kinds:
        raise InputError(f"model {architecture!r} takes {' or '.join(entry.kinds)} input; "
                         f"task {config.task!r} is {defaults.kind}")
    augment, strength = _augmentation(config, defaults)  # unknown names fail early too
    _spec_overrides(config, defaults.kind)                # options of the other input too
    smoothing = _label_smoothing(config, defaults.kind)
    from edgecnn.transfer import check_transfer_options

    check_transfer_options(config, architecture)  # a bad --weights fails before data is read

    from edgecnn.tfquiet import import_tensorflow

    import_tensorflow("training")  # a line-PC install says which extra, before any data is read
    created = _check_out(Path(config.out), Path(config.data))   # before the folder is made
    try:
        return _train_into(config, log, defaults, architecture, epochs, batch_size,
                           learning_rate, patience, augment, strength, smoothing)
    except BaseException:
        if created:   # a failed run leaves no empty folder behind (an earlier model stays)
            _remove_empty(Path(config.out))
        raise


def _remove_empty(folder: Path) -> None:
    try:
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    except OSError:
        pass


def _train_into(config: TrainConfig, log, defaults, architecture: str, epochs: int,
                batch_size: int, learning_rate: float, patience: int, augment, strength,
                smoothing) -> TrainResult:
    """The training itself, into the checked --out (see ``train``)."""
    # Labels come from the data; a placeholder pair lets the loader read the spec's
    # colour, sample rate and window length first.
    spec = defaults.spec(("?", "??"), **_spec_overrides(config, defaults.kind))
    if defaults.follow_data_rate:
        spec = _follow_data_rate(config, spec, log)
    stride = config.stride if config.stride is not None else defaults.stride
    if spec.kind == "signal" and stride is None:
        stride = spec.signal.window_length // 4
    log(f"loading {config.task} data from {config.data}")
    started = time.perf_counter()
    def load(copies: bool):
        return load_dataset(config.task, config.data, spec, stride=stride,
                            allow_pickle=config.allow_pickle,
                            label_pattern=config.label_pattern, manifest=config.manifest,
                            channel=config.channel, sample_rate=config.sample_rate,
                            bit_depth=config.bit_depth,
                            working_copies=copies if spec.kind == "image" else None)

    # working copies of very large images only where the model resizes by area, as the
    # default rule mostly picks for them (below: where it does not, they are read again)
    samples = load(config.interpolation in (None, "area"))
    samples.require_trainable(config.data)
    spec = spec.replace(labels=tuple(samples.class_names))
    if samples.bit_depth is not None and samples.bit_depth != spec.image.bit_depth:
        spec = spec.replace(image=replace(spec.image, bit_depth=samples.bit_depth))
    if spec.kind == "image" and config.fit is None:
        fit, reason = choose_fit(samples.items, spec)
        spec = spec.replace(image=replace(spec.image, fit=fit))
        log(f"images: {fit} to {spec.image.width}x{spec.image.height} ({reason}; --fit "
            "overrides)")
    elif spec.kind == "image":
        log(f"images: {spec.image.fit} to {spec.image.width}x{spec.image.height} (--fit)")
    if spec.kind == "image" and config.interpolation is None:
        interpolation, reason = choose_interpolation(samples.items, spec)
        if reason:
            spec = spec.replace(image=replace(spec.image, interpolation=interpolation))
            log(f"images: {interpolation} resize ({reason}; --interpolation overrides)")
    if spec.kind == "image" and spec.image.interpolation != "area" and \
            samples.native_features is not None:
        large = sum(f is not None for f in samples.native_features)
        log(f"images: {large} large image(s) read again at native size: the model resizes "
            f"{spec.image.interpolation}, which from a working copy would not be the "
            "runtime's resize of the native frame")
        samples = load(False)
    window = spec.signal.window_length if spec.kind == "signal" else None
    train_index, val_index = validation_split(samples, config.val_fraction, config.seed, window)
    if spec.kind == "signal":
        spec = _fit_signal_normalisation(samples, spec, train_index)
    counts = samples.counts()
    log(f"{len(samples)} samples in {len(counts)} classes "
        f"({', '.join(f'{_shown(k)} {v}' for k, v in counts.items())}); "
        f"{len(samples.skipped)} files skipped; {len(train_index)} train / "
        f"{len(val_index)} validation")
    _note_unvalidated(samples, val_index, log)

    x_all = to_tensors(samples, spec)
    x_train, y_train = x_all[train_index], samples.labels[train_index]
    x_val, y_val = x_all[val_index], samples.labels[val_index]
    del x_all
    log(f"tensors {x_train.shape[1:]} ready in {time.perf_counter() - started:.1f}s")

    import keras

    from edgecnn.models import create_model

    epochs, patience = _scaled_budget(config, defaults, len(x_train), batch_size, log)
    if config.architecture is None:
        from edgecnn.models.capacity import fit_capacity

        architecture, why = fit_capacity(architecture, len(x_train))
        if why:
            log(f"model capacity: {architecture} ({why}; --arch overrides)")
    keras.utils.set_random_seed(config.seed)
    model = create_model(architecture, spec, weights=config.weights)
    steps = int(np.ceil(len(x_train) / batch_size))
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, epochs * steps, alpha=0.02)
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss=training_loss(smoothing),
                  metrics=["accuracy"])
    if smoothing:
        log(f"loss: cross-entropy with label smoothing {smoothing:g} (targets "
            f"{1 - smoothing + smoothing / spec.num_classes:.3f} for the true class, "
            f"{smoothing / spec.num_classes:.3f} for the others)")
    elif config.label_smoothing is not None:
        log("loss: plain cross-entropy (--label-smoothing 0)")
    dataset = _training_batches(samples, train_index, y_train, x_train, spec, batch_size,
                                augment, strength, config.seed)
    power = balance_power(config.balance)
    balanced = power is not None
    class_weight = class_weights(y_train, spec.num_classes, power) if balanced else None
    log(describe_weights(class_weight, spec.labels, config.balance))
    transfer = _freeze_then_fine_tune(config, model, epochs, learning_rate, epochs * steps,
                                      dict(x=dataset, validation_data=(x_val, y_val),
                                           class_weight=class_weight), log)

    average = average_steps(epochs, steps) if defaults.average_weights else 0
    log(f"training {architecture} ({model.count_params():,} parameters) for up to "
        f"{epochs} epochs" + (f"; validating a weight average over ~{average} steps"
                              if average else ""))
    fit_started = time.perf_counter()
    history = model.fit(
        dataset, epochs=epochs, validation_data=(x_val, y_val), class_weight=class_weight,
        verbose=0, callbacks=[
            # Validation metrics are noisy early on (batch-norm statistics settle while the
            # learning rate is high): stop early only in the second half of the schedule.
            balanced_early_stopping(x_val, y_val, spec.num_classes, patience, epochs // 2,
                                    log, average, balanced=balanced),
            _EpochProgress(epochs, log),
        ])
    seconds = time.perf_counter() - fit_started
    history = {k: [float(v) for v in values] for k, values in history.history.items()}

    probabilities = model.predict(x_val, batch_size=256, verbose=0)
    metrics = classification_metrics(y_val, probabilities.argmax(axis=1), spec.labels,
                                     skipped=len(samples.skipped))
    metrics["split"] = "validation"
    log(f"validation accuracy {metrics['accuracy'] * 100:.2f} % (balanced "
        f"{metrics['balanced_accuracy'] * 100:.2f} %, macro recall {metrics['macro_recall']:.3f})"
        f" on {metrics['n']} samples after {len(history['loss'])} epochs ({seconds:.0f}s)")
    baseline = baseline_line(metrics)
    if baseline is not None:
        log(baseline)
    training = {**{k: v for k, v in asdict(config).items() if k not in ("out", "extra")},
                "architecture": architecture, "epochs": epochs, "batch_size": batch_size,
                "learning_rate": learning_rate, "patience": patience, "stride": stride,
                "average_steps": average, "label_smoothing": smoothing,
                "balance": config.balance,
                "augment": list(augment), "augment_strength": strength,
                "epochs_run": len(history["loss"]), "transfer": transfer,
                "train_seconds": round(seconds, 1), "train_samples": int(len(x_train)),
                "val_samples": int(len(x_val))}
    data = {"path": str(config.data), "fingerprint": samples.fingerprint,
            "samples": len(samples), "class_counts": counts,
            "skipped": [asdict(s) for s in samples.skipped],
            # export calibrates on a sample of the training split and judges parity on the
            # validation split (edgecnn.heldout)
            "held_out": save_heldout(config.out, x_train, y_train, x_val, y_val,
                                     spec.num_classes)}
    model_dir = write_model_dir(config.out, model, spec, architecture=architecture,
                                training=training, data=data,
                                metrics={"validation": {k: metrics[k] for k in
                                                        ("accuracy", "balanced_accuracy",
                                                         "macro_recall", "n", "per_class")}},
                                health=_health_envelope(samples, train_index, spec))
    report = write_report(Path(config.out) / "report", metrics, history)
    report.update(_robustness_report(model, samples, val_index, y_val, spec,
                                     Path(config.out) / "report", log))
    return TrainResult(model_dir, metrics, seconds, len(history["loss"]), report)
