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

from edgecnn.deploy.bundle import not_a_file, read_json, sha256_file
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
        if not isinstance(manifest, dict):
            raise BundleError(f"{manifest_path} is not an edgecnn model manifest (expected a "
                              f"JSON object, found {type(manifest).__name__})")
        if manifest.get("format") != MODEL_FORMAT:
            raise BundleError(f"{manifest_path} is not an edgecnn model manifest (expected "
                              f"format {MODEL_FORMAT!r}, found {manifest.get('format')!r})")
        if (why := not_a_file(path / MODEL_FILE)) is not None:
            raise BundleError(f"model directory {path}: {MODEL_FILE} {why}")
        return cls(path=path, manifest=manifest, spec=InputSpec.from_dict(manifest.get("spec")))

    @property
    def model_file(self) -> Path:
        return self.path / MODEL_FILE

    @property
    def architecture(self) -> str:
        return self.manifest.get("architecture", "unknown")

    def model_sha256(self) -> str:
        return sha256_file(self.model_file)

    def check_model_file(self) -> None:
        """The model file is the one training recorded (export, eval and bench refuse a
        model.keras swapped or changed after training)."""
        recorded = self.manifest.get("model_sha256")
        if recorded:
            found = self.model_sha256()
            if recorded != found:
                raise BundleError(f"{self.model_file} does not match its manifest (sha256 "
                                  f"recorded {recorded}, found {found}): it changed after "
                                  "training")

    def load_keras(self):
        """The Keras model, loaded with safe_mode=True (no arbitrary code from the file),
        checked against the manifest: its hash, input shape and number of classes."""
        from edgecnn.tfquiet import import_tensorflow

        self.check_model_file()
        import_tensorflow(f"loading the Keras model {self.model_file}")
        import zipfile

        import keras

        if not zipfile.is_zipfile(self.model_file):
            raise BundleError(f"{self.model_file} is not a .keras archive (a zip file): "
                              "corrupt, empty or not saved by Keras")
        try:
            model = keras.saving.load_model(self.model_file, compile=False, safe_mode=True)
        except Exception as exc:  # keras raises many types for a bad file
            # Keras's own text can run to kilobytes (the whole layer config): its first line
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise BundleError(f"cannot load {self.model_file} with safe_mode=True (a corrupt "
                              f"or foreign .keras file, or one that would run code?): "
                              f"{first[:300]}") from None
        inputs = tuple(model.inputs[0].shape[1:])
        outputs = model.outputs[0].shape[-1]
        if inputs != tuple(self.spec.input_shape) or outputs != self.spec.num_classes:
            raise BundleError(f"{self.model_file} takes {inputs} and gives {outputs} classes; "
                              f"its manifest says {tuple(self.spec.input_shape)} and "
                              f"{self.spec.num_classes} labels")
        return model


def is_model_dir(path: str | Path) -> bool:
    """A folder whose edgecnn.json is a model manifest, or that holds a model file beside
    an edgecnn.json that is not a bundle's: a model directory (``ModelDir.open`` then says
    what is wrong with it, if anything, such as a model file that is missing)."""
    if not (Path(path) / MANIFEST).is_file():
        return False
    manifest = read_json(Path(path) / MANIFEST, "manifest")
    if isinstance(manifest, dict) and manifest.get("format") == MODEL_FORMAT:
        return True
    return (Path(path) / MODEL_FILE).exists() and not isinstance(manifest, dict)


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
