"""Engine runners: copy-free batch-1 path, fixed-batch models, thread options, bad models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgecnn.deploy.bundle import Bundle
from edgecnn.deploy.engine import EngineOptions, open_engine, open_for_run
from edgecnn.deploy.errors import BundleError, InputError
from runtime_helpers import brightness_model, image_spec, make_image_bundle, write_bundle


def test_runner_shares_its_buffers_and_matches_predict(tmp_path):
    bundle = make_image_bundle(tmp_path / "conv bundle", size=48, kind="conv")
    engine = open_engine(bundle)
    runner = engine.runner((48, 48, 1), 1)
    rng = np.random.default_rng(0)
    outputs = runner.outputs
    for _ in range(3):
        runner.inputs[0] = rng.random((48, 48, 1), dtype=np.float32)
        out = runner.run()
        assert out is outputs                      # same buffer every run: no allocation
        np.testing.assert_allclose(out, engine.predict(runner.inputs), rtol=1e-6, atol=1e-7)
    batch = engine.runner((48, 48, 1), 4)
    batch.inputs[...] = rng.random(batch.inputs.shape, dtype=np.float32)
    np.testing.assert_allclose(batch.run(), engine.predict(batch.inputs), rtol=1e-6, atol=1e-7)


def test_fixed_batch_one_model_runs_tiles_one_by_one(tmp_path):
    spec = image_spec(16)
    bundle = write_bundle(tmp_path / "fixed", spec, brightness_model(spec, batch=1))
    engine = open_engine(bundle)
    runner = engine.runner(spec.input_shape, 3)
    for i, level in enumerate((0.2, 0.6, 1.0)):
        runner.inputs[i] = level
    probs = runner.run()
    assert list(probs.argmax(1)) == [1, 3, 5]
    for i in range(3):
        np.testing.assert_allclose(probs[i], engine.predict(runner.inputs[i:i + 1])[0],
                                   rtol=1e-6)


def test_session_options_are_applied(tmp_path):
    bundle = make_image_bundle(tmp_path / "b", size=16)
    engine = open_engine(bundle, options=EngineOptions(threads=2, spinning=False))
    so = engine.session.get_session_options()
    assert so.intra_op_num_threads == 2
    assert so.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    spinning = open_engine(bundle, options=EngineOptions(spinning=True))
    assert spinning.session.get_session_options().get_session_config_entry(
        "session.intra_op.allow_spinning") == "1"
    with pytest.raises(InputError):
        EngineOptions(threads=0)


def test_more_threads_than_cores_is_said_once(caplog, monkeypatch):
    """Threads beyond the cores slow inference: the option is kept (the user asked for
    it), with a note, once per count and process."""
    import logging
    import os

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    with caplog.at_level(logging.WARNING):
        assert EngineOptions(threads=2).threads == 2
        assert "cores" not in caplog.text
        for _ in range(3):
            assert EngineOptions(threads=250).threads == 250
    assert caplog.text.count("--threads 250 on a machine with 2 cores") == 1


def test_model_that_does_not_fit_its_spec_is_a_bundle_error(tmp_path):
    model_spec = image_spec(16)
    bundle = write_bundle(tmp_path / "mismatch", model_spec, brightness_model(model_spec))
    engine = open_engine(bundle)
    with pytest.raises(BundleError, match="does not accept input"):
        engine.runner((20, 20, 3), 1)
    with pytest.raises(BundleError, match="needs a vibration model"):
        open_for_run(Bundle.open(bundle), "signal")


def test_a_format_that_failed_parity_at_export_is_run_with_a_warning(tmp_path, caplog):
    import json
    import logging

    from edgecnn.deploy.bundle import MANIFEST

    bundle = make_image_bundle(tmp_path / "b", size=16)
    manifest = json.loads((bundle / MANIFEST).read_text())
    manifest["verification"] = {"onnx": {"passed": False,
                                         "failures": ["agreement 91.0 % < 99.0 %"]}}
    (bundle / MANIFEST).write_text(json.dumps(manifest))
    with caplog.at_level(logging.WARNING, logger="edgecnn.deploy"):
        open_for_run(bundle, "image")
    assert "onnx of" in caplog.text and "failed its parity check at export " \
        "(agreement 91.0 % < 99.0 %)" in caplog.text


def test_a_litert_run_prints_no_delegate_banner_but_keeps_other_output(tmp_path):
    """LiteRT's C++ "INFO: Created TensorFlow Lite XNNPACK delegate" line is held back
    from the user's console; the run's own notes, and anything else written to stderr
    during that first allocation, still come through."""
    import subprocess
    import sys

    pytest.importorskip("ai_edge_litert")
    recording = Path(__file__).resolve().parents[1] / "calibration_data" / "cwru" / \
        "normal_0_97.mat"
    cli = [sys.executable, "-c", "from edgecnn.cli import main; main()", "run", "vibration",
           "cwru", "--source", str(recording), "--format", "tflite-int8", "--max-windows", "3"]
    done = subprocess.run(cli, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "XNNPACK" not in done.stderr + done.stdout
    assert "resampled to the model's 12000 Hz" in done.stderr
    script = ("import os; from edgecnn.deploy.engine import _without_litert_banner as q\n"
              "q(lambda: (os.write(2, b'INFO: Created TensorFlow Lite XNNPACK delegate for "
              "CPU.\\n'), os.write(2, b'a real warning\\n')))\n"
              "q(lambda: os.write(2, b'later\\n'))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and done.stderr == "a real warning\nlater\n", done.stderr
