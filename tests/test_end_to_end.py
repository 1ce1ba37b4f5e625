"""train -> export -> parity -> eval -> run, on real calibration files, through the CLI."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgecnn.deploy.samplevideo import make_sample_video, sample_video_images

CALIB = Path(__file__).resolve().parents[1] / "calibration_data"
NEU_CLASSES = {"crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale",
               "scratches"}


def run_cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-c", "from edgecnn.cli import main; main()", *args],
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def line_video(tmp_path_factory):
    return make_sample_video(tmp_path_factory.mktemp("video") / "line video.avi",
                             CALIB / "neu", per_class=2, hold=4)


def test_exported_int8_bundle_passes_parity_on_calibration_images(exported_bundle, tmp_path):
    bundle, _, _ = exported_bundle
    target = tmp_path / "parity.json"
    # The session model trained for seconds on 120 images: allow one image of the 120 to
    # flip (0.83 pp), not more.
    result = run_cli("parity", str(bundle), "--data", str(CALIB / "neu"), "--json", str(target),
                     "--max-drop", "0.9", "--min-agreement", "0.99")
    assert result.returncode == 0, result.stdout + result.stderr
    rows = json.loads(target.read_text())["formats"]
    assert {"onnx", "onnx-int8", "tflite-int8"} <= set(rows)
    assert rows["onnx-int8"]["agreement"] >= 0.99


@pytest.mark.parametrize("fmt", ["onnx-int8", "tflite-int8"])
def test_eval_runs_each_bundle_format_like_the_keras_model(exported_bundle,
                                                           trained_image_model_dir, fmt,
                                                           tmp_path):
    bundle, _, _ = exported_bundle
    keras_json, fmt_json = tmp_path / "keras.json", tmp_path / "fmt.json"
    assert run_cli("eval", str(trained_image_model_dir), "--data", str(CALIB / "neu"),
                   "--json", str(keras_json)).returncode == 0
    result = run_cli("eval", str(bundle), "--data", str(CALIB / "neu"), "--format", fmt,
                     "--json", str(fmt_json))
    assert result.returncode == 0, result.stderr
    keras, quantized = json.loads(keras_json.read_text()), json.loads(fmt_json.read_text())
    assert quantized["format"] == fmt and quantized["n"] == keras["n"] == 120
    assert abs(quantized["accuracy"] - keras["accuracy"]) <= 0.025  # at most 3 of 120 differ


def test_camera_runtime_logs_defects_from_a_video_with_the_exported_bundle(exported_bundle,
                                                                          line_video,
                                                                          tmp_path):
    bundle, _, _ = exported_bundle
    log, summary = tmp_path / "events.jsonl", tmp_path / "summary.json"
    result = run_cli("run", "camera", str(bundle), "--source", str(line_video), "--log",
                     str(log), "--json", str(summary), "--min-frames", "2", "--quiet")
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in log.read_text().splitlines()]
    defects = [e for e in events if "class" in e]
    assert defects, "a video of six defect classes produced no event"
    assert {e["class"] for e in defects} <= NEU_CLASSES
    # each event names the class of the image on screen at its frame (image k fills
    # frames 4k..4k+3): the session model knows most of its own training images
    shown = [path.parent.name for path in sample_video_images(CALIB / "neu", 2)]
    right = [e for e in defects if e["class"] == shown[e["frame"] // 4]]
    assert len(right) >= 10, [(e["frame"], e["class"]) for e in defects]
    from edgecnn.deploy.hosts import int8_exact_here

    manifest = json.loads((bundle / "edgecnn.json").read_text())
    assert manifest["default_format"] == "onnx-int8"
    # a full 8-bit file is the default except on x86 without VNNI, where float runs
    ran = "onnx-int8" if int8_exact_here(manifest["files"]["onnx-int8"]) is None else "onnx"
    assert {e["model_sha256"] for e in defects} == {manifest["files"][ran]["sha256"]}
    stats = json.loads(summary.read_text())
    assert stats["read"] == stats["processed"] == 2 * 6 * 4 and stats["dropped"] == 0


def test_vibration_bundle_on_an_image_stream_is_refused(exported_bundle):
    bundle, _, _ = exported_bundle
    result = run_cli("run", "vibration", str(bundle), "--source",
                     str(CALIB / "cwru" / "normal_0_97.mat"))
    assert result.returncode == 2
    assert "image" in result.stderr and "Traceback" not in result.stderr
