"""The lecture's vibration layout: one archive with ``signal`` (N x samples), one-hot ``label``
(N x C) and ``time`` (N x samples or samples).

Each row is one recording; it is resampled to the task rate and cut into windows like any
other recording. Pickles are refused unless explicitly allowed, because unpickling a file
can run arbitrary code.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import numpy as np

from edgecnn.data.assemble import finish, resolve_classes
from edgecnn.data.samples import LabelledSamples
from edgecnn.deploy.errors import DataError, InputError
from edgecnn.deploy.preprocess import cut_windows, resample, window_starts
from edgecnn.deploy.spec import InputSpec, SignalSpec

PICKLE_SUFFIXES = (".pkl", ".pickle")
_NAME_KEYS = ("labels", "class_names")


def read_lecture_arrays(path, allow_pickle: bool = False) -> dict[str, np.ndarray]:
    """The archive's entries as plain arrays (``.npz`` always without pickle)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.is_file():
        raise DataError(f"lecture data file {path} does not exist or is not a file")
    if suffix in PICKLE_SUFFIXES:
        if not allow_pickle:
            raise DataError(f"{path} is a Python pickle, and loading a pickle can run arbitrary "
                            "code; only if you trust where it came from, pass --allow-pickle "
                            "(allow_pickle=True), or re-save it as .npz")
        try:
            with open(path, "rb") as handle:
                data = pickle.load(handle)
        except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ImportError,
                IndexError, TypeError, ValueError) as exc:
            raise DataError(f"cannot unpickle {path}: {type(exc).__name__}: {exc}") from None
        if not hasattr(data, "keys"):
            raise DataError(f"{path} holds a {type(data).__name__}; expected a dict with "
                            "signal, label and time")
        return {str(k): np.asarray(data[k]) for k in data.keys()}
    if suffix != ".npz":
        raise DataError(f"{path}: expected a .npz archive (or a .pkl with --allow-pickle); "
                        f"found {path.suffix or 'no suffix'}")
    if not zipfile.is_zipfile(path):
        raise DataError(f"{path} is not a numpy .npz archive (not a zip file)")
    try:
        with open(path, "rb") as handle, np.load(handle, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except ValueError as exc:
        if "pickle" in str(exc):
            raise DataError(f"{path} stores Python objects that only unpickling could read, "
                            "which can run arbitrary code; save plain arrays (signal, label, "
                            "time[, labels]) with numpy.savez instead") from None
        raise DataError(f"cannot read {path}: {exc}") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"cannot read {path}: {type(exc).__name__}: {exc}") from None


def load_lecture_npz(path, signal_spec: SignalSpec | InputSpec,
                     labels: tuple[str, ...] | None = None, allow_pickle: bool = False,
                     sample_rate: float | None = None,
                     stride: int | None = None) -> LabelledSamples:
    """Windows (float32, N x window_length) from every row of the lecture archive.

    The sample rate is ``1 / diff(time)`` unless ``sample_rate`` is given (they must agree
    when both exist). ``stride`` defaults to the window length (no overlap); a row of exactly
    one window's length gives one window. Class names come from a ``labels`` or
    ``class_names`` entry, else "0".."C-1". ``sources`` are ``<file>#<row>``.
    """
    spec = signal_spec.signal if isinstance(signal_spec, InputSpec) else signal_spec
    if not isinstance(spec, SignalSpec):
        raise InputError("load_lecture_npz needs a signal spec; "
                         f"found {type(signal_spec).__name__}")
    stride = spec.window_length if stride is None else stride
    if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or stride <= 0:
        raise InputError(f"window stride must be a positive integer; found {stride!r}")
    path = Path(path)
    data = read_lecture_arrays(path, allow_pickle)
    missing = [k for k in ("signal", "label") if k not in data]
    if missing:
        raise DataError(f"{path} lacks {', '.join(missing)}; expected signal (N x samples), "
                        f"label (one-hot N x C) and time; found {', '.join(sorted(data))}")
    signal = _as_rows(path, data["signal"])
    file_labels = _class_indices(path, data["label"], len(signal))
    if np.ndim(data["label"]) == 2:
        n_classes = data["label"].shape[1]
    else:
        n_classes = next((np.asarray(data[k]).size for k in _NAME_KEYS if k in data),
                         int(file_labels.max()) + 1)
        if file_labels.max() >= n_classes:
            raise DataError(f"{path}: label index {int(file_labels.max())} has no class name "
                            f"({n_classes} names)")
    names = _class_names(path, data, n_classes)
    rate = _rate(path, data.get("time"), signal.shape[1], sample_rate)

    if labels is None:
        class_names, index = names, {name: i for i, name in enumerate(names)}
    else:
        present = {names[i] for i in np.unique(file_labels)}
        class_names, index = resolve_classes(present, labels, path)
    windows, label_ids, sources, positions = [], [], [], []
    task_rate = float(spec.sample_rate)
    for row, (values, label) in enumerate(zip(signal, file_labels)):
        resampled = resample(values, rate, task_rate)
        starts = window_starts(len(resampled), spec.window_length, stride)
        windows.append(cut_windows(resampled, spec.window_length, stride).astype(np.float32))
        label_ids.extend([index[names[label]]] * len(starts))
        positions.append(starts)
        sources.extend([f"{path.name}#{row}"] * len(starts))
    if not sources:
        raise DataError(f"{path}: rows of {signal.shape[1]} samples at {rate:g} Hz are shorter "
                        f"than one window of {spec.window_length} samples at {task_rate:g} Hz")
    samples = LabelledSamples("signal", np.concatenate(windows), label_ids, class_names,
                              sources, np.concatenate(positions), [], sample_rate=task_rate)
    return finish(samples, path.parent, [path], labels)


def _as_rows(path: Path, signal) -> np.ndarray:
    signal = np.asarray(signal)
    if signal.ndim == 1:
        signal = signal[np.newaxis, :]
    if signal.ndim != 2 or signal.size == 0 or not np.issubdtype(signal.dtype, np.number):
        raise DataError(f"{path}: expected signal as a numeric N x samples array; found "
                        f"shape {signal.shape}, dtype {signal.dtype}")
    signal = signal.astype(np.float64)
    if not np.isfinite(signal).all():
        raise DataError(f"{path}: signal holds NaN or infinite values")
    return signal


def _class_indices(path: Path, label, n_rows: int) -> np.ndarray:
    label = np.asarray(label)
    if label.ndim == 2:
        ones = (label == 1).sum(axis=1)
        zeros = (label == 0).sum(axis=1)
        if label.shape[0] != n_rows or not ((ones == 1) & (ones + zeros == label.shape[1])).all():
            raise DataError(f"{path}: expected label as one-hot rows ({n_rows} x C, one 1 per "
                            f"row); found shape {label.shape} with other values")
        return label.argmax(axis=1)
    if label.ndim == 1 and label.shape[0] == n_rows and np.issubdtype(label.dtype, np.integer) \
            and label.min() >= 0:
        return label.astype(np.int64)
    raise DataError(f"{path}: expected label as one-hot {n_rows} x C (or {n_rows} class "
                    f"indices); found shape {label.shape}, dtype {label.dtype}")


def _class_names(path: Path, data: dict, n_classes: int) -> tuple[str, ...]:
    for key in _NAME_KEYS:
        if key in data:
            names = tuple(str(v) for v in np.asarray(data[key]).ravel())
            if len(names) != n_classes or len(set(names)) != len(names):
                raise DataError(f"{path}: '{key}' must hold {n_classes} unique class names "
                                f"(one per label column); found {list(names)}")
            return names
    return tuple(str(i) for i in range(n_classes))


def _rate(path: Path, time, n_samples: int, given: float | None) -> float:
    if given is not None and (isinstance(given, bool) or not given > 0):
        raise InputError(f"sample rate must be a positive number; found {given!r}")
    if time is None:
        if given is None:
            raise InputError(f"{path} has no 'time' entry to derive the sample rate from; "
                             "give it explicitly (--sample-rate HZ)")
        return float(given)
    time = np.asarray(time, dtype=np.float64)
    row = time[0] if time.ndim == 2 else time
    if row.ndim != 1 or len(row) != n_samples or n_samples < 2:
        raise DataError(f"{path}: expected time of {n_samples} samples per row; "
                        f"found shape {time.shape}")
    steps = np.diff(row)
    step = float(np.mean(steps))
    if not step > 0 or np.abs(steps - step).max() > 1e-3 * step:
        raise DataError(f"{path}: time must increase in equal steps to give a sample rate; "
                        f"found steps from {steps.min():g} to {steps.max():g}")
    rate = 1.0 / step
    if abs(rate - round(rate)) < 1e-6 * rate:  # float time axes give 11999.9999999 for 12 kHz
        rate = float(round(rate))
    if given is not None and abs(given - rate) > 1e-3 * rate:
        raise InputError(f"{path} is sampled at {rate:g} Hz by its time axis but the sample "
                         f"rate {float(given):g} Hz was given; drop the option or fix the file")
    return rate
