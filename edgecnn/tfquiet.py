"""Quiet TensorFlow, converters and runtimes: the one place that filters C++ output.

TensorFlow's import prints an absl/oneDNN/``cudart_stub ... Could not find cuda drivers``
block on file descriptor 2 (twice), below Python's ``sys.stderr``, whatever
``TF_CPP_MIN_LOG_LEVEL`` says; converters and LiteRT print their own diagnostics the same
way. ``filtered_output`` catches what a block writes to fds 1/2 and replays only the lines
worth reading; ``silenced`` is the same with nothing worth reading. ``import_tensorflow``
sets the environment before the first import and imports TensorFlow inside the filter,
or names the extra to install when it is missing.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
import tempfile
import warnings
from typing import Callable

TRAIN_EXTRA = "needs the 'train' extra: pip install 'edgecnn[train]'"

# TensorFlow's start-up block: absl's pre-init banner and C++ info/warning lines
# ("I0000 00:00:1796130658.663629   13446 port.cc:153] oneDNN custom operations ...").
# Errors (E/F lines) and everything else pass.
_NOISE = re.compile(r"^(WARNING: All log messages before absl::InitializeLog\(\)"
                    r"|[IW]\d{4} [\d:.]+\s+\d+ [\w./-]+:\d+\] )")


def is_tensorflow_noise(line: str) -> bool:
    return bool(_NOISE.match(line))


def tensorflow_installed() -> bool:
    """Whether TensorFlow and Keras can be imported (without importing them)."""
    import importlib.util

    try:
        return all(importlib.util.find_spec(name) is not None
                   for name in ("tensorflow", "keras"))
    except (ImportError, ValueError):
        return False


def quiet_tensorflow() -> None:
    """The environment TensorFlow reads at import: set before the first import."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")
    warnings.filterwarnings("ignore", message=".*`shuffle=True` was passed.*")
    warnings.filterwarnings("ignore", category=DeprecationWarning, module="tf2onnx")


def import_tensorflow(what: str = "this command"):
    """Import TensorFlow and Keras without their start-up noise; ``what`` needs them, so a
    missing package is one InputError naming the extra (exit 2), raised before slow work."""
    from edgecnn.deploy.errors import InputError

    quiet_tensorflow()
    try:
        with filtered_output(keep=lambda line: not is_tensorflow_noise(line), fds=(2,)):
            import keras  # noqa: F401
            import tensorflow as tf
    except ImportError:
        raise InputError(f"{what} {TRAIN_EXTRA}") from None
    try:
        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)
    except ImportError:
        pass
    return tf


@contextlib.contextmanager
def filtered_output(keep: Callable[[str], bool] | None = None, fds=(1, 2)):
    """Catch what the block writes to ``fds`` (C++ included) and to Python's streams, then
    write back only the lines ``keep`` accepts (None: none). Exceptions still propagate."""
    streams = {1: sys.stdout, 2: sys.stderr}
    for stream in streams.values():
        try:
            stream.flush()
        except (AttributeError, ValueError):
            pass
    saved = []
    captures = []
    try:
        for fd in fds:
            try:
                capture = tempfile.TemporaryFile()
                saved.append((fd, os.dup(fd)))
                os.dup2(capture.fileno(), fd)
                captures.append((fd, capture))
            except OSError:
                pass
        python = {fd: io.StringIO() for fd in fds}
        with contextlib.ExitStack() as stack:
            if 1 in python:
                stack.enter_context(contextlib.redirect_stdout(python[1]))
            if 2 in python:
                stack.enter_context(contextlib.redirect_stderr(python[2]))
            yield
    finally:
        for fd, copy in saved:
            os.dup2(copy, fd)
            os.close(copy)
        if keep is not None:
            for fd, capture in captures:
                capture.seek(0)
                text = capture.read().decode("utf-8", "replace") + python[fd].getvalue()
                lines = [line for line in text.splitlines(keepends=True) if keep(line)]
                if lines:
                    os.write(fd, "".join(lines).encode("utf-8"))
        for _, capture in captures:
            capture.close()


def silenced():
    """Drop everything the block writes to fds 1 and 2 (converter and delegate chatter)."""
    return filtered_output(keep=None)


def call_silenced(function, *args, **kwargs):
    with silenced():
        return function(*args, **kwargs)
