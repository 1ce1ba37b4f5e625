"""Calibration data: one reader from samples to model tensors, for every quantizer.

The samples go through the model's InputSpec (``edgecnn.tensors.to_tensors``, i.e. the
runtime's own preprocessing), so the int8 ranges are measured on exactly what the line PC
will feed the model. The same tensors feed ONNX Runtime's ``CalibrationDataReader``, the
TFLite ``representative_dataset`` and the export-time verification.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from edgecnn.deploy.errors import DataError, EdgecnnError, InputError
from edgecnn.deploy.preprocess import IMAGE_SUFFIXES, decode_image, preprocess_images
from edgecnn.deploy.spec import InputSpec
from edgecnn.export.defaults import CALIBRATION_SAMPLES
from edgecnn.heldout import balanced_index, load_heldout

# Below this many samples (or this many per class) the int8 ranges are a guess: warn.
MIN_SAMPLES = 50
MIN_PER_CLASS = 5



def calibration_root() -> Path:
    """``calibration_data/`` of this checkout (``EDGECNN_CALIBRATION_DATA`` overrides)."""
    override = os.environ.get("EDGECNN_CALIBRATION_DATA")
    if override:
        return Path(override)
    return Path(__file__).resolve().parent.parent / "calibration_data"


@dataclass
class CalibrationSet:
    """Model-ready calibration tensors (float32 N x H x W x C) and, where known, labels."""

    tensors: np.ndarray
    labels: np.ndarray | None
    class_names: tuple[str, ...]
    source: str
    task: str | None = None
    files_fingerprint: str = ""
    available: int = 0
    warnings: list[str] = field(default_factory=list)
    training_sample: bool = False    # the model directory's own sample of its training split

    def __len__(self) -> int:
        return len(self.tensors)

    @property
    def fingerprint(self) -> str:
        """sha256 of the exact tensors (and labels) used: the same data gives the same id."""
        digest = hashlib.sha256()
        digest.update(str(self.tensors.shape).encode())
        digest.update(np.ascontiguousarray(self.tensors, dtype=np.float32).tobytes())
        if self.labels is not None:
            digest.update(np.asarray(self.labels, dtype=np.int64).tobytes())
        return digest.hexdigest()

    def counts(self) -> dict[str, int] | None:
        if self.labels is None:
            return None
        return {name: int((self.labels == i).sum()) for i, name in enumerate(self.class_names)}

    def ort_reader(self, input_name: str, batch_size: int = 16, limit: int | None = None):
        """A fresh ONNX Runtime ``CalibrationDataReader`` over the tensors."""
        data = self.tensors if limit is None else self.tensors[:limit]
        return ort_reader(data, input_name, batch_size)

    def representative_dataset(self, limit: int | None = None, step: int = 1) -> Callable:
        """TFLite's ``representative_dataset``: a callable yielding ``[1 x H x W x C]``."""
        data = self.tensors if limit is None else self.tensors[:limit]

        def generate():
            for i in range(0, len(data), step):
                yield [data[i:i + 1]]

        return generate

    def summary(self) -> dict:
        return {"source": self.source, "task": self.task, "samples": len(self),
                "available": self.available, "labelled": self.labels is not None,
                "per_class": self.counts(), "fingerprint": self.fingerprint,
                "files_fingerprint": self.files_fingerprint, "warnings": list(self.warnings)}


def ort_reader(tensors: np.ndarray, input_name: str, batch_size: int = 16):
    """An ONNX Runtime ``CalibrationDataReader`` feeding ``tensors`` in batches (the
    quantizer's calibration and layer blame both read tensors this way)."""
    from onnxruntime.quantization import CalibrationDataReader

    batches = (tensors[i:i + batch_size] for i in range(0, len(tensors), batch_size))

    class Reader(CalibrationDataReader):
        def get_next(self):
            batch = next(batches, None)
            return None if batch is None else {input_name: batch}

    return Reader()


def load_calibration(spec: InputSpec, task: str | None, calib: str | Path | None = None,
                     max_samples: int = CALIBRATION_SAMPLES,
                     log: Callable[[str], None] = lambda message: None,
                     loader_options: dict | None = None, model_dir=None) -> CalibrationSet:
    """Calibration tensors from ``calib`` (a user folder), else the calibration sample
    that ``edgecnn train`` kept in ``model_dir`` (a ModelDir), else the matching shipped set.

    ``loader_options`` (``load_dataset`` keywords: label_pattern, manifest, channel, ...)
    say how to read ``calib``; the shipped sets need none.

    Balanced across classes where labels exist (evenly spaced picks per class, at most
    ``max_samples`` in all). Fewer than MIN_SAMPLES samples (or MIN_PER_CLASS per class)
    warns; none is a DataError.
    """
    if max_samples < 1:
        raise InputError(f"max calibration samples must be at least 1; found {max_samples}")
    if calib is not None:
        path = Path(calib)
        if not path.exists():
            raise DataError(f"calibration data {path} does not exist")
        samples, used_task = _load_user_set(path, spec, task, loader_options or {})
        source = str(path)
    else:
        if loader_options:
            raise InputError(f"{', '.join(sorted(loader_options))} say how to read --calib "
                             "data; no --calib was given")
        kept = load_heldout(model_dir, "calibration") if model_dir is not None else None
        if kept is not None:
            return _kept_sample(kept, spec, model_dir, task, max_samples, log)
        samples, used_task, path = _load_shipped_set(spec, task)
        source = str(path)
    if samples is None:  # unlabelled images
        return _unlabelled(path, spec, max_samples, log)
    if len(samples) == 0:
        raise DataError(f"calibration data {source} holds no usable samples "
                        f"({len(samples.skipped)} files skipped)")
    index = _balanced(samples.labels, len(samples.class_names), max_samples, log)
    picked = samples.subset(index)
    from edgecnn.tensors import to_tensors

    tensors = to_tensors(picked, spec)
    class_names = tuple(picked.class_names)
    calib_set = CalibrationSet(tensors, picked.labels, class_names, source, used_task,
                               samples.fingerprint, len(samples))
    _check_size(calib_set, spec, log)
    return calib_set


def _balanced(labels, num_classes: int, max_samples: int, log) -> np.ndarray:
    """``balanced_index``, saying so when one sample per class is more than asked for."""
    index = balanced_index(labels, num_classes, max_samples)
    if len(index) > max_samples:
        log(f"note: --max-calib-samples {max_samples} is fewer than one sample per class; "
            f"took one of each of the {len(index)} classes")
    return index


def _kept_sample(kept, spec: InputSpec, model_dir, task, max_samples: int,
                 log) -> CalibrationSet:
    tensors, labels = kept
    if tensors.shape[1:] != spec.input_shape:
        raise DataError(f"{model_dir.path}: the kept calibration tensors are "
                        f"{tensors.shape[1:]}, the model takes {spec.input_shape}")
    index = _balanced(labels, spec.num_classes, max_samples, log)
    if max_samples > len(tensors) and max_samples > CALIBRATION_SAMPLES:
        log(f"note: --max-calib-samples {max_samples}: the model directory keeps "
            f"{len(tensors)} calibration samples of its training split; give --calib DIR "
            "(images or recordings of the training data) for more")
    calib_set = CalibrationSet(tensors[index], labels[index], tuple(spec.labels),
                               f"{model_dir.path} (training split sample)", task,
                               available=len(tensors), training_sample=True)
    _check_size(calib_set, spec, log)
    return calib_set


def _load_user_set(path: Path, spec: InputSpec, task: str | None, loader_options: dict):
    from edgecnn.data import load_dataset
    from edgecnn.evaluation import model_channel

    task = task or ("images" if spec.kind == "image" else None)
    if task is None:
        raise InputError("cannot tell how to read the calibration recordings: the model "
                         "directory names no training task")
    if _unlabelled_folder(path, spec):
        return None, None   # read as such at once: no "cannot tell its class" per file
    try:
        return load_dataset(task, path, spec, labels=spec.labels,
                            **model_channel(spec, loader_options)), task
    except DataError as exc:
        if spec.kind == "image" and path.is_dir() and _image_files(path) and \
                not any(p.is_dir() for p in path.iterdir()):
            return None, None  # a flat folder of unlabelled images
        raise DataError(f"calibration data {path}: {exc}") from None


def _load_shipped_set(spec: InputSpec, task: str | None):
    """The shipped set whose classes match the model's: the task's own set first."""
    from edgecnn.data import load_dataset

    root = calibration_root()
    if not root.is_dir():
        raise DataError(f"no calibration data given and no shipped calibration_data/ at "
                        f"{root}; pass --calib DIR with samples like the training data")
    from edgecnn.tasks import SHIPPED, TASKS

    # calibration_data/<bundle> holds samples of each shipped bundle's task: the model's
    # own task first
    own = TASKS.get(task or "")
    names = [n for n, t in SHIPPED.items() if (root / n).exists() and t.kind == spec.kind]
    names.sort(key=lambda n: SHIPPED[n] is not own)
    for name in names:
        try:
            samples = load_dataset(SHIPPED[name].name, root / name, spec, labels=spec.labels)
        except EdgecnnError:
            continue
        if len(samples) and set(samples.class_names) == set(spec.labels):
            return samples, SHIPPED[name].name, root / name
    raise DataError(f"no calibration data: no --calib, no sample kept by training, and no "
                    f"shipped calibration set in {root.name}/ matches the model's classes; "
                    "pass --calib DIR")


def _unlabelled_folder(path: Path, spec: InputSpec) -> bool:
    """A flat folder of images none of which is named ``<class>_<n>`` after one of the
    model's classes (frames from the line, say): calibration data without labels."""
    from edgecnn.data.images import flat_class_name

    if spec.kind != "image" or not path.is_dir() or any(p.is_dir() for p in path.iterdir()):
        return False
    files = _image_files(path)
    return bool(files) and not any(flat_class_name(f.name) in spec.labels for f in files)


def _image_files(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and
                  p.is_file())


def _unlabelled(path: Path, spec: InputSpec, max_samples: int, log) -> CalibrationSet:
    files = _image_files(path)
    pick = np.unique(np.linspace(0, len(files) - 1, min(len(files), max_samples)).round()
                     .astype(int)) if files else []
    from edgecnn.data.images import images_to_8bit

    images, used, warnings = [], [], []
    for i in pick:
        try:
            images.append(decode_image(files[i], spec.image.color))
            used.append(files[i])
        except InputError as exc:
            warnings.append(f"skipped {files[i]}: {exc}")
    images_to_8bit(images, spec.image.bit_depth, training=False)
    if not images:
        raise DataError(f"calibration folder {path} holds no readable images")
    from edgecnn.data.samples import fingerprint_files

    calib_set = CalibrationSet(preprocess_images(images, spec), None, tuple(spec.labels),
                               str(path), None, fingerprint_files(path, used), len(files),
                               warnings)
    calib_set.warnings.append(f"calibration images in {path} have no class labels: the set "
                              "is not balanced and accuracy checks use agreement only")
    _check_size(calib_set, spec, log)
    return calib_set


def _check_size(calib_set: CalibrationSet, spec: InputSpec, log) -> None:
    if len(calib_set) < MIN_SAMPLES:
        calib_set.warnings.append(
            f"only {len(calib_set)} calibration samples (at least {MIN_SAMPLES} recommended): "
            "int8 ranges may not cover what the line sees")
    counts = calib_set.counts()
    if counts is not None:
        missing = [name for name in spec.labels if counts.get(name, 0) == 0]
        thin = [name for name in spec.labels if 0 < counts.get(name, 0) < MIN_PER_CLASS]
        if missing:
            calib_set.warnings.append(f"calibration data has no samples of class(es) "
                                      f"{', '.join(missing)}")
        if thin:
            calib_set.warnings.append(f"fewer than {MIN_PER_CLASS} calibration samples of "
                                      f"class(es) {', '.join(thin)}")
    for warning in calib_set.warnings:
        log(f"warning: {warning}")
