"""`edgecnn demo` (what `make demo` runs) works with no arguments beyond an output folder."""

import json
import subprocess
import sys


def test_demo_runs_every_step_and_leaves_logs_and_reports(tmp_path):
    out = tmp_path / "demo out"
    result = subprocess.run([sys.executable, "-c", "from edgecnn.cli import main; main()",
                             "demo", "--out", str(out)], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    for step in range(1, 6):
        assert f"== {step}/5" in result.stdout
    assert "onnx-int8" in result.stdout and "reference" in result.stdout  # parity table
    assert (out / "model" / "report" / "confusion.png").is_file()
    assert (out / "bundle" / "edgecnn.json").is_file()
    camera = [json.loads(line) for line in (out / "camera-events.jsonl").read_text().splitlines()]
    assert any("class" in event for event in camera)
    vibration = [json.loads(line)
                 for line in (out / "vibration-events.jsonl").read_text().splitlines()]
    assert [event["class"] for event in vibration if "class" in event][:1] == ["IR014"]
    assert f"everything is in {out}" in result.stdout
