"""Training and evaluation on the shipped calibration data, through the CLI and the library."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgecnn.data import load_dataset
from edgecnn.deploy.spec import SignalSpec
from edgecnn.modeldir import ModelDir
from edgecnn.splits import time_split, validation_split

CALIB = Path(__file__).resolve().parents[1] / "calibration_data"


def run_cli(*args):
    return subprocess.run([sys.executable, "-c", "from edgecnn.cli import main; main()", *args],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def tiny_neu(tmp_path_factory):
    out = tmp_path_factory.mktemp("models") / "tiny neu"
    result = run_cli("train", "--task", "neu", "--data", str(CALIB / "neu"), "--out", str(out),
                     "--arch", "tiny-test", "--image-size", "48", "--epochs", "3",
                     "--json", str(out.parent / "train.json"))
    assert result.returncode == 0, result.stderr
    return out, result


def test_train_writes_model_directory_with_spec_report_and_fingerprint(tiny_neu):
    out, result = tiny_neu
    assert "epoch   3/3" in result.stderr  # per-epoch progress
    assert f"model directory: {out}" in result.stdout
    model_dir = ModelDir.open(out)
    manifest = model_dir.manifest
    assert model_dir.spec.labels == ("crazing", "inclusion", "patches", "pitted_surface",
                                     "rolled-in_scale", "scratches")
    assert model_dir.spec.input_shape == (48, 48, 1)
    assert manifest["architecture"] == "tiny-test"
    assert manifest["training"]["task"] == "neu" and manifest["training"]["seed"] == 0
    assert len(manifest["data"]["fingerprint"]) == 64
    assert manifest["data"]["class_counts"]["scratches"] == 20
    assert manifest["metrics"]["validation"]["n"] == 24
    for name in ("confusion.png", "curves.png", "metrics.json"):
        assert (out / "report" / name).stat().st_size > 0
    per_class = json.loads((out / "report" / "metrics.json").read_text())["per_class"]
    assert set(per_class["crazing"]) == {"precision", "recall", "f1", "support"}
    results = json.loads((out.parent / "train.json").read_text())
    assert {"accuracy", "n", "skipped", "per_class", "confusion"} <= set(results)
    assert ModelDir.open(out).load_keras().count_params() > 0


def test_image_training_uses_label_smoothing_and_says_so(tiny_neu):
    out, result = tiny_neu
    assert "loss: cross-entropy with label smoothing 0.1 (targets 0.917 for the true class, " \
        "0.017 for the others)" in result.stderr
    assert ModelDir.open(out).manifest["training"]["label_smoothing"] == 0.1
    # and the model was compiled with it (the saved compile config, not our own record)
    import zipfile

    with zipfile.ZipFile(out / "model.keras") as archive:
        loss = json.loads(archive.read("config.json"))["compile_config"]["loss"]
    assert loss["class_name"] == "SmoothedSparseCrossentropy"
    assert loss["config"]["smoothing"] == 0.1


def test_training_fits_with_the_class_weights_of_its_balance(tmp_path, monkeypatch):
    """What ``fit`` gets, on imbalanced data: sqrt weights by default, none for 'none'."""
    import keras

    from edgecnn.schedule import class_weights
    from edgecnn.training import TrainConfig, train

    data = tmp_path / "data"
    for i, folder in enumerate(sorted((CALIB / "neu").iterdir())[:3]):
        (data / folder.name).mkdir(parents=True)
        for image in sorted(folder.glob("*.jpg"))[:(20, 10, 5)[i]]:
            shutil.copy(image, data / folder.name / image.name)
    seen = []
    real_fit = keras.Model.fit

    def spy(self, *args, class_weight=None, **kwargs):
        seen.append(class_weight)
        return real_fit(self, *args, class_weight=class_weight, **kwargs)

    monkeypatch.setattr(keras.Model, "fit", spy)
    for balance in ("sqrt", "none"):
        train(TrainConfig("images", str(data), str(tmp_path / balance), architecture="tiny-test",
                          image_size=32, epochs=1, balance=balance), log=lambda line: None)
    y_train = np.repeat([0, 1, 2], (16, 8, 4))   # the 80 % per class that train keeps
    assert seen[0] == pytest.approx(class_weights(y_train, 3, 0.5))
    assert seen[0][2] > seen[0][1] > seen[0][0]
    assert seen[1] is None


def test_balance_none_trains_and_keeps_for_plain_accuracy_and_says_so(tiny_neu, tmp_path):
    assert ModelDir.open(tiny_neu[0]).manifest["training"]["balance"] == "sqrt"
    out = tmp_path / "plain"
    result = run_cli("train", "--task", "neu", "--data", str(CALIB / "neu"), "--out", str(out),
                     "--arch", "tiny-test", "--image-size", "32", "--epochs", "2",
                     "--balance", "none")
    assert result.returncode == 0, result.stderr
    assert "class balance off (--balance none): plain cross-entropy, best weights by plain " \
        "validation accuracy" in result.stderr
    assert "(validation accuracy " in result.stderr   # what the kept weights were picked by
    assert ModelDir.open(out).manifest["training"]["balance"] == "none"
    bad = run_cli("train", "--task", "neu", "--data", str(CALIB / "neu"), "--out",
                  str(tmp_path / "x"), "--balance", "sampling")
    assert bad.returncode == 2 and "'sampling' is not one of 'sqrt', 'full', 'none'" in bad.stderr


def test_label_smoothing_is_refused_outside_its_range(tmp_path):
    from edgecnn.deploy.errors import InputError
    from edgecnn.training import TrainConfig, train

    for value in (1.0, -0.1):
        with pytest.raises(InputError, match="label smoothing must be in"):
            train(TrainConfig("images", str(CALIB / "neu"), str(tmp_path / "m"),
                              label_smoothing=value), log=lambda line: None)


def test_eval_reports_the_common_json_keys(tiny_neu, tmp_path):
    out, _ = tiny_neu
    target = tmp_path / "eval.json"
    result = run_cli("eval", str(out), "--data", str(CALIB / "neu"), "--json", str(target))
    assert result.returncode == 0, result.stderr
    metrics = json.loads(target.read_text())
    assert metrics["n"] == 120 and metrics["skipped"] == 0
    assert np.asarray(metrics["confusion"]).sum() == 120
    assert 0.0 <= metrics["accuracy"] <= 1.0
    assert "accuracy" in result.stdout


def test_eval_counts_a_corrupt_image_and_goes_on(tiny_neu, tmp_path):
    out, _ = tiny_neu
    data = tmp_path / "eval data" / "scratches"
    data.mkdir(parents=True)
    for image in sorted((CALIB / "neu" / "scratches").glob("*.jpg"))[:3]:
        (data / image.name).write_bytes(image.read_bytes())
    (data / "scratches_999.jpg").write_bytes(b"not a jpeg")
    (data / "scratches_bomb.png").write_bytes(_png_claiming(50000, 50000))  # 0.5 KB on disk
    target = tmp_path / "eval.json"
    result = run_cli("eval", str(out), "--data", str(data.parent), "--json", str(target))
    assert result.returncode == 0, result.stderr
    metrics = json.loads(target.read_text())
    assert metrics["n"] == 3 and metrics["skipped"] == 2
    assert "scratches_999.jpg" in result.stderr and "scratches_bomb.png" in result.stderr


def _png_claiming(width, height):
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("args, message", [
    (["train", "--task", "nue", "--data", ".", "--out", "x"], "did you mean neu"),
    (["train", "--task", "neu", "--data", ".", "--out", "x", "--arch", "resnet"],
     "unknown model 'resnet'"),
    (["eval", "no-such-model", "--data", "."], "no bundle at no-such-model"),
])
def test_usage_errors_are_clean_with_exit_code_2(args, message, tmp_path):
    result = run_cli(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("extra, message", [
    (["--epochs", "0"], "--epochs must be at least 1; found 0"),
    (["--patience", "0"], "--patience must be at least 1; found 0"),
    (["--batch-size", "0"], "--batch-size must be at least 1; found 0"),
    (["--lr", "0"], "--lr must be a positive number; found 0.0"),
    (["--lr", "-1"], "--lr must be a positive number; found -1.0"),
    (["--json", "/proc/no/such.json"], "cannot write --json /proc/no/such.json"),
    (["--out-is", "busy"], "is not empty and not an edgecnn model directory"),
    (["--out-is", "inside"], "is inside the training data"),
    (["--val-fraction", "1.5"], "--val-fraction must be between 0 and 1; found 1.5"),
    (["--window-length", "2048", "--transform", "db"],
     "--window-length, --transform apply to signal tasks; task neu reads images"),
])
def test_bad_training_numbers_and_targets_fail_before_the_training(extra, message, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(CALIB / "neu", data)
    out = tmp_path / "m"
    if extra[:1] == ["--out-is"]:
        out = data / "m" if extra[1] == "inside" else tmp_path / "busy"
        out.mkdir()
        (out / "notes.txt").write_text("mine")
        extra = []
    result = run_cli("train", "--task", "neu", "--data", data, "--out", out, *extra)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert "loading" not in result.stderr          # refused before any data was read
    assert {p.name for p in data.iterdir()} - {"m"} == {p.name for p in (CALIB / "neu").iterdir()}
    assert not (out / "model.keras").exists()


def test_training_on_one_class_is_refused(tmp_path):
    only = tmp_path / "one" / "crazing"
    only.mkdir(parents=True)
    for image in sorted((CALIB / "neu" / "crazing").glob("*.jpg"))[:4]:
        (only / image.name).write_bytes(image.read_bytes())
    result = run_cli("train", "--task", "neu", "--data", str(only.parent), "--out",
                     str(tmp_path / "m"), "--epochs", "1")
    assert result.returncode == 2
    assert "only one class" in result.stderr and "Traceback" not in result.stderr


def test_recordings_split_by_time_without_overlap():
    spec = SignalSpec(window_length=4096)
    samples = load_dataset("cwru", CALIB / "cwru", spec, stride=512)
    train, val = validation_split(samples, 0.2, seed=0, window_length=4096)
    assert len(train) and len(val)
    sources = np.asarray(samples.sources)
    for source in np.unique(sources):
        t = samples.positions[train][sources[train] == source]
        v = samples.positions[val][sources[val] == source]
        assert len(t) and len(v), source
        assert t.max() + 4096 <= v.min(), f"{source}: train and validation windows overlap"
    assert set(samples.labels[val]) == set(range(10))


def test_a_brief_recording_still_validates_its_last_window():
    """A recording a few windows long (CWRU's 1.3 s IR014 at 48 kHz is one) holds no whole
    window in its last fifth: its last window validates, not the whole file training."""
    spec = SignalSpec(window_length=4096)
    samples = load_dataset("cwru", CALIB / "cwru", spec, stride=4096)
    sources = np.asarray(samples.sources)
    source = sources[0]
    brief = samples.subset(np.flatnonzero((sources == source) & (samples.positions < 5 * 4096)))
    assert len(brief) == 5
    train, val = time_split(brief, 4096, 0.1, seed=0)
    assert list(brief.positions[val]) == [4 * 4096]
    assert list(brief.positions[train]) == [0, 4096, 2 * 4096, 3 * 4096]


def test_short_recordings_are_assigned_whole():
    spec = SignalSpec(window_length=4096)
    samples = load_dataset("cwru", CALIB / "cwru", spec, stride=4096)
    # One window per recording cannot be split by time: whole recordings go to one side.
    first = samples.subset(np.flatnonzero(samples.positions == 0))
    train, val = time_split(first, 4096, 0.5, seed=1)
    assert len(train) + len(val) == len(first)
    assert not set(np.asarray(first.sources)[train]) & set(np.asarray(first.sources)[val])


def test_a_model_directory_changed_after_training_is_refused_in_one_line(tiny_neu, tmp_path):
    import shutil

    swapped = tmp_path / "swapped"
    shutil.copytree(tiny_neu[0], swapped)
    with open(swapped / "model.keras", "ab") as handle:   # not the file training hashed
        handle.write(b"\0")
    result = run_cli("eval", str(swapped), "--data", str(CALIB / "neu"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "does not match its manifest" in result.stderr
    (swapped / "edgecnn.json").write_text("[1, 2, 3]")
    result = run_cli("eval", str(swapped), "--data", str(CALIB / "neu"))
    assert result.returncode == 2 and "expected a JSON object, found list" in result.stderr


def test_the_demo_never_replaces_a_model_folder_it_did_not_write(tmp_path):
    from edgecnn.demo import _fresh
    from edgecnn.deploy.errors import InputError

    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "mine.txt").write_text("a user's own notes")
    with pytest.raises(InputError, match="is not a model an earlier demo wrote"):
        _fresh(tmp_path)
    assert (tmp_path / "model" / "mine.txt").read_text() == "a user's own notes"
    (tmp_path / "model" / "mine.txt").unlink()
    (tmp_path / "line-video.avi").write_bytes(b"old")
    _fresh(tmp_path)                       # empty, or the demo's own: replaced
    assert not (tmp_path / "model").exists() and not (tmp_path / "line-video.avi").exists()


def test_pictures_given_to_a_recordings_task_say_what_the_folder_holds(tmp_path):
    result = run_cli("eval", "cwru", "--data", CALIB / "neu")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "it holds 120 .jpg files" in result.stderr and "is --task right?" in result.stderr


def test_classes_left_without_a_validation_sample_are_named():
    from edgecnn.data.samples import LabelledSamples
    from edgecnn.training import _note_unvalidated, validation_split

    labels = np.array([0] * 20 + [1] * 20 + [2])
    samples = LabelledSamples("image", [np.zeros((8, 8), np.uint8)] * len(labels), labels,
                              ("crazing", "patches", "scratch "), ["x"] * len(labels),
                              np.zeros(len(labels), np.int64))
    _, val_index = validation_split(samples, 0.2, 0, None)
    said = []
    _note_unvalidated(samples, val_index, said.append)
    assert said == ["note: 1 class(es) with no validation sample (too few): 'scratch ' "
                    "(1 sample(s)); they are trained but not validated: add samples, or "
                    "leave them out"]


def test_a_training_that_fails_leaves_no_empty_out_folder(tmp_path):
    from edgecnn.deploy.errors import DataError
    from edgecnn.training import TrainConfig, train

    data = tmp_path / "data" / "crazing"
    data.mkdir(parents=True)
    for source in sorted((CALIB / "neu" / "crazing").glob("*.jpg"))[:3]:
        shutil.copy(source, data / source.name)
    out = tmp_path / "runs" / "m"
    with pytest.raises(DataError, match="only one class"):
        train(TrainConfig(task="images", data=str(tmp_path / "data"), out=str(out),
                          architecture="tiny-test", epochs=1), log=lambda line: None)
    assert not out.exists()


def test_an_export_folder_that_cannot_be_made_fails_before_the_model_loads(tmp_path):
    (tmp_path / "line.avi").write_bytes(b"")
    for out, message in ((tmp_path / "line.avi" / "b", "line.avi is a file, not a folder"),
                         ("/proc/no-bundle", "no folder can be made in /proc")):
        result = run_cli("export", str(tmp_path), "--out", str(out))
        assert result.returncode == 2 and message in result.stderr, result.stderr
        assert "partial" not in result.stderr and "Traceback" not in result.stderr


def test_large_images_among_small_ones_train_on_native_pixels_when_the_resize_is_bilinear(
        tmp_path):
    # a few images many times the input (kept at first as area-averaged copies) where most
    # are small: the model resizes bilinearly, so those few are read again natively, as
    # eval, parity and the runtime resize them
    import cv2

    from edgecnn.training import TrainConfig, train

    data = tmp_path / "data"
    for cls in ("crazing", "patches"):
        (data / cls).mkdir(parents=True)
        files = sorted((CALIB / "neu" / cls).glob("*.jpg"))
        for source in files[:5]:          # 64 px: 1.3x the input, bilinear by the rule
            small = cv2.resize(cv2.imread(str(source), cv2.IMREAD_GRAYSCALE), (64, 64))
            cv2.imwrite(str(data / cls / f"{source.stem}.png"), small)
        big = cv2.resize(cv2.imread(str(files[5]), cv2.IMREAD_GRAYSCALE), (480, 480))
        cv2.imwrite(str(data / cls / "big.png"), big)
    said = []
    result = train(TrainConfig(task="images", data=str(data), out=str(tmp_path / "m"),
                               architecture="tiny-test", image_size=48, epochs=1),
                   log=said.append)
    text = "\n".join(said)
    assert "2 large image(s) read again at native size" in text, text
    assert result.model_dir.spec.image.interpolation == "linear"
