"""The vibration pipeline: samples -> ring buffer + streaming STFT -> infer -> events.

``run_vibration`` is what ``edgecnn run vibration`` calls. Every window of the InputSpec's
length, ``hop`` samples after the previous one, becomes exactly the spectrogram tensor
training made from the same samples (``stft.StreamingSpectrogram``) and is classified.
Windows with NaN/Inf samples are not classified; clipping, flat (dead-sensor) runs and
stream gaps are reported as source faults.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np

from .decisions import Debouncer, Persisted
from .engine import EngineOptions, open_for_run
from .health import SIGNAL_HEALTH_FAULTS, fault_event as health_event, monitor_for
from .errors import InputError
from .events import utc_now
from .runstats import LatencyHistogram, RunSummary, StopFlag, counter_dict
from .reconnect import Backoff
from .samples import SampleSource, open_sample_source
from .stft import StreamingSpectrogram

SIGNAL_FAULTS = ("nonfinite", "clipped", "flatline", "gap")


@dataclass(frozen=True)
class SignalChecks:
    """Per-window sanity checks.

    clip_level     -- |x| at or above this is clipped; None: a window is clipped when at
                      least ``clip_count`` samples sit within 0.1 % of its own peak
    flat_seconds   -- a run of identical samples this long is a dead sensor / filled gap
    """

    clip_level: float | None = None
    clip_count: int = 4
    flat_seconds: float = 0.05

    def __post_init__(self) -> None:
        if self.clip_level is not None and self.clip_level <= 0:
            raise InputError(f"clip level must be positive; found {self.clip_level}")
        if self.clip_count < 2 or self.flat_seconds <= 0:
            raise InputError("clip_count must be >= 2 and flat_seconds positive")


class WindowChecker:
    """Per-window fault checks on preallocated scratch buffers (tens of microseconds for a
    10000-sample window, so small hops stay cheap)."""

    def __init__(self, length: int, checks: SignalChecks, flat_samples: int):
        self.checks = checks
        self.flat = max(2, int(flat_samples))
        self._abs = np.empty(length)
        self._neq = np.empty(length - 1, dtype=bool)

    def __call__(self, samples: np.ndarray) -> list[str]:
        """Fault names for one window of samples (empty: the window is clean)."""
        if not np.isfinite(np.add.reduce(samples)):   # any NaN/Inf makes the sum non-finite
            if not np.isfinite(samples).all():
                return ["nonfinite"]
        found = []
        peak = np.abs(samples, out=self._abs[:len(samples)])
        if self.checks.clip_level is not None:
            clipped = peak.max() >= self.checks.clip_level
        else:
            top = peak.max()
            clipped = top > 0 and \
                np.count_nonzero(peak >= top * 0.999) >= self.checks.clip_count
        if clipped:
            found.append("clipped")
        neq = np.not_equal(samples[1:], samples[:-1], out=self._neq[:len(samples) - 1])
        equal_pairs = len(neq) - np.count_nonzero(neq)
        if equal_pairs >= self.flat - 1 and _longest_flat_run(samples) >= self.flat:
            found.append("flatline")
        return found


def window_faults(samples: np.ndarray, checks: SignalChecks, flat_samples: int) -> list[str]:
    """Fault names for one window of samples (empty: the window is clean)."""
    return WindowChecker(len(samples), checks, flat_samples)(samples)


def _longest_flat_run(samples: np.ndarray) -> int:
    """Length (in samples) of the longest run of identical consecutive values."""
    change = np.flatnonzero(samples[1:] != samples[:-1])
    if len(change) == 0:
        return len(samples)
    bounds = np.concatenate(([-1], change, [len(samples) - 1]))
    return int(np.max(np.diff(bounds)))


def run_vibration(bundle, source, *, fmt: str | None = None,
                  options: EngineOptions = EngineOptions(), hop: int | None = None,
                  realtime: bool = False, sample_rate: float | None = None,
                  channel: str | None = None, min_windows: int = 1,
                  threshold: float = 0.6, class_thresholds: dict[str, float] | None = None,
                  ignore_classes: Iterable[str] = (), max_windows: int | None = None,
                  duration: float | None = None, sinks: Iterable = (),
                  probabilities: bool = False, checks: SignalChecks = SignalChecks(),
                  backoff: Backoff = Backoff(), stop: StopFlag | None = None,
                  on_event: Callable[[dict], None] | None = None) -> RunSummary:
    """Classify every window of ``source`` (a SampleSource, a recording path, ``-`` for
    float32 on stdin, or ``tcp://host:port``) with a vibration bundle.

    ``sample_rate`` is the rate of a stdin/TCP stream (default: the model's), or of a
    recording file that does not state its own. Events go to every sink and ``on_event``.
    """
    bundle, engine, entry = open_for_run(bundle, "signal", fmt, options)
    spec = bundle.spec
    sig = spec.signal
    debouncer = Debouncer(spec.labels, min_windows, threshold, class_thresholds,
                          ignore_classes)
    streamer = StreamingSpectrogram(spec, hop)
    runner = engine.runner(spec.input_shape, 1)
    sinks = list(sinks)
    stop = stop or StopFlag()
    checker = WindowChecker(sig.window_length, checks,
                            int(round(checks.flat_seconds * sig.sample_rate)))
    src = source if isinstance(source, SampleSource) else open_sample_source(
        source, sig.sample_rate, channel=channel or sig.channel, stream_rate=sample_rate,
        realtime=realtime, backoff=backoff)
    summary = RunSummary(kind="vibration", source=src.name, bundle=str(bundle.path),
                         model_format=entry.get("format", fmt or ""),
                         model_sha256=entry["sha256"], unit="windows")
    latency = LatencyHistogram()
    events: Counter = Counter()
    health = monitor_for(bundle, "signal")   # source health from the training envelope
    faults: Counter = Counter({name: 0 for name in SIGNAL_FAULTS + (
        SIGNAL_HEALTH_FAULTS if health is not None else ())})
    active: set[str] = set()
    started = time.monotonic()
    windows = 0

    def emit(event: dict) -> None:
        for sink in sinks:
            sink.write(event)
        if on_event is not None:
            on_event(event)

    def fault_event(kind: str, window: int, start: int) -> None:
        emit({"time": utc_now(), "type": "fault", "source": src.name, "window": window,
              "start_s": round(start / sig.sample_rate, 6), "fault": kind,
              "model_sha256": summary.model_sha256})

    try:
        while not stop.is_set():
            if duration is not None and time.monotonic() - started >= duration:
                stop.set("duration reached")
                break
            chunk = src.read(timeout=0.2)
            if chunk is None:
                if src.exhausted:
                    stop.set("end of source")
                    break
                continue
            arrived = time.monotonic()
            if chunk.gap:
                faults["gap"] += 1
                fault_event("gap", streamer.windows_emitted, streamer.samples_pushed)
                streamer.reset()
                debouncer.reset()
            for window in streamer.push(chunk.samples):
                windows += 1
                found = checker(window.samples)
                for kind in found:
                    faults[kind] += 1
                    if kind not in active:
                        fault_event(kind, window.index, window.start)
                active = set(found)
                for change in health.check(window.samples) if health is not None and \
                        "nonfinite" not in found else ():
                    faults[change["fault"]] += change["state"] == "start"
                    emit({"time": utc_now(), "source": src.name, "window": window.index,
                          "start_s": round(window.start / sig.sample_rate, 6),
                          **health_event(change), "model_sha256": summary.model_sha256})
                if "nonfinite" in found or (health is not None and health.active):
                    debouncer.reset()   # not classified while the source is unhealthy
                else:
                    runner.inputs[0, :, :, 0] = window.values
                    probs = runner.run()[0]
                    done = time.monotonic()
                    latency.add(done - arrived)
                    summary.processed += 1
                    hit = debouncer.update(0, probs)
                    if hit is not None:
                        events[hit.label] += 1
                        emit(_event(src.name, window.index, window.start, sig.sample_rate,
                                    sig.window_length, hit, (done - arrived) * 1000.0,
                                    summary.model_sha256, "clipped" in found,
                                    probs if probabilities else None, spec.labels))
                if max_windows is not None and windows >= max_windows:
                    stop.set("max windows reached")
                    break
    finally:
        src.close()
    elapsed = time.monotonic() - started
    summary.read = windows
    summary.corrupt = src.stats.bad_chunks
    summary.reconnects = src.stats.reconnects
    summary.faults = counter_dict(faults)
    summary.elapsed_s = round(elapsed, 3)
    summary.fps = summary.processed / elapsed if elapsed > 0 else 0.0
    summary.latency_p50_ms = latency.percentile(50)
    summary.latency_p99_ms = latency.percentile(99)
    summary.events = counter_dict(events)
    summary.stop_reason = stop.reason or "stopped"
    seconds = src.stats.samples / sig.sample_rate
    summary.extra = {"signal_s": round(seconds, 3), "hop": streamer.hop,
                     "x_realtime": round(seconds / elapsed, 1) if elapsed > 0 else None}
    return summary


def _event(source: str, index: int, start: int, rate: float, length: int, hit: Persisted,
           latency_ms: float, sha: str, clipped: bool, probs, labels) -> dict:
    event = {"time": utc_now(), "type": "defect", "source": source, "window": index,
             "class": hit.label, "confidence": round(hit.confidence, 6),
             "mean_confidence": round(hit.mean_confidence, 6), "windows": hit.count,
             "region": [start, length], "start_s": round(start / rate, 6),
             "latency_ms": round(latency_ms, 3), "model_sha256": sha}
    if clipped:
        event["clipped"] = True
    if probs is not None:
        event["probabilities"] = {l: round(float(p), 6) for l, p in zip(labels, probs)}
    return event
