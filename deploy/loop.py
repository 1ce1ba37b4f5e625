"""What every line-side pipeline shares: events to sinks, stop/limit checks, latency,
counters and the end-of-run summary.

A pipeline (camera or vibration) reads its source and classifies; it reports through one
``RunLoop``: ``defect`` and ``fault`` build the event (time, source, model hash added
here), ``emit`` hands it to every sink and the ``on_event`` callback, ``running`` says
whether to go on (stop flag, duration), ``counted`` applies the item limit, and
``finish`` fills the summary. Every event gets a unique, time-sortable ``id`` (the same
in the log, the database and MQTT, so a consumer can drop duplicates).
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections import Counter
from typing import Callable, Iterable

from .events import utc_now
from .options import Limits
from .runstats import LatencyHistogram, RunSummary, StopFlag, counter_dict

_ID_LOCK = threading.Lock()
_last_id = [0, 0]   # milliseconds, sequence of the last id


def event_id() -> str:
    """A UUIDv7 (RFC 9562): 48-bit Unix milliseconds, then a 12-bit sequence within the
    millisecond and 62 random bits; strictly increasing within a process, so ids sort in
    the order the events were made."""
    with _ID_LOCK:
        ms = time.time_ns() // 1_000_000
        last_ms, seq = _last_id
        if ms <= last_ms:
            ms, seq = last_ms, seq + 1
            if seq > 0xFFF:            # 4096 ids in one millisecond: borrow the next one
                ms, seq = ms + 1, 0
        else:
            seq = 0
        _last_id[:] = [ms, seq]
    rand = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (ms << 80) | (0x7 << 76) | (seq << 64) | (0b10 << 62) | rand
    return str(uuid.UUID(int=value))


class RunLoop:
    def __init__(self, summary: RunSummary, *, limits: Limits = Limits(),
                 sinks: Iterable = (), stop: StopFlag | None = None,
                 on_event: Callable[[dict], None] | None = None,
                 fault_names: Iterable[str] = (), item: str = "frame"):
        self.summary = summary
        self.limits = limits
        self.sinks = list(sinks)
        self.stop = stop or StopFlag()
        self.on_event = on_event
        self.item = item                        # "frame" or "window": the event's index key
        self.latency = LatencyHistogram()      # frame/window arrival -> probabilities
        self.inference = LatencyHistogram()    # the model's run alone
        self.events: Counter = Counter()
        self.faults: Counter = Counter({name: 0 for name in fault_names})
        self.source_faults: Counter = Counter()   # stalled / disconnected / realigned: times
        self.source_active: set[str] = set()      # stalled / disconnected now
        # the input's own faults (black, frozen, clipped ...): episodes in ``faults``,
        # frames/windows in ``fault_items``; the open ones: kind -> [monotonic, UTC, items]
        self.fault_items: Counter = Counter()
        self._input_open: dict[str, list] = {}
        self._health_open: dict[str, list] = {}   # health faults: [monotonic, UTC, index]
        self.items = 0
        self.active_faults: tuple[str, ...] = ()   # present now (the pipeline sets it)
        self.started = time.monotonic()
        self.last_item: float | None = None    # monotonic time of the last item taken
        # a live view (``live.LiveHub``) sets this; the pipeline then offers it frames
        self.preview = None

    # -- control
    def begin(self) -> None:
        """Start the clock of frames/s, uptime and ``--duration`` now: a run of several
        sources calls this once every source is open, so one source's time is not
        another's opening (a first start that times the formats takes seconds)."""
        self.started = time.monotonic()

    def running(self) -> bool:
        """False once stopped or past the duration (then the stop reason is set)."""
        if self.stop.is_set():
            return False
        duration = self.limits.duration
        if duration is not None and time.monotonic() - self.started >= duration:
            self.stop.set("duration reached")
            return False
        return True

    def counted(self, n: int = 1) -> bool:
        """Count ``n`` items; True (and stopped) when the item limit is reached."""
        self.items += n
        self.last_item = time.monotonic()
        limit = self.limits.max_items
        if limit is not None and self.items >= limit:
            self.stop.set(f"max {self.item}s reached")
            return True
        return False

    # -- events
    def emit(self, event: dict) -> None:
        for sink in self.sinks:
            sink.write(event)
        if self.on_event is not None:
            self.on_event(event)

    def _base(self, kind: str, index: int) -> dict:
        return {"id": event_id(), "time": utc_now(), "type": kind,
                "source": self.summary.source, self.item: index}

    def fault(self, fault: str, index: int, **fields) -> None:
        event = self._base("fault", index)
        event.update(fields)
        event["fault"] = fault
        event["model_sha256"] = self.summary.model_sha256
        self.emit(event)

    def input_faults(self, present, index: int, details: dict | None = None,
                     **fields) -> None:
        """The input's own faults found in item ``index`` (black, overexposed, frozen,
        resolution; clipped, nonfinite, flatline): a ``start`` event when one appears, an
        ``end`` event (since, duration_s and how many items it held) when it is gone, as
        source-health faults have. ``faults`` counts episodes, ``fault_items`` items."""
        if not present and not self._input_open:     # a sound item: nothing to do
            return
        now = time.monotonic()
        for kind in sorted(set(self._input_open) - set(present)):
            began, wall, items = self._input_open.pop(kind)
            self.fault(kind, index, state="end", since=wall,
                       duration_s=round(now - began, 3), **{f"{self.item}s": items}, **fields)
        for kind in present:
            self.fault_items[kind] += 1
            if kind not in self._input_open:
                self.faults[kind] += 1
                self._input_open[kind] = [now, utc_now(), 0]
                detail = (details or {}).get(kind)
                self.fault(kind, index, state="start", **fields,
                           **({"detail": detail} if detail else {}))
            self._input_open[kind][2] += 1

    def ended_detail(self) -> str:
        """The ``detail`` of the end events a run's end gives its open faults."""
        return f"run ended ({self.stop.reason or 'stopped'})"

    def end_open_faults(self, index: int, source=None, health=None) -> None:
        """At the end of a run every fault still open gets its end event (detail: why the
        run ended), so each start in the log is paired and durations add up: the input's
        own, the health monitor's (``health``) and the source's (``source``, a StatusLog
        or an object with ``end_faults``)."""
        detail = self.ended_detail()
        now = time.monotonic()
        for kind in sorted(self._input_open):
            began, wall, items = self._input_open.pop(kind)
            self.fault(kind, index, state="end", since=wall, duration_s=round(now - began, 3),
                       detail=detail, **{f"{self.item}s": items})
        if health is not None:
            self.health_changes(health.stop(detail), index)
        if source is not None:
            source.end_faults(detail)
            self.source_changes(source.poll_status(), index)

    def source_changes(self, changes, index: int) -> None:
        """Log a source's state changes (``reconnect.StatusChange``: stalled or
        disconnected start/end, realigned) as fault events at item ``index``."""
        for change in changes:
            if change.state != "end":
                self.source_faults[change.fault] += 1
            if change.state == "start":
                self.source_active.add(change.fault)
            elif change.state == "end":
                self.source_active.discard(change.fault)
            self.emit({"id": event_id(), **change.event(
                self.summary.source, **{self.item: index},
                model_sha256=self.summary.model_sha256)})

    def health_changes(self, changes, index: int, **fields) -> None:
        """Log source-health transitions (``health.HealthMonitor.check``: dark, defocus,
        gain_change ... start/end) as fault events at item ``index``."""
        if not changes:       # every checked frame comes here: no import on the way
            return
        from .health import fault_event

        for change in changes:
            name = change["fault"]
            event = self._base("fault", index)
            event.update(fields)
            event.update(fault_event(change))
            if change["state"] == "start":
                self.faults[name] += 1
                self._health_open[name] = [time.monotonic(), event["time"], index]
            elif name in self._health_open:   # its end says since when and for how many
                began, wall, first = self._health_open.pop(name)
                held = max(0, index - first)
                self.fault_items[name] += held
                event.update({"since": wall, "duration_s": round(time.monotonic() - began, 3),
                              f"{self.item}s": held})
            event["model_sha256"] = self.summary.model_sha256
            self.emit(event)

    def defect(self, label: str, index: int, fields: dict, tail: dict | None = None) -> None:
        """An event of class ``label``: time/type/source/index/class, ``fields``, the model
        hash, then the optional ``tail`` (tile, probabilities, snapshot)."""
        self.events[label] += 1
        event = self._base("defect", index)
        event["class"] = label
        event.update(fields)
        event["model_sha256"] = self.summary.model_sha256
        if tail:
            event.update(tail)
        self.emit(event)

    def current_faults(self) -> list[str]:
        """The source faults in force now: stalled/disconnected, then the input's own
        (black, overexposed, clipped ...); empty while the source is healthy."""
        return sorted(self.source_active) + list(self.active_faults)

    def status(self) -> dict:
        """A live snapshot of this source's counters (for status messages and pages)."""
        s = self.summary
        return {"source": s.source, "kind": s.kind, "running": not self.stop.is_set(),
                "uptime_s": round(time.monotonic() - self.started, 3),
                "items": self.items, "processed": s.processed,
                "events": counter_dict(self.events),
                "faults": {k: v for k, v in counter_dict(self.faults).items() if v},
                "current_faults": self.current_faults(),
                "latency_p50_ms": self.latency.percentile(50)}

    # -- end
    def finish(self, **fields) -> RunSummary:
        summary = self.summary
        elapsed = time.monotonic() - self.started
        summary.elapsed_s = round(elapsed, 3)
        summary.fps = summary.processed / elapsed if elapsed > 0 else 0.0
        summary.latency_p50_ms = self.latency.percentile(50)
        summary.latency_p99_ms = self.latency.percentile(99)
        summary.events = counter_dict(self.events)
        summary.faults = counter_dict(self.faults)
        summary.stop_reason = self.stop.reason or "stopped"
        for name, value in fields.items():
            setattr(summary, name, value)
        if self.fault_items:
            summary.extra[f"fault_{self.item}s"] = counter_dict(self.fault_items)
        return summary


class Pipeline:
    """One source through one bundle, reporting through ``self.loop``: ``step(timeout)``
    takes and classifies what the source has (False when nothing came), ``close()``
    releases the source, ``finish()`` fills the summary; ``run`` steps until the loop
    stops. ``multi.run_many`` steps several pipelines in one thread instead."""

    loop: RunLoop

    def step(self, timeout: float) -> bool:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def finish(self) -> RunSummary:
        raise NotImplementedError

    def run(self) -> RunSummary:
        try:
            while self.loop.running():
                self.step(0.2)
        finally:
            self.close()
        return self.finish()
