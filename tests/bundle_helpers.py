"""Hostile-bundle helpers: copies of a shipped bundle with an edited manifest."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from edgecnn.deploy.bundle import MANIFEST, shipped_bundles

CALIBRATION = Path(__file__).resolve().parents[1] / "calibration_data"
RECORDING = CALIBRATION / "cwru" / "12k_Drive_End_B007_1_119.mat"


def copy_shipped(name: str, target: Path) -> Path:
    """A copy of shipped bundle ``name`` at ``target`` (a tmp dir of the test)."""
    shutil.copytree(shipped_bundles()[name], target)
    return target


def manifest(bundle: Path) -> dict:
    return json.loads((bundle / MANIFEST).read_text(encoding="utf-8"))


def write_manifest(bundle: Path, data) -> Path:
    """Write ``data`` (JSON value, or raw text) as the bundle's manifest."""
    text = data if isinstance(data, str) else json.dumps(data, indent=2)
    (bundle / MANIFEST).write_text(text, encoding="utf-8")
    return bundle


def edit(bundle: Path, change) -> Path:
    """Apply ``change(manifest_dict)`` to the manifest in place."""
    data = manifest(bundle)
    change(data)
    return write_manifest(bundle, data)


def run_cli(*args, env=None, cwd=None) -> subprocess.CompletedProcess:
    """``edgecnn ARGS`` in a fresh interpreter (exit code, stdout, stderr as a user sees)."""
    return subprocess.run([sys.executable, "-c", "from edgecnn.cli import main; main()",
                           *map(str, args)], capture_output=True, text=True, timeout=300,
                          env=env, cwd=cwd)


def assert_clean_refusal(proc: subprocess.CompletedProcess, *expected: str) -> str:
    """Exit 2, one 'error:' line naming what is wrong, no traceback."""
    err = proc.stderr
    assert proc.returncode == 2, (proc.returncode, err)
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]
