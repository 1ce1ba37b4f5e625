"""What the offline commands write and refuse: --json beside (never over) their inputs and
outputs, options that contradict each other, and the printed tables."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

CALIB = Path(__file__).resolve().parents[1] / "calibration_data"
BUNDLES = Path(__file__).resolve().parents[1] / "deploy" / "bundles"


def run_cli(*args):
    return subprocess.run([sys.executable, "-c", "from edgecnn.cli import main; main()", *args],
                          capture_output=True, text=True, timeout=300)


def test_json_never_replaces_a_file_the_command_reads(tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(BUNDLES / "neu", bundle)
    manifest = (bundle / "edgecnn.json").read_bytes()
    data = tmp_path / "data"
    shutil.copytree(CALIB / "neu" / "crazing", data / "crazing")
    shutil.copytree(CALIB / "neu" / "scratches", data / "scratches")
    image = data / "crazing" / sorted(p.name for p in (data / "crazing").iterdir())[0]
    pixels = image.read_bytes()
    for args, clash in (
            (("eval", str(bundle), "--data", str(data), "--json", str(bundle / "edgecnn.json")),
             "would replace edgecnn.json of the bundle"),
            (("parity", str(bundle), "--data", str(data), "--json", str(image)),
             f"would replace {image.name} of the data"),
            (("bench", str(bundle), "--no-keras", "--json", str(bundle / "model.onnx")),
             "would replace model.onnx of the bundle")):
        result = run_cli(*args)
        assert result.returncode == 2, result.stderr
        assert clash in result.stderr and "Traceback" not in result.stderr
    assert (bundle / "edgecnn.json").read_bytes() == manifest
    assert image.read_bytes() == pixels
    # beside the inputs is fine; a results file inside the data folder too, also the
    # second time (it is no data: the loaders do not read it)
    result = run_cli("eval", str(bundle), "--data", str(data), "--json",
                     str(tmp_path / "eval.json"))
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "eval.json").read_text())["n"] == 40
    for _ in range(2):
        result = run_cli("eval", str(bundle), "--data", str(data), "--json",
                         str(data / "eval.json"))
        assert result.returncode == 0, result.stderr


def test_options_that_contradict_each_other_are_refused(tmp_path):
    result = run_cli("bench", "neu", "--keras", str(tmp_path), "--no-keras")
    assert result.returncode == 2 and "--no-keras" in result.stderr
    result = run_cli("eval", "cwru", "--task", "neu", "--data", str(CALIB / "neu"))
    assert result.returncode == 2
    assert "takes signal input and --task neu reads image data" in result.stderr
    target = tmp_path / "archs.json"
    result = run_cli("models", "--archs", "--json", str(target))
    assert result.returncode == 0, result.stderr
    names = [a["name"] for a in json.loads(target.read_text())["architectures"]]
    assert "edge-image" in names and "mobilenetv3-small" in names


def test_per_class_table_lines_up_under_its_header():
    result = run_cli("eval", "mnist", "--data", str(CALIB / "mnist"))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    head = next(i for i, line in enumerate(lines) if "precision  recall  support" in line)
    header, first = lines[head], lines[head + 1]
    # one-character labels: each row's support ends where the header's "support" does
    assert len(first) == len(header), (header, first)
    assert first.split()[0] == "0"
