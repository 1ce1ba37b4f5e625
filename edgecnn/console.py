"""Where library progress lines go by default: one line at a time on stderr."""

from __future__ import annotations

import sys


def stderr_line(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
