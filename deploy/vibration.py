"""The vibration pipeline: samples -> ring buffer + streaming STFT -> infer -> events.

``run_vibration`` is what ``edgecnn run vibration`` calls. Every window of the InputSpec's
length, ``hop`` samples after the previous one, becomes exactly the spectrogram tensor
training made from the same samples (``stft.StreamingSpectrogram``) and is classified.
Windows with NaN/Inf samples or a flat (dead-sensor) run are not classified; those,
clipping and stream gaps are reported as source faults.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np

from .decisions import Debouncer
from .engine import open_for_run
from .errors import InputError
from .health import SIGNAL_HEALTH_FAULTS, monitor_for
from .loop import Pipeline, RunLoop
from .options import RunPlan, VibrationSource, plan_from_keywords
from .runstats import RunSummary, StopFlag, counter_dict
from .samples import RecordingSource, SampleSource, open_sample_source
from .stft import StreamingSpectrogram

SIGNAL_FAULTS = ("nonfinite", "clipped", "flatline", "gap")
# Window faults whose spectrogram says nothing about the machine: a dead sensor's constant
# reads as a bearing fault at full confidence (the shipped cwru model: B014, 1.000). A
# clipped window is still classified (a hard impact clips too) and its event says so.
UNCLASSIFIED = frozenset({"nonfinite", "flatline"})
EDGE_SHARE = 8   # a flat run touching a window's edge counts from flat_seconds / 8
FLOAT32_MAX = float(np.finfo(np.float32).max)


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
        if self.clip_level is not None and not 0 < self.clip_level < math.inf:
            raise InputError(f"--clip-level must be a positive number; found {self.clip_level}")
        if self.clip_count < 2 or not 0 < self.flat_seconds < math.inf:
            raise InputError("clip_count must be >= 2 and flat_seconds positive")


class WindowChecker:
    """Per-window fault checks on preallocated scratch buffers (tens of microseconds for a
    10000-sample window, so small hops stay cheap)."""

    def __init__(self, length: int, checks: SignalChecks, flat_samples: int):
        self.checks = checks
        self.flat = max(2, int(flat_samples))
        # A shorter run at either end of the window is a sensor dying (or coming back)
        # inside it: the step into the constant reads as an impact, so it is not classified.
        self.edge = max(2, self.flat // EDGE_SHARE)
        self._abs = np.empty(length)
        self._neq = np.empty(length - 1, dtype=bool)

    def __call__(self, samples: np.ndarray) -> list[str]:
        """Fault names for one window of samples (empty: the window is clean)."""
        with np.errstate(invalid="ignore", over="ignore"):   # NaN/Inf: reported below
            total = np.add.reduce(samples)
        if not np.isfinite(total):   # any NaN/Inf makes the sum non-finite (or overflow)
            if not np.isfinite(samples).all():
                return ["nonfinite"]
        neq = np.not_equal(samples[1:], samples[:-1], out=self._neq[:len(samples) - 1])
        equal_pairs = len(neq) - np.count_nonzero(neq)
        if equal_pairs >= self.edge - 1 and (
                (equal_pairs >= self.flat - 1 and _longest_flat_run(samples) >= self.flat)
                or _edge_run(neq) >= self.edge):
            # a dead sensor holding a value: its constant is also the window's peak,
            # many times over, which is no clipping
            return ["flatline"]
        peak = np.abs(samples, out=self._abs[:len(samples)])
        top = peak.max()
        if top > FLOAT32_MAX:        # finite here, infinite in the model's float32 tensor
            return ["nonfinite"]
        if self.checks.clip_level is not None:
            clipped = top >= self.checks.clip_level
        else:
            clipped = top > 0 and \
                np.count_nonzero(peak >= top * 0.999) >= self.checks.clip_count
        return ["clipped"] if clipped else []


def window_faults(samples: np.ndarray, checks: SignalChecks, flat_samples: int) -> list[str]:
    """Fault names for one window of samples (empty: the window is clean)."""
    return WindowChecker(len(samples), checks, flat_samples)(samples)


def _edge_run(neq: np.ndarray) -> int:
    """The longer of the runs of identical samples that start or end the window
    (``neq``: consecutive samples differ)."""
    change = np.flatnonzero(neq)
    if len(change) == 0:
        return len(neq) + 1
    return int(max(change[0] + 1, len(neq) - change[-1]))


def _longest_flat_run(samples: np.ndarray) -> int:
    """Length (in samples) of the longest run of identical consecutive values."""
    change = np.flatnonzero(samples[1:] != samples[:-1])
    if len(change) == 0:
        return len(samples)
    bounds = np.concatenate(([-1], change, [len(samples) - 1]))
    return int(np.max(np.diff(bounds)))


def run_vibration(bundle, source, *, sinks: Iterable = (), stop: StopFlag | None = None,
                  on_event: Callable[[dict], None] | None = None, **keywords) -> RunSummary:
    """Classify every window of ``source`` (a SampleSource, a recording path, ``-`` for
    float32 on stdin, or ``tcp://host:port``) with a vibration bundle.

    ``keywords`` are the run settings by name (``hop``, ``sample_rate`` -- the rate of a
    stdin/TCP stream, default the model's, or of a recording that does not state its own
    --, ``min_windows``, ``threshold``, ``fmt``, ...; see ``options.plan_from_keywords``).
    Events go to every sink and ``on_event``.
    """
    plan = plan_from_keywords("vibration", source, **keywords)
    return VibrationPipeline(bundle, plan, sinks=sinks, stop=stop, on_event=on_event).run()


class VibrationPipeline(Pipeline):
    """One sample source through one bundle: ``step`` takes the next chunk and classifies
    every window it completes; ``run`` steps until the loop stops."""

    def __init__(self, bundle, plan: RunPlan, *, sinks: Iterable = (),
                 stop: StopFlag | None = None,
                 on_event: Callable[[dict], None] | None = None,
                 engines: dict | None = None):
        vib: VibrationSource = plan.source
        stop = stop or StopFlag()
        checks = vib.checks or SignalChecks()
        self.bundle, engine, entry = open_for_run(bundle, "signal", plan.model.fmt,
                                                  plan.model.engine, shared=engines)
        self.spec = spec = self.bundle.spec
        self.sig = sig = spec.signal
        d = plan.decisions
        self.debouncer = Debouncer(spec.labels, d.count_for("vibration"), d.threshold,
                                   d.class_thresholds, d.ignore_classes)
        self.probabilities = d.probabilities
        self.streamer = StreamingSpectrogram(spec, vib.hop)
        self.runner = engine.runner(spec.input_shape, 1)
        self.checker = WindowChecker(sig.window_length, checks,
                                     int(round(checks.flat_seconds * sig.sample_rate)))
        self.src = vib.source if isinstance(vib.source, SampleSource) else open_sample_source(
            vib.source, sig.sample_rate, channel=vib.channel or sig.channel,
            stream_rate=vib.sample_rate, realtime=vib.realtime, backoff=vib.backoff,
            stop=stop, given_channel=vib.channel)
        if isinstance(self.src, RecordingSource) and len(self.src.samples) < sig.window_length:
            logging.getLogger("edgecnn.deploy").warning(
                "NOTE: %s holds %d samples at %g Hz, less than one window of %d: nothing to "
                "classify", self.src.name, len(self.src.samples), sig.sample_rate,
                sig.window_length)
        summary = RunSummary(kind="vibration", source=vib.name or self.src.name,
                             bundle=str(self.bundle.path),
                             model_format=entry.get("format", plan.model.fmt or ""),
                             model_sha256=entry["sha256"], unit="windows")
        self.format_choice = entry["chosen"]
        # source health learned from the training data (None for older bundles)
        self.health = monitor_for(self.bundle, "signal")
        self.loop = RunLoop(summary, limits=plan.limits, sinks=sinks, stop=stop,
                            on_event=on_event, item="window", fault_names=SIGNAL_FAULTS + (
                                SIGNAL_HEALTH_FAULTS if self.health is not None else ()))
        self.active: set[str] = set()

    def close(self) -> None:
        self.src.close()

    def _fault(self, kind: str, window: int, start: int) -> None:
        self.loop.fault(kind, window, start_s=round(start / self.sig.sample_rate, 6))

    def step(self, timeout: float) -> bool:
        loop, streamer = self.loop, self.streamer
        chunk = self.src.read(timeout=timeout)
        loop.source_changes(self.src.poll_status(), streamer.windows_emitted)
        if chunk is None:
            if self.src.exhausted:
                loop.stop.set("end of source")
            return False
        arrived = time.monotonic()
        if chunk.gap:
            loop.faults["gap"] += 1
            self._fault("gap", streamer.windows_emitted, streamer.samples_pushed)
            streamer.reset()
            self.debouncer.reset()
        for window in streamer.push(chunk.samples):
            found = self.checker(window.samples)
            loop.input_faults(sorted(found), window.index,
                              start_s=round(window.start / self.sig.sample_rate, 6))
            self.active = set(found)
            health = self.health
            if health is not None and "nonfinite" not in found:
                loop.health_changes(health.check(window.samples), window.index,
                                    start_s=round(window.start / self.sig.sample_rate, 6))
            unhealthy = health.active if health is not None else ()
            loop.active_faults = tuple(sorted(self.active)) + tuple(unhealthy)
            if UNCLASSIFIED.intersection(found) or unhealthy:
                self.debouncer.reset()   # not classified while the source is unhealthy
            else:
                self._classify(window, arrived, "clipped" in found)
            if loop.counted():
                break
        return True

    def _classify(self, window, arrived: float, clipped: bool) -> None:
        loop, sig = self.loop, self.sig
        self.runner.inputs[0, :, :, 0] = window.values
        started = time.monotonic()
        probs = self.runner.run()[0]
        done = time.monotonic()
        loop.latency.add(done - arrived)
        loop.inference.add(done - started)
        if loop.preview is not None and loop.preview.wants():
            label = self.spec.labels[int(np.argmax(probs))]
            loop.preview.offer_spectrogram(window.values, f"{label} {float(np.max(probs)):.2f}")
        loop.summary.processed += 1
        hit = self.debouncer.update(0, probs)
        if hit is None:
            return
        fields = hit.fields("windows") | {
            "region": [window.start, sig.window_length],
            "start_s": round(window.start / sig.sample_rate, 6),
            "latency_ms": round((done - arrived) * 1000.0, 3)}
        tail = {}
        if clipped:
            tail["clipped"] = True
        if self.probabilities:
            tail["probabilities"] = {l: round(float(p), 6)
                                     for l, p in zip(self.spec.labels, probs)}
        loop.defect(hit.label, window.index, fields, tail)

    def finish(self) -> RunSummary:
        stats = self.src.stats
        self.loop.end_open_faults(self.streamer.windows_emitted, self.src, self.health)
        seconds = stats.samples / self.sig.sample_rate
        extra = {"signal_s": round(seconds, 3), "hop": self.streamer.hop,
                 "format_choice": self.format_choice,
                 "source_faults": counter_dict(self.loop.source_faults)}
        summary = self.loop.finish(read=self.loop.items, corrupt=stats.bad_chunks,
                                   reconnects=stats.reconnects, extra=extra)
        # over the same elapsed time as fps
        summary.extra["x_realtime"] = (round(seconds / summary.elapsed_s, 1)
                                       if summary.elapsed_s > 0 else None)
        return summary
