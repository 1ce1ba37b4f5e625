"""A trained model directory: ``model.keras`` + ``edgecnn.json`` + ``report/``.

``edgecnn.json`` (``format: edgecnn-model``) carries the InputSpec, the architecture, the
training configuration, the training-data fingerprint and the validation metrics, so export
and evaluation read everything from the directory and guess nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgecnn.deploy.bundle import read_json, sha256_file
from edgecnn.deploy.errors import BundleError
from edgecnn.deploy.events import utc_now
from edgecnn.deploy.spec import InputSpec

MODEL_FILE = "model.keras"
MANIFEST = "edgecnn.json"
MODEL_FORMAT = "edgecnn-model"
MODEL_VERSION = 1


@dataclass(frozen=True)
class ModelDir:
    path: Path
    manifest: dict[str, Any]
    spec: InputSpec

    @classmethod
    def open(cls, path: str | Path) -> "ModelDir":
        path = Path(path)
        manifest_path = path / MANIFEST
        if not path.is_dir() or not manifest_path.is_file():
            raise BundleError(f"{path} is not a model directory: expected {MANIFEST} and "
                              f"{MODEL_FILE} inside it (made by 'edgecnn train')")
        manifest = read_json(manifest_path, "model manifest")
        if manifest.get("format") != MODEL_FORMAT:
            raise BundleError(f"{manifest_path} is not an edgecnn model manifest (expected "
                              f"format {MODEL_FORMAT!r}, found {manifest.get('format')!r})")
        if not (path / MODEL_FILE).is_file():
            raise BundleError(f"model directory {path} has no {MODEL_FILE}")
        return cls(path=path, manifest=manifest, spec=InputSpec.from_dict(manifest.get("spec")))

    @property
    def model_file(self) -> Path:
        return self.path / MODEL_FILE

    @property
    def architecture(self) -> str:
        return self.manifest.get("architecture", "unknown")

    def model_sha256(self) -> str:
        return sha256_file(self.model_file)

    def load_keras(self):
        """The Keras model, loaded with safe_mode=True (no arbitrary code from the file)."""
        from edgecnn.tfquiet import import_tensorflow

        import_tensorflow(f"loading the Keras model {self.model_file}")
        import keras

        try:
            return keras.saving.load_model(self.model_file, compile=False, safe_mode=True)
        except Exception as exc:  # keras raises many types for a bad file
            raise BundleError(f"cannot load {self.model_file} with safe_mode=True: {exc}") from None


def is_model_dir(path: str | Path) -> bool:
    return (Path(path) / MANIFEST).is_file() and (Path(path) / MODEL_FILE).is_file() and \
        read_json(Path(path) / MANIFEST, "manifest").get("format") == MODEL_FORMAT


def write_model_dir(path: str | Path, model, spec: InputSpec, *, architecture: str,
                    training: dict[str, Any], data: dict[str, Any],
                    metrics: dict[str, Any], health: dict[str, Any] | None = None) -> ModelDir:
    """Save the Keras model and its manifest into ``path`` (created if missing)."""
    import keras

    import edgecnn

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    keras.saving.save_model(model, path / MODEL_FILE)
    manifest = {
        "format": MODEL_FORMAT,
        "version": MODEL_VERSION,
        "created": utc_now("seconds"),
        "edgecnn": edgecnn.__version__,
        "architecture": architecture,
        "spec": spec.to_dict(),
        "training": training,
        "data": data,
        "metrics": metrics,
        "model_sha256": sha256_file(path / MODEL_FILE),
    }
    if health:  # what training inputs look like (edgecnn.deploy.health.fit_envelope)
        manifest["health"] = health
    (path / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n",
                                 encoding="utf-8")
    return ModelDir(path=path, manifest=manifest, spec=spec)
