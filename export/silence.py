"""Silencing converters that print from C++ straight to file descriptors 1 and 2.

The TFLite converter and tf2onnx write diagnostics ("fully_quantize: 0, ...") below
Python's ``sys.stdout``/``sys.stderr``; our progress lines are the ones users should read.
Exceptions still propagate with their messages.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys


@contextlib.contextmanager
def silenced():
    """Send fds 1 and 2 (and Python's stdout/stderr) to /dev/null for the block."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, ValueError):
            pass
    saved = []
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        devnull = None
    try:
        if devnull is not None:
            for fd in (1, 2):
                try:
                    saved.append((fd, os.dup(fd)))
                    os.dup2(devnull, fd)
                except OSError:
                    pass
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        for fd, copy in saved:
            os.dup2(copy, fd)
            os.close(copy)
        if devnull is not None:
            os.close(devnull)


def call_silenced(function, *args, **kwargs):
    with silenced():
        return function(*args, **kwargs)
