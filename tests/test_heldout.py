"""What training keeps for export: a calibration sample and the validation split, used by
``edgecnn export`` without --calib and for parity judged on held-out data."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgecnn.deploy.errors import BundleError, DataError
from edgecnn.heldout import balanced_index, load_heldout, proportional_index
from edgecnn.modeldir import ModelDir

CALIB = Path(__file__).resolve().parents[1] / "calibration_data"


def run_cli(*args):
    return subprocess.run([sys.executable, "-c", "from edgecnn.cli import main; main()",
                           *map(str, args)], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("heldout") / "model"
    result = run_cli("train", "--task", "neu", "--data", CALIB / "neu", "--out", out,
                     "--arch", "tiny-test", "--image-size", "32", "--epochs", "2")
    assert result.returncode == 0, result.stderr
    return out


def test_training_keeps_a_balanced_calibration_sample_and_the_validation_split(trained):
    model_dir = ModelDir.open(trained)
    x, y = load_heldout(model_dir, "calibration")
    assert x.dtype == np.float32 and x.shape[1:] == (32, 32, 1)
    assert np.bincount(y).tolist() == [16] * 6  # the 96 training images, balanced
    vx, vy = load_heldout(model_dir, "validation")
    assert len(vx) == model_dir.manifest["training"]["val_samples"] == 24
    # the held-out tensors are not in the calibration sample
    assert not any(np.array_equal(a, b) for a in vx[:5] for b in x)
    entry = model_dir.manifest["data"]["held_out"]
    assert entry["calibration"]["x"]["file"] == "heldout/calibration_x.npy"
    assert len(entry["validation"]["y"]["sha256"]) == 64


def test_a_changed_heldout_file_is_refused(trained, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(trained, copy)
    np.save(copy / "heldout" / "validation_y.npy", np.zeros(24, dtype=np.int64))
    with pytest.raises(BundleError, match="does not match"):
        load_heldout(ModelDir.open(copy), "validation")


def test_export_without_calib_uses_the_kept_sample_and_judges_on_validation(trained, tmp_path):
    report = tmp_path / "export.json"
    result = run_cli("export", trained, "--out", tmp_path / "bundle", "--formats",
                     "onnx,onnx-int8", "--json", report)
    assert result.returncode in (0, 1), result.stderr
    manifest = json.loads((tmp_path / "bundle" / "edgecnn.json").read_text())
    assert manifest["calibration"]["source"].endswith("(training split sample)")
    assert manifest["calibration"]["samples"] == 96
    assert manifest["calibration"]["judged_on"]["samples"] == 24
    assert manifest["verification"]["onnx-int8"]["samples"] == 24
    assert "parity judged on 24 validation samples" in result.stderr
    assert "note: one sample is 4.17 pp of 24, more than the 0.5 pp drop allowed" in result.stderr
    verdict = manifest["verification"]["onnx-int8"]["passed"]
    assert manifest["default_format"] == ("onnx-int8" if verdict else "onnx")


def test_no_calibration_source_is_one_short_line(tmp_path):
    from edgecnn.deploy.spec import ImageSpec, InputSpec
    from edgecnn.export.calibration import load_calibration

    foreign = InputSpec("image", ("ok", "scratch"), image=ImageSpec(32, 32))
    with pytest.raises(DataError) as caught:
        load_calibration(foreign, "images")
    message = str(caught.value)
    assert "\n" not in message and len(message) < 200 and "--calib" in message


def test_index_pickers():
    labels = np.array([0] * 90 + [1] * 10)
    assert np.bincount(labels[balanced_index(labels, 2, 20)]).tolist() == [10, 10]
    picked = labels[proportional_index(labels, 50)]
    assert len(picked) == 50 and 4 <= (picked == 1).sum() <= 6


def test_fewer_calibration_samples_than_classes_take_one_each_and_say_so(trained):
    from edgecnn.export.calibration import load_calibration

    model_dir = ModelDir.open(trained)
    lines = []
    calib = load_calibration(model_dir.spec, "neu", max_samples=2, log=lines.append,
                             model_dir=model_dir)
    assert np.bincount(calib.labels).tolist() == [1] * 6
    assert any("--max-calib-samples 2 is fewer than one sample per class" in line
               and "6 classes" in line for line in lines)
    lines.clear()
    load_calibration(model_dir.spec, "neu", max_samples=12, log=lines.append, model_dir=model_dir)
    assert not any("fewer than one sample per class" in line for line in lines)


@pytest.mark.parametrize("edit", [
    lambda held: held.update(validation="heldout/validation_x.npy"),
    lambda held: held["validation"].update(x="heldout/validation_x.npy"),
    lambda held: held["validation"]["x"].update(sha256=None),
    lambda held: held["validation"]["y"].update(file=7),
])
def test_a_hand_edited_heldout_entry_is_a_bundle_error_not_a_type_error(trained, tmp_path, edit):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(trained, copy)
    manifest = json.loads((copy / "edgecnn.json").read_text())
    edit(manifest["data"]["held_out"])
    (copy / "edgecnn.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="held_out.validation"):
        load_heldout(ModelDir.open(copy), "validation")


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 not a zip", "npz"])
def test_a_heldout_file_that_is_not_an_array_is_a_bundle_error(trained, tmp_path, content):
    import hashlib
    import io
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(trained, copy)
    if content == "npz":
        buffer = io.BytesIO()
        np.savez(buffer, x=np.zeros(3))
        content = buffer.getvalue()
    (copy / "heldout" / "calibration_x.npy").write_bytes(content)
    manifest = json.loads((copy / "edgecnn.json").read_text())
    manifest["data"]["held_out"]["calibration"]["x"]["sha256"] = hashlib.sha256(content).hexdigest()
    (copy / "edgecnn.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="calibration_x.npy is not a"):
        load_heldout(ModelDir.open(copy), "calibration")
    result = run_cli("export", copy, "--out", tmp_path / "b")
    assert result.returncode == 2 and "Traceback" not in result.stderr


def test_a_heldout_file_linked_out_of_the_model_directory_is_refused(trained, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(trained, copy)
    outside = tmp_path / "outside.npy"
    shutil.move(copy / "heldout" / "validation_y.npy", outside)
    (copy / "heldout" / "validation_y.npy").symlink_to(outside)
    with pytest.raises(BundleError, match="outside the model directory"):
        load_heldout(ModelDir.open(copy), "validation")


def test_a_model_directory_without_its_model_file_says_so(trained, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(trained, copy)
    (copy / "model.keras").unlink()
    result = run_cli("eval", copy, "--data", CALIB / "neu")
    assert result.returncode == 2
    assert "model.keras is missing" in result.stderr and "Traceback" not in result.stderr
    (copy / "model.keras").mkdir()
    result = run_cli("export", copy, "--out", tmp_path / "b")
    assert result.returncode == 2 and "model.keras is a directory" in result.stderr


def test_a_model_that_would_run_code_or_is_no_archive_is_refused_in_one_line(trained, tmp_path):
    import hashlib
    import shutil

    import keras

    copy = tmp_path / "copy"
    shutil.copytree(trained, copy)

    def replace_model(content: bytes | None = None):
        if content is None:   # a Lambda layer: Python code inside the file
            model = keras.Sequential([keras.Input((32, 32, 1)),
                                      keras.layers.Lambda(lambda x: x * 2),
                                      keras.layers.Flatten(), keras.layers.Dense(6)])
            model.save(copy / "model.keras")
        else:
            (copy / "model.keras").write_bytes(content)
        manifest = json.loads((copy / "edgecnn.json").read_text())
        manifest["model_sha256"] = hashlib.sha256((copy / "model.keras").read_bytes()).hexdigest()
        (copy / "edgecnn.json").write_text(json.dumps(manifest))

    replace_model()
    with pytest.raises(BundleError, match="safe_mode=True") as info:
        ModelDir.open(copy).load_keras()
    assert "\n" not in str(info.value) and len(str(info.value)) < 600
    replace_model(b"")
    with pytest.raises(BundleError, match=r"is not a .keras archive"):
        ModelDir.open(copy).load_keras()
