"""The line-side runtime never imports TensorFlow (or the export toolchain)."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = r"""
import importlib, json, pkgutil, sys
import edgecnn.deploy as deploy
names = ["edgecnn.deploy"]
for info in pkgutil.walk_packages(deploy.__path__, "edgecnn.deploy."):
    importlib.import_module(info.name)
    names.append(info.name)
import edgecnn.cli
heavy = sorted(m for m in sys.modules
               if m.split(".")[0] in ("tensorflow", "keras", "tf2onnx", "onnx", "torch"))
print(json.dumps({"modules": names, "heavy": heavy}))
"""


def test_every_deploy_module_imports_without_tensorflow():
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    modules = set(result["modules"])
    for name in ("engine", "stft", "frames", "samples", "reconnect", "camera", "vibration",
                 "events", "faults", "tiles", "decisions", "runstats", "run", "preprocess",
                 "bundle"):
        assert f"edgecnn.deploy.{name}" in modules
    assert result["heavy"] == [], result["heavy"]
