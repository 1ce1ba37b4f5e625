"""A line-PC install (no 'train' extra): commands that need it say so in one line, parity
and bench run what is installed and name what they skip.

The missing packages are simulated in a subprocess: a sitecustomize on PYTHONPATH puts a
finder first on sys.meta_path that refuses tensorflow, keras, tf2onnx and ai_edge_litert,
as `pip install edgecnn` without extras leaves them out.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CALIB = REPO / "calibration_data"

BLOCKER = '''
import sys

class _NotInstalled:
    """Refuses the packages of the 'train' extra, like an install without it."""
    blocked = ("tensorflow", "keras", "tf2onnx", "ai_edge_litert", "tf_keras")

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.blocked:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, _NotInstalled())
'''


@pytest.fixture(scope="module")
def line_pc(tmp_path_factory):
    """Run ``edgecnn ARGS`` as on a line PC; returns the CompletedProcess."""
    site = tmp_path_factory.mktemp("line-pc-site")
    (site / "sitecustomize.py").write_text(BLOCKER, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(site), *filter(None, [os.environ.get("PYTHONPATH")])])}

    def run(*args, timeout=300):
        return subprocess.run([sys.executable, "-c", "from edgecnn.cli import main; main()",
                               *map(str, args)], capture_output=True, text=True, env=env,
                              timeout=timeout, cwd=tmp_path_factory.mktemp("cwd"))
    return run


def test_the_blocker_really_hides_the_train_extra(line_pc, tmp_path):
    probe = line_pc("--version")
    assert probe.returncode == 0, probe.stderr
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    (tmp_path / "sitecustomize.py").write_text(BLOCKER, encoding="utf-8")
    proc = subprocess.run([sys.executable, "-c", "import keras"], capture_output=True,
                          text=True, env=env, timeout=60)
    assert proc.returncode == 1 and "No module named 'keras'" in proc.stderr


def test_train_names_the_extra_in_one_line_before_reading_data(line_pc, tmp_path):
    proc = line_pc("train", "--task", "neu", "--data", CALIB / "neu", "--out", tmp_path / "m")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: training needs the 'train' extra: pip install 'edgecnn[train]'"]
    assert "loading" not in proc.stdout + proc.stderr
    assert not (tmp_path / "m").exists()


def test_parity_runs_the_onnx_formats_and_names_the_skipped_tflite(line_pc, tmp_path):
    out = tmp_path / "parity.json"
    proc = line_pc("parity", "neu", "--data", CALIB / "neu", "--json", out)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "skipped tflite-int8: needs the 'ai-edge-litert' package" in proc.stdout
    result = json.loads(out.read_text())
    assert set(result["formats"]) == {"onnx", "onnx-int8"}
    assert result["passed"]


def test_parity_asked_for_a_tflite_format_says_what_is_missing(line_pc):
    proc = line_pc("parity", "neu", "--data", CALIB / "neu", "--formats", "tflite-int8")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: format tflite-int8 needs the 'ai-edge-litert' package "
        "(pip install ai-edge-litert, or edgecnn[train])")


def test_bench_runs_the_onnx_formats_and_names_the_skipped_ones(line_pc, tmp_path):
    out = tmp_path / "bench.json"
    proc = line_pc("bench", "cwru", "--data", CALIB / "cwru", "--iterations", 3,
                   "--warmup", 1, "--max-seconds", 0.2, "--batch", 4, "--json", out)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    result = json.loads(out.read_text())
    assert [row["name"] for row in result["rows"]] == ["onnx", "onnx-int8"]
    assert set(result["skipped"]) == {"keras", "tflite", "tflite-fp16", "tflite-int8"}
    assert "skipped keras: the Keras source model needs the 'train' extra" in proc.stdout
    for name in ("tflite", "tflite-fp16", "tflite-int8"):
        assert f"skipped {name}: needs the 'ai-edge-litert' package" in proc.stdout


def test_every_shipped_bundle_is_a_listed_package_so_pip_installs_it_quietly():
    import tomllib

    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    packages = set(config["tool"]["setuptools"]["packages"])
    bundles = {f"edgecnn.deploy.bundles.{p.name}" for p in (REPO / "deploy" / "bundles").iterdir()
               if p.is_dir() and not p.name.startswith((".", "_"))}
    assert bundles and bundles | {"edgecnn.deploy.bundles"} <= packages
