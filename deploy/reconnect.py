"""How a live source retries: delays between reconnect attempts."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """Delays between reconnect attempts: initial, doubling up to maximum (seconds)."""

    initial: float = 0.5
    maximum: float = 30.0

    def delays(self):
        delay = self.initial
        while True:
            yield delay
            delay = min(self.maximum, delay * 2)
