"""Reading a self-describing bundle: ``BUNDLE_DIR/edgecnn.json`` plus model files.

The manifest (written by ``edgecnn.export``) holds the InputSpec, the labels and, per model
file, its format, sha256, size, tensor names/dtypes and quantization parameters. The
runtime needs nothing else, and refuses any file whose hash does not match.

Manifest layout (``format: edgecnn-bundle``, ``version: 1``)::

    {"format": "edgecnn-bundle", "version": 1, "created": "...Z",
     "spec": {InputSpec}, "labels": [...], "task": "neu" | null,
     "files": {"onnx-int8": {"file": "model.int8.onnx", "format": "onnx-int8",
                             "precision": "float32" | "float16" | "int8",
                             "sha256": "...", "size": 81234,
                             "inputs": [{"name", "dtype", "shape", "scale"?, "zero_point"?}],
                             "outputs": [...], "quantization": {...} | null,
                             "float_nodes": [...]}, ...},
     "options": {format: {option: value}, "thresholds": {"max_drop_pp", "min_agreement"}},
     "calibration": {"source", "task", "samples", "available", "labelled", "per_class",
                     "fingerprint", "files_fingerprint", "warnings", "method"},
     "source_model": {"path", "sha256", "architecture", "created", "validation"},
     "tools": {package: version}, "verification": {format: {"samples", "max_abs_diff",
     "mean_abs_diff", "agreement", "accuracy", "reference_accuracy", "drop_pp",
     "tolerance", "passed", "failures", "ratio_of_float", "blame"?, "fallback"?}}}

``task`` is the training task (how ``edgecnn parity`` / ``eval`` read data for this model);
``float_nodes`` are the layers auto-fallback kept in float in an int8 file; ``scale`` and
``zero_point`` appear on quantized (int8) input/output tensors only.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import BundleError
from .spec import InputSpec

MANIFEST = "edgecnn.json"
BUNDLE_FORMAT = "edgecnn-bundle"
BUNDLE_VERSION = 1
SHIPPED_DIR = Path(__file__).resolve().parent / "bundles"
# Preferred runtime format first: the int8 ONNX model is what a line PC should run.
RUNTIME_PREFERENCE = ("onnx-int8", "onnx", "tflite-int8", "tflite-fp16", "tflite")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def shipped_bundles() -> dict[str, Path]:
    """Bundles installed with the package, by name (``neu``, ``cwru``, ``mnist``)."""
    if not SHIPPED_DIR.is_dir():
        return {}
    return {p.name: p for p in sorted(SHIPPED_DIR.iterdir()) if (p / MANIFEST).is_file()}


def resolve_bundle_path(name_or_path: str | Path) -> Path:
    """A bundle directory from a path or a shipped bundle name."""
    path = Path(name_or_path)
    if path.exists():
        return path
    shipped = shipped_bundles()
    if str(name_or_path) in shipped:
        return shipped[str(name_or_path)]
    names = ", ".join(shipped) or "none installed"
    raise BundleError(f"no bundle at {path} and no shipped bundle of that name "
                      f"(shipped bundles: {names})")


@dataclass(frozen=True)
class Bundle:
    """An opened bundle: manifest read and checked; file hashes checked on use."""

    path: Path
    manifest: dict[str, Any]
    spec: InputSpec

    @classmethod
    def open(cls, name_or_path: str | Path) -> "Bundle":
        path = resolve_bundle_path(name_or_path)
        manifest_path = path / MANIFEST if path.is_dir() else path
        if not manifest_path.is_file():
            raise BundleError(f"{path} is not a bundle: expected {MANIFEST} inside it")
        manifest = read_json(manifest_path, "bundle manifest")
        if manifest.get("format") != BUNDLE_FORMAT:
            found = manifest.get("format", "no 'format' key")
            raise BundleError(f"{manifest_path} is not an edgecnn bundle manifest "
                              f"(expected format {BUNDLE_FORMAT!r}, found {found!r}); "
                              "a training model directory is exported with 'edgecnn export'")
        if manifest.get("version") != BUNDLE_VERSION:
            raise BundleError(f"bundle version {manifest.get('version')!r} is not supported "
                              f"(this edgecnn reads version {BUNDLE_VERSION})")
        files = manifest.get("files")
        if not isinstance(files, dict) or not files:
            raise BundleError(f"{manifest_path} lists no model files")
        spec = InputSpec.from_dict(manifest.get("spec"))
        return cls(path=manifest_path.parent, manifest=manifest, spec=spec)

    @property
    def labels(self) -> tuple[str, ...]:
        return self.spec.labels

    @property
    def formats(self) -> list[str]:
        return list(self.manifest["files"])

    def default_format(self) -> str:
        # export records its choice ("default_format": the preferred format that held
        # parity); older bundles fall back to the runtime's preference order.
        chosen = self.manifest.get("default_format")
        if chosen in self.manifest["files"]:
            return chosen
        for name in RUNTIME_PREFERENCE:
            if name in self.manifest["files"]:
                return name
        return self.formats[0]

    def entry(self, fmt: str | None = None) -> dict[str, Any]:
        fmt = fmt or self.default_format()
        files = self.manifest["files"]
        if fmt not in files:
            raise BundleError(f"bundle {self.path} has no {fmt!r} model; "
                              f"it has: {', '.join(files)}")
        return files[fmt]

    def file(self, fmt: str | None = None) -> Path:
        """Path of a model file after checking its size and sha256 against the manifest."""
        entry = self.entry(fmt)
        path = self.path / entry["file"]
        if not path.is_file():
            raise BundleError(f"bundle file {path} is missing")
        digest = sha256_file(path)
        if digest != entry.get("sha256"):
            raise BundleError(f"bundle file {path} does not match its manifest "
                              f"(sha256 expected {entry.get('sha256')}, found {digest}); "
                              "refusing a modified or corrupted model")
        return path


def read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BundleError(f"{what} {path} not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{what} {path} is not readable JSON: {exc}") from None
