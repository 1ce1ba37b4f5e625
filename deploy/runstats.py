"""What a run reports when it ends: counts, rate, latency percentiles, events per class.

Latency is kept in a fixed logarithmic histogram (under 1 % resolution from 1 us to
100 s), so a run of weeks uses constant memory and still reports p50/p99 over all frames.
SIGINT/SIGTERM only set a flag: the loop finishes the frame in hand, the log is closed,
and the summary is printed.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from bisect import bisect_left
from collections import Counter
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .shown import shown


class LatencyHistogram:
    EDGES_MS = np.geomspace(1e-3, 1e5, 2001)
    _EDGES = EDGES_MS.tolist()   # bisect on a list: a few hundred ns per frame

    def __init__(self) -> None:
        self.counts = [0] * (len(self.EDGES_MS) + 1)
        self.n = 0

    def add(self, seconds: float) -> None:
        # bisect_left == np.searchsorted(side="left")
        self.counts[bisect_left(self._EDGES, seconds * 1000.0)] += 1
        self.n += 1

    def percentile(self, q: float) -> float | None:
        """Approximate q-th percentile in ms (geometric centre of the bin)."""
        if not self.n:
            return None
        rank = int(np.ceil(q / 100.0 * self.n))
        i = int(np.searchsorted(np.cumsum(self.counts), max(rank, 1)))
        edges = self.EDGES_MS
        lo = edges[max(i - 1, 0)]
        hi = edges[min(i, len(edges) - 1)]
        return float(np.sqrt(lo * hi))


def _chosen(extra: dict) -> str:
    """How the run's format was picked, as the summary's model line says it."""
    choice = extra.get("format_choice") or {}
    threads = choice.get("threads", 1)
    count = f"{threads} thread{'s' if threads != 1 else ''}"
    if choice.get("by") == "host file":
        return f": this machine's choice for {count}"
    if choice.get("by") == "bundle default":
        return f": the bundle's default, {count}"
    if choice.get("by") == "fallback":
        return f": instead of the bundle's default {choice.get('instead_of')}, {count}"
    return f", {count}" if threads != 1 else ""


@dataclass
class RunSummary:
    """The end-of-run report of a camera or vibration run (also written with --json)."""

    kind: str                       # camera | vibration
    source: str
    bundle: str
    model_format: str
    model_sha256: str
    unit: str                       # frames | windows
    read: int = 0                   # frames taken from the source / windows completed
    processed: int = 0              # classified
    dropped: int = 0                # live frames replaced before the pipeline took them
    corrupt: int = 0                # undecodable frames / unreadable chunks skipped
    faults: dict[str, int] = field(default_factory=dict)   # episodes per fault kind (the
    # start events logged); frames/windows in each: extra["fault_frames"|"fault_windows"]
    reconnects: int = 0
    elapsed_s: float = 0.0
    fps: float = 0.0                # processed per second of wall time
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    events: dict[str, int] = field(default_factory=dict)  # events per class
    stop_reason: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def format(self) -> str:
        """The summary in the user's words. Pipeline internals in ``extra`` (decoded
        frames, CPU ms per thread, ...) are for --json only; a few read as sentences."""
        def ms(v):
            return "-" if v is None else f"{v:.2f} ms"
        events = ", ".join(f"{k} {v}" for k, v in sorted(self.events.items())) or "none"
        counts = {k: v for k, v in self.faults.items() if v}
        for k, v in (self.extra.get("source_faults") or {}).items():  # stalled, disconnected
            if v:
                counts[k] = counts.get(k, 0) + v
        items = self.extra.get(f"fault_{self.unit}") or {}
        faults = ", ".join(f"{k} {v}" + (f" ({items[k]} {self.unit})" if k in items else "")
                           for k, v in sorted(counts.items())) or "none"
        lines = [
            f"{self.kind} run on {shown(self.source)} ({shown(self.stop_reason)})",
            f"  model      {self.bundle} [{self.model_format}{_chosen(self.extra)}] sha256 "
            f"{self.model_sha256[:12]}",
            f"  {self.unit:<10} {self.read} read, {self.processed} classified, "
            f"{self.dropped} dropped, {self.corrupt} corrupt",
            f"  faults     {faults}" + (f"; reconnects {self.reconnects}"
                                        if self.reconnects else ""),
            f"  speed      {self.processed} {self.unit} in {_duration(self.elapsed_s)}"
            + (f" ({self.fps:.0f} {self.unit}/s)" if self.elapsed_s >= 1.0 else "")
            + f"; latency p50 {ms(self.latency_p50_ms)}, p99 {ms(self.latency_p99_ms)}",
            f"  events     {events}",
        ]
        extra = self.extra
        if (extra.get("regions") or 1) > 1:
            lines.append(f"  regions    {extra['regions']} per frame")
        if extra.get("signal_s") is not None:
            x = extra.get("x_realtime")
            # a recording is read as fast as it classifies; a live sensor at its own pace
            speed = ("" if not x or x < 1.5 else f", {x:g}x faster than real time")
            lines.append(f"  signal     {extra['signal_s']:g} s of signal, a window every "
                         f"{extra.get('hop')} samples{speed}")
        if extra.get("log"):
            lines.append(f"  log        {extra['log']}")
        # the storage report of the run's sinks (storage.StorageGuard.report)
        for key in ("storage", "unstored", "mqtt"):
            if key in extra and (key != "unstored" or extra[key]):
                lines.append(f"  {key:<10} {extra[key]}")
        if extra.get("snapshots_not_saved"):
            lines.append(f"  snapshots  {extra['snapshots_not_saved']} not saved (the folder "
                         f"refused them; see the log)")
        return "\n".join(lines)


def _duration(seconds: float) -> str:
    """0.035 s -> '35 ms', 4.2 -> '4.2 s', 3700 -> '1 h 01 min'."""
    if seconds < 1.0:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes} min {int(seconds % 60):02d} s"
    return f"{minutes // 60} h {minutes % 60:02d} min"


class StopFlag:
    """A threading.Event that remembers why it was set. A flag with a ``parent`` (one
    source of several in a process) is also set while the parent is (the signal that
    stops them all); setting it leaves the parent and its siblings alone."""

    def __init__(self, parent: "StopFlag | None" = None) -> None:
        self.event = threading.Event()
        self.parent = parent
        self._reason = ""

    @property
    def reason(self) -> str:
        if not self._reason and self.parent is not None:
            return self.parent.reason
        return self._reason

    def set(self, reason: str) -> None:
        if not self.event.is_set():
            self._reason = reason
        self.event.set()

    def is_set(self) -> bool:
        return self.event.is_set() or (self.parent is not None and self.parent.is_set())

    def wait(self, timeout: float) -> bool:
        if self.parent is None:
            return self.event.wait(timeout)
        deadline = time.monotonic() + timeout
        while not self.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.event.wait(min(left, 0.05))
        return True


@contextmanager
def stop_on_signals(flag: StopFlag, signals=(signal.SIGINT, signal.SIGTERM)):
    """While inside, SIGINT/SIGTERM set ``flag`` instead of killing the process
    (``stopping`` tells work deep inside the run, such as a first-start timing)."""
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, _frame):
        flag.set(signal.Signals(signum).name)

    previous = {s: signal.signal(s, handler) for s in signals}
    _RUNS.append(flag)
    try:
        yield flag
    finally:
        _RUNS.remove(flag)
        for s, h in previous.items():
            signal.signal(s, h)


_RUNS: list[StopFlag] = []     # the stops of the runs inside stop_on_signals now


def stopping() -> bool:
    """Whether a run of this process that listens for SIGINT/SIGTERM was stopped: work it
    has not begun (timing the next source's formats) is then not worth beginning."""
    return any(flag.is_set() for flag in _RUNS)


def counter_dict(counter: Counter) -> dict[str, int]:
    return dict(sorted(counter.items()))
