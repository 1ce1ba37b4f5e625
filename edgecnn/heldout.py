"""The tensors a model directory keeps for export: a calibration sample and the held-out split.

``edgecnn train`` saves, beside ``model.keras``, a class-balanced sample of its training split
(int8 calibration needs the ranges of what the model was trained on) and its validation
split (export judges int8 parity on data the quantizer never saw). Both are plain ``.npy``
float32 model tensors and int64 labels, read with ``allow_pickle=False``; the manifest
records their sha256, so a changed file is refused rather than trusted.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from edgecnn.deploy.bundle import sha256_file
from edgecnn.deploy.errors import BundleError

FOLDER = "heldout"
CALIBRATION_SAMPLES = 300   # export's default --max-calib-samples
VALIDATION_SAMPLES = 2000   # enough for 0.05 pp steps; keeps a model directory small


def balanced_index(labels: np.ndarray, num_classes: int, max_samples: int) -> np.ndarray:
    """At most ``max_samples`` indexes, the same number per present class (evenly spaced)."""
    labels = np.asarray(labels)
    present = [c for c in range(num_classes) if (labels == c).any()]
    per_class = max(1, max_samples // max(1, len(present)))
    chosen = []
    for c in present:
        idx = np.flatnonzero(labels == c)
        if len(idx) > per_class:
            idx = idx[np.unique(np.linspace(0, len(idx) - 1, per_class).round().astype(int))]
        chosen.append(idx)
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)


def proportional_index(labels: np.ndarray, max_samples: int) -> np.ndarray:
    """At most ``max_samples`` indexes keeping each class's share (evenly spaced per class)."""
    labels = np.asarray(labels)
    if len(labels) <= max_samples:
        return np.arange(len(labels))
    order = np.argsort(labels, kind="stable")
    return np.sort(order[np.unique(np.linspace(0, len(order) - 1, max_samples).round()
                                   .astype(int))])


def save_heldout(directory, x_train, y_train, x_val, y_val, num_classes: int) -> dict:
    """Write the calibration sample and the validation tensors; the manifest entry."""
    folder = Path(directory) / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    entry = {}
    picks = {"calibration": (x_train, y_train, balanced_index(y_train, num_classes,
                                                              CALIBRATION_SAMPLES)),
             "validation": (x_val, y_val, proportional_index(y_val, VALIDATION_SAMPLES))}
    for name, (x, y, index) in picks.items():
        files = {}
        for part, values, dtype in (("x", x[index], np.float32), ("y", y[index], np.int64)):
            path = folder / f"{name}_{part}.npy"
            np.save(path, np.ascontiguousarray(values, dtype=dtype), allow_pickle=False)
            files[part] = {"file": f"{FOLDER}/{path.name}", "sha256": sha256_file(path)}
        entry[name] = {**files, "samples": int(len(index)),
                       "per_class": np.bincount(y[index], minlength=num_classes).tolist()}
    return entry


def load_heldout(model_dir, name: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(tensors, labels) of ``name`` ("calibration" or "validation") from a model directory
    (an ``edgecnn.modeldir.ModelDir``), or None when it keeps none (older directories)."""
    data = model_dir.manifest.get("data")
    held = data.get("held_out") if isinstance(data, dict) else None
    entry = held.get(name) if isinstance(held, dict) else None
    if not entry:
        return None
    where = f"{model_dir.path}: edgecnn.json data.held_out.{name}"
    if not isinstance(entry, dict):
        raise BundleError(f"{where} should be an object; found {type(entry).__name__}")
    root = Path(model_dir.path).resolve()
    arrays = []
    for part in ("x", "y"):
        record = entry.get(part)
        if not (isinstance(record, dict) and isinstance(record.get("file"), str)
                and isinstance(record.get("sha256"), str)):
            raise BundleError(f"{where}.{part} should be {{\"file\": ..., \"sha256\": ...}}; "
                              f"found {record!r:.80}")
        if "\0" in record["file"]:
            raise BundleError(f"{where}.{part}.file holds a NUL character")
        path = Path(model_dir.path) / record["file"]
        if (Path(record["file"]).is_absolute() or ".." in Path(record["file"]).parts
                or not path.resolve().is_relative_to(root)):
            raise BundleError(f"{model_dir.path}: held-out file {record['file']!r} points "
                              "outside the model directory")
        if not path.is_file():
            raise BundleError(f"{path} is missing (the model directory lists it)")
        if sha256_file(path) != record["sha256"]:
            raise BundleError(f"{path} does not match the model directory's manifest")
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, EOFError, OSError, zipfile.BadZipFile) as exc:
            # an object array needs pickle (refused); or not an array at all
            raise BundleError(f"{path} is not a plain numeric array ({exc})") from None
        if not isinstance(array, np.ndarray):   # an .npz archive under an .npy name
            array.close()
            raise BundleError(f"{path} is not a .npy array (found {type(array).__name__})")
        arrays.append(array)
    x, y = arrays
    if x.ndim < 2 or not np.issubdtype(x.dtype, np.number):
        raise BundleError(f"{model_dir.path}: {name} tensors should be a numeric batch; "
                          f"found {x.dtype} {x.shape}")
    if len(x) != len(y) or y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise BundleError(f"{model_dir.path}: {name} labels should be integers, one per "
                          f"tensor; found {y.dtype} {y.shape} for {len(x)} tensors")
    return x, y
