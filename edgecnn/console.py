"""Where library progress goes: one line at a time on stderr, or a redrawn bar."""

from __future__ import annotations

import sys
import time


def stderr_line(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class ProgressBar:
    """One line per measured item on stderr: redrawn with \\r on a terminal, otherwise a
    plain start line and a result line (logs stay readable)."""

    def __init__(self, stream=None, width: int = 24, enabled: bool = True):
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.enabled = enabled
        self.tty = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.label = ""
        self._last = 0.0

    def start(self, label: str) -> None:
        self.label = label
        self._last = 0.0
        if not self.enabled:
            return
        if self.tty:
            self._draw(0.0, "")
        else:
            print(f"{label} ...", file=self.stream, flush=True)

    def update(self, fraction: float, note: str = "") -> None:
        if not self.tty:
            return
        now = time.perf_counter()
        if now - self._last < 0.1:  # redraw at most ten times a second
            return
        self._last = now
        self._draw(fraction, note)

    def _draw(self, fraction: float, note: str) -> None:
        fraction = min(max(fraction, 0.0), 1.0)
        filled = int(round(fraction * self.width))
        bar = "#" * filled + "-" * (self.width - filled)
        self.stream.write(f"\r{self.label:<18} [{bar}] {fraction * 100:3.0f}% {note:<28}")
        self.stream.flush()

    def done(self, summary: str) -> None:
        if not self.enabled:
            return
        if self.tty:
            line = f"\r{self.label:<18} [{'#' * self.width}] {summary}"
            self.stream.write(line.ljust(self.width + 60) + "\n")
            self.stream.flush()
        else:
            print(f"{self.label}: {summary}", file=self.stream, flush=True)
