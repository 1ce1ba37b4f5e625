"""The bundles installed with the package: listed, verified, and accurate on real samples.

calibration_data/ was cut from the same public training sets the shipped models learned
from, so high accuracy here shows the shipped files work end to end (hashes, InputSpec,
labels, preprocessing), not how they generalise: the README reports validation numbers.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgecnn.deploy.bundle import Bundle, shipped_bundles

CALIB = Path(__file__).resolve().parents[1] / "calibration_data"
SHIPPED = {"neu": "neu", "cwru": "cwru", "mnist": "mnist"}


def run_cli(*args):
    return subprocess.run([sys.executable, "-c", "from edgecnn.cli import main; main()", *args],
                          capture_output=True, text=True, timeout=300)


def installed():
    return [name for name in SHIPPED if name in shipped_bundles()]


def test_the_neu_and_cwru_bundles_are_installed():
    assert {"neu", "cwru"} <= set(shipped_bundles())


@pytest.mark.parametrize("name", installed())
def test_shipped_bundle_is_small_verified_and_describes_its_training(name):
    bundle = Bundle.open(name)
    total = sum(p.stat().st_size for p in bundle.path.iterdir())
    assert total < 5 * 1024 * 1024
    assert {"onnx", "onnx-int8"} <= set(bundle.formats)
    for fmt in bundle.formats:
        bundle.file(fmt)  # raises unless the sha256 matches the manifest
    source = bundle.manifest["source_model"]
    assert len(source["data_fingerprint"]) == 64
    assert source["validation"]["accuracy"] >= 0.99
    assert bundle.manifest["task"] == SHIPPED[name]


@pytest.mark.parametrize("name", installed())
def test_shipped_int8_model_classifies_real_samples(name, tmp_path):
    target = tmp_path / "eval.json"
    result = run_cli("eval", name, "--data", str(CALIB / name), "--format", "onnx-int8",
                     "--json", str(target))
    assert result.returncode == 0, result.stderr
    metrics = json.loads(target.read_text())
    assert metrics["n"] >= 70 and metrics["skipped"] == 0
    assert metrics["accuracy"] >= 0.95


def test_models_command_lists_shipped_bundles_with_paths(tmp_path):
    target = tmp_path / "models.json"
    result = run_cli("models", "--json", str(target))
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(target.read_text())["bundles"]}
    assert {"neu", "cwru"} <= set(rows)
    assert Path(rows["neu"]["path"]).is_dir() and rows["neu"]["validation_accuracy"] >= 0.99
    assert "neu" in result.stdout and "edge-image" in result.stdout
