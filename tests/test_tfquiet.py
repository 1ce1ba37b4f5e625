"""TensorFlow's start-up block never reaches the terminal; our own lines still do."""

from __future__ import annotations

import subprocess
import sys

from edgecnn.tfquiet import is_tensorflow_noise

PROBE = r"""
import os, sys
from edgecnn.tfquiet import filtered_output, import_tensorflow, is_tensorflow_noise
tf = import_tensorflow("the probe")
print("tensorflow", tf.__version__, file=sys.stderr, flush=True)
with filtered_output(keep=lambda line: not is_tensorflow_noise(line), fds=(2,)):
    os.write(2, b"I0000 00:00:1796130658.663629   13446 cudart_stub.cc:31] "
                b"Could not find cuda drivers\n")
    os.write(2, b"E0000 00:00:1796130658.663629   13446 foo.cc:1] a real error\n")
    os.write(2, b"our own progress line\n")
"""


def test_importing_tensorflow_prints_no_start_up_noise():
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert [line for line in lines if "cuda" in line or "oneDNN" in line or "absl" in line] == []
    assert lines[0].startswith("tensorflow ")
    assert lines[1:] == ["E0000 00:00:1796130658.663629   13446 foo.cc:1] a real error",
                         "our own progress line"]


def test_noise_pattern_keeps_errors_and_ordinary_lines():
    assert is_tensorflow_noise("WARNING: All log messages before absl::InitializeLog() is "
                               "called are written to STDERR")
    assert is_tensorflow_noise("W0000 00:00:1796130595.699425   12051 port.cc:153] oneDNN")
    assert not is_tensorflow_noise("F0000 00:00:1796130595.699425   12051 x.cc:1] fatal")
    assert not is_tensorflow_noise("warning: onnx-int8 breaks the parity thresholds")
