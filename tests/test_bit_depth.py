"""16-bit image files (a Mono10/12/14 camera's PNG or TIFF): read by their bit depth, found
from the training files, kept in the InputSpec and used by every later reading."""

import json
import logging
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgecnn.data import load_dataset
from edgecnn.data.images import load_image_folder
from edgecnn.deploy.errors import SpecError
from edgecnn.deploy.preprocess import preprocess_images, read_image, to_8bit
from edgecnn.deploy.spec import ImageSpec, InputSpec
from edgecnn.heldout import load_heldout
from edgecnn.modeldir import ModelDir

NEU = Path(__file__).resolve().parents[1] / "calibration_data" / "neu"
CLASSES = ("crazing", "patches")


def _originals(cls, n=4):
    return [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in sorted((NEU / cls).glob("*.jpg"))[:n]]


def _wide_folder(root: Path, bits: int, n=4) -> Path:
    """The NEU images as ``bits``-bit data in 16-bit files, PNG and TIFF in turn."""
    top = (1 << bits) - 1
    for cls in CLASSES:
        (root / cls).mkdir(parents=True)
        for i, image in enumerate(_originals(cls, n)):
            wide = ((image.astype(np.uint32) * top + 127) // 255).astype(np.uint16)
            cv2.imwrite(str(root / cls / f"{cls}_{i}{'.png' if i % 2 else '.tif'}"), wide)
    return root


def _same_as_originals(samples, n=4):
    expected = [image for cls in CLASSES for image in _originals(cls, n)]
    return all(np.array_equal(a, b) for a, b in zip(samples.items, expected, strict=True))


def test_12_bit_files_are_found_to_be_12_bit_and_read_as_their_8_bit_originals(tmp_path,
                                                                                 caplog):
    root = _wide_folder(tmp_path / "mono12", 12)
    # the trap: OpenCV's own 8-bit reading divides by 257 whatever the depth
    tif = root / "crazing" / "crazing_0.tif"
    assert cv2.imread(str(tif), cv2.IMREAD_GRAYSCALE).max() <= 16
    assert read_image(tif, "gray", 16).max() <= 16
    assert read_image(tif, "gray").max() > 200  # one file alone: its own depth
    with caplog.at_level(logging.WARNING, logger="edgecnn.data"):
        samples = load_image_folder(root)
    assert samples.bit_depth == 12
    assert all(image.dtype == np.uint8 for image in samples.items)
    assert _same_as_originals(samples)
    assert "8 16-bit image file(s), largest value" in caplog.text
    assert "read as 12-bit data, x255/4095 to 8 bits" in caplog.text


def test_8_bit_data_in_16_bit_files_and_8_bit_files_are_left_as_they_are(tmp_path):
    assert load_image_folder(_wide_folder(tmp_path / "wide8", 8)).bit_depth == 8
    assert _same_as_originals(load_image_folder(_wide_folder(tmp_path / "w8", 8)))
    plain = load_image_folder(NEU)
    assert plain.bit_depth is None and plain.items[0].dtype == np.uint8


def test_a_model_reads_16_bit_files_at_its_own_depth_and_says_when_values_overflow(
        tmp_path, caplog):
    root = _wide_folder(tmp_path / "mono12", 12)
    spec = InputSpec("image", CLASSES, image=ImageSpec(64, 64, bit_depth=12))
    assert _same_as_originals(load_dataset("images", root, spec, labels=CLASSES))
    # a model trained on 8-bit files (and specs written before) has no depth: the files'
    # own is found, with a note
    old = InputSpec.from_dict({"kind": "image", "labels": list(CLASSES),
                               "image": {"height": 64, "width": 64}})
    assert old.image.bit_depth is None
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="edgecnn.data"):
        assert _same_as_originals(load_dataset("images", root, old, labels=CLASSES))
    assert "read as 12-bit data" in caplog.text and "trained on 8-bit files" in caplog.text
    # a model of 16-bit data reading 12-bit files: read at its depth, and told
    caplog.clear()
    sixteen = spec.replace(image=ImageSpec(64, 64, bit_depth=16))
    with caplog.at_level(logging.WARNING, logger="edgecnn.data"):
        dark = load_dataset("images", root, sixteen, labels=CLASSES)
    assert max(int(image.max()) for image in dark.items) <= 16
    assert "look like 12-bit data (largest value 4095) but are read as 16-bit data, the " \
           "model's: 16x darker" in caplog.text
    narrow = spec.replace(image=ImageSpec(64, 64, bit_depth=10))
    with caplog.at_level(logging.WARNING, logger="edgecnn.data"):
        clipped = load_dataset("images", root, narrow, labels=CLASSES)
    assert "hold values above 1023, the top of 10-bit data" in caplog.text
    assert max(int(image.max()) for image in clipped.items) == 255


def test_the_bit_depth_can_be_given_and_must_be_a_camera_depth(tmp_path):
    root = _wide_folder(tmp_path / "mono12", 12)
    given = load_dataset("images", root, bit_depth=16)
    assert given.bit_depth == 16 and max(int(i.max()) for i in given.items) <= 16
    with pytest.raises(SpecError, match="bit depth must be one of 8, 10, 12, 14, 16; found 11"):
        ImageSpec(64, 64, bit_depth=11)
    with pytest.raises(Exception, match="does not take bit_depth"):
        load_dataset("cwru", NEU, bit_depth=12)
    assert to_8bit(np.array([[0, 2048, 4095, 65535]], np.uint16), 12).tolist() == \
        [[0, 128, 255, 255]]


def run_cli(*args):
    return subprocess.run([sys.executable, "-c", "from edgecnn.cli import main; main()",
                           *map(str, args)], capture_output=True, text=True, timeout=600)


def test_training_records_the_depth_and_eval_reads_16_bit_files_as_the_originals(tmp_path):
    root = _wide_folder(tmp_path / "mono12", 12, n=8)
    plain = tmp_path / "plain"
    for cls in CLASSES:
        (plain / cls).mkdir(parents=True)
        for i, image in enumerate(_originals(cls, 8)):
            cv2.imwrite(str(plain / cls / f"{cls}_{i}.png"), image)
    out = tmp_path / "model"
    result = run_cli("train", "--task", "images", "--data", root, "--out", out,
                     "--arch", "tiny-test", "--image-size", "32", "--epochs", "2")
    assert result.returncode == 0, result.stderr
    assert "read as 12-bit data" in result.stderr
    spec = json.loads((out / "edgecnn.json").read_text())["spec"]
    assert spec["image"]["bit_depth"] == 12
    # training saw the originals' pixels: each held-out tensor is one of theirs
    originals = preprocess_images([image for cls in CLASSES for image in _originals(cls, 8)],
                                  InputSpec.from_dict(spec))
    held_out, _ = load_heldout(ModelDir.open(out), "validation")
    assert len(held_out) == 4
    assert all(any(np.array_equal(x, o) for o in originals) for x in held_out)
    reports = []
    for name, folder in (("wide", root), ("plain", plain)):
        report = tmp_path / f"{name}.json"
        result = run_cli("eval", out, "--format", "keras", "--data", folder, "--json", report)
        assert result.returncode == 0, result.stderr
        reports.append(json.loads(report.read_text()))
    assert reports[0]["n"] == reports[1]["n"] == 16
    assert reports[0]["confusion"] == reports[1]["confusion"]
    # --bit-depth overrides the model's depth in eval and parity (dark 16-bit pictures)
    for command in (("eval", "neu"), ("parity", "neu")):   # bundles: no TensorFlow start
        result = run_cli(*command, "--data", root, "--bit-depth", "16")
        assert "read as 16-bit data, as --bit-depth gives: 16x darker than they look" \
            in result.stderr, result.stderr
    refused = run_cli("eval", out, "--format", "keras", "--data", root, "--bit-depth", "11")
    assert refused.returncode == 2 and "'11' is not one of" in refused.stderr
    bad = run_cli("train", "--task", "images", "--data", root, "--out", tmp_path / "m2",
                  "--bit-depth", "11")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_the_camera_reads_a_16_bit_still_image_by_the_models_depth(tmp_path):
    """A still image as a camera source is read as training reads it (OpenCV's capture
    scaled a 12-bit PNG by 16 bits: a 'black' fault instead of a class)."""
    import shutil

    from edgecnn.deploy.bundle import shipped_bundles
    from edgecnn.deploy.camera import run_camera

    bundle = tmp_path / "neu12"
    shutil.copytree(shipped_bundles()["neu"], bundle)
    manifest = json.loads((bundle / "edgecnn.json").read_text())
    manifest["spec"]["image"]["bit_depth"] = 12
    (bundle / "edgecnn.json").write_text(json.dumps(manifest))
    image = _originals("patches", 1)[0]
    wide = ((image.astype(np.uint32) * 4095 + 127) // 255).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "frame12.png"), wide)
    cv2.imwrite(str(tmp_path / "frame8.png"), image)

    def first_event(bundle_path, source):
        got = []
        summary = run_camera(str(bundle_path), str(source), min_frames=1, threshold=0.0,
                             on_event=got.append)
        assert summary.read == 1 and summary.processed == 1, summary
        return next(e for e in got if e["type"] == "defect")

    deep = first_event(bundle, tmp_path / "frame12.png")
    plain = first_event(shipped_bundles()["neu"], tmp_path / "frame8.png")
    assert deep["class"] == plain["class"] == "patches"
    assert deep["confidence"] == pytest.approx(plain["confidence"], abs=1e-6)
