"""The camera pipeline: source -> fault checks -> regions -> preprocess -> infer -> events.

``run_camera`` is what ``edgecnn run camera`` calls. It is split over two threads so a
2-core line PC spends one core on the model: the source's reading thread decodes each
frame, checks it for faults and preprocesses its regions (the InputSpec's own
``preprocess_image``, as in training) into a tensor owned by the frame's ring slot; the
calling thread runs the model on that tensor (bound as the input of the slot's own
engine runner: no copy), debounces and logs. When the calling thread would only wait for
the next frame, the reading thread leaves that frame's preprocessing to it, so the two
share the work wherever decoding is the slower half. Nothing is allocated per frame.
OpenCV's own worker pool is held to one thread for the run: otherwise a resize in the
reading thread spreads over both cores and preempts the model.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Callable, Iterable

import cv2
import numpy as np

from .decisions import Debouncer, Persisted
from .engine import EngineOptions, open_for_run
from .errors import InputError
from .events import utc_now
from .faults import FAULTS, FaultConfig, FrameFaultDetector
from .health import IMAGE_HEALTH_FAULTS, fault_config_kwargs, fault_event, monitor_for
from .preprocess import preprocess_image
from .runstats import LatencyHistogram, RunSummary, StopFlag, counter_dict
from .frames import FrameSource, open_frame_source
from .reconnect import Backoff
from .spec import InputSpec
from .tiles import Region, plan_regions

PREVIEW_WINDOW = "edgecnn"


def draw_overlay(image: np.ndarray, regions: list[Region], labels: list[str],
                 alerts: list[bool], fault: str | None = None) -> np.ndarray:
    """A BGR copy of ``image`` with each region boxed and labelled (red = event class)."""
    canvas = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else image.copy()
    for region, label, alert in zip(regions, labels, alerts):
        color = (0, 0, 255) if alert else (0, 200, 0)
        cv2.rectangle(canvas, (region.x, region.y),
                      (region.x + region.w - 1, region.y + region.h - 1), color, 2)
        cv2.putText(canvas, label, (region.x + 4, region.y + 18), cv2.FONT_HERSHEY_SIMPLEX,
                    0.5, color, 1, cv2.LINE_AA)
    if fault:
        cv2.putText(canvas, f"SOURCE FAULT: {fault}", (8, canvas.shape[0] - 10),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 165, 255), 2, cv2.LINE_AA)
    return canvas


def save_snapshot(directory: Path, image: np.ndarray, frame: int, label: str) -> Path:
    stamp = utc_now().replace(":", "").replace("-", "")
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in label)
    path = Path(directory) / f"{stamp}_f{frame:08d}_{safe}.jpg"
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    if ok:
        data.tofile(str(path))
    return path


class _Preview:
    def __init__(self) -> None:
        if os.name != "nt" and not (os.environ.get("DISPLAY") or
                                    os.environ.get("WAYLAND_DISPLAY")):
            raise InputError("--show needs a display (DISPLAY is not set); run without --show")
        self.open = True

    def show(self, canvas: np.ndarray) -> bool:
        """Draw; False when the user pressed q/Esc or closed the window."""
        try:
            cv2.imshow(PREVIEW_WINDOW, canvas)
            key = cv2.waitKey(1) & 0xFF
        except cv2.error as exc:
            raise InputError(f"cannot show the preview window: {exc}") from None
        return key not in (ord("q"), 27)

    def close(self) -> None:
        try:
            cv2.destroyWindow(PREVIEW_WINDOW)
            cv2.waitKey(1)
        except cv2.error:
            pass


class Prepared:
    """What the reading thread made of one frame; one per ring slot, reused.

    ``tensor`` becomes the input buffer of the slot's own engine runner (made by the
    pipeline thread at the slot's first use), so inference reads the tensor where it was
    written.
    """

    __slots__ = ("fault", "regions", "pixels", "gray", "tensor", "ready", "runner")

    def __init__(self) -> None:
        self.fault: str | None = None
        self.regions: list[Region] = []
        self.pixels: np.ndarray | None = None   # the frame as the model's colour takes it
        self.gray: np.ndarray | None = None     # the slot's buffer for a gray conversion
        self.tensor: np.ndarray | None = None   # float32 regions x H x W x C
        self.ready = False                       # tensor holds this frame's regions
        self.runner = None


class FramePreparer:
    """The per-frame work before inference, as a source's ``prepare`` step: fault checks
    on every decoded frame (in order, so frozen streams are seen), then the regions'
    model tensors for a frame without a fault (a faulty frame is not classified).

    The tensors are left to the pipeline thread (``tensors``) when it is waiting for
    this frame anyway: where decoding and preprocessing take longer than inference, the
    two threads then share the work instead of one idling.
    """

    def __init__(self, spec: InputSpec, detector: FrameFaultDetector,
                 roi: Region | None = None, tiles: tuple[int, int] | None = None,
                 grid: tuple[int, int, int] | None = None, share: bool = True):
        self.spec = spec
        self.detector = detector
        self.share = share
        self._plan = (roi, tiles, grid)
        self._shape: tuple[int, ...] | None = None
        self._regions: list[Region] = []
        # the reading thread calls this; the pipeline only for a frame read before it
        # installed this step on a caller's source
        self._lock = threading.Lock()

    def __call__(self, image: np.ndarray, previous=None, waiting: bool = False) -> Prepared:
        work = previous if isinstance(previous, Prepared) else Prepared()
        work.pixels = self._pixels(image, work)
        with self._lock:
            if image.shape != self._shape:
                self._regions = plan_regions(image.shape, *self._plan)
                self._shape = image.shape
            work.regions = self._regions
            work.fault = self.detector.check(work.pixels)
        work.ready = False
        if work.fault is None and not (waiting and self.share):
            self.tensors(work)
        return work

    def _pixels(self, image: np.ndarray, work: Prepared) -> np.ndarray:
        """A gray model's frame converted once, into the slot's buffer, for both the fault
        checks and every region (the same ``to_color`` conversion preprocessing would do);
        other colours go to preprocessing as decoded."""
        if self.spec.image.color != "gray" or image.ndim == 2 or image.shape[2] != 3:
            return image
        reuse = work.gray is not None and work.gray.shape == image.shape[:2]
        work.gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY, dst=work.gray if reuse else None)
        return work.gray

    def tensors(self, work: Prepared) -> None:
        """Preprocess the regions of ``work.pixels`` into ``work.tensor`` (either thread)."""
        image = work.pixels
        regions = work.regions
        tensor = work.tensor
        if tensor is None or len(tensor) != len(regions):
            tensor = work.tensor = np.zeros((len(regions), *self.spec.input_shape),
                                            np.float32)
        for i, region in enumerate(regions):
            preprocess_image(region.crop(image), self.spec, out=tensor[i])
        work.ready = True


def run_camera(bundle, source, *, fmt: str | None = None,
               options: EngineOptions = EngineOptions(), roi: Region | None = None,
               tiles: tuple[int, int] | None = None,
               grid: tuple[int, int, int] | None = None, min_frames: int = 3,
               threshold: float = 0.6, class_thresholds: dict[str, float] | None = None,
               ignore_classes: Iterable[str] = (), snapshots=None, show: bool = False,
               realtime: bool = False, max_frames: int | None = None,
               duration: float | None = None, sinks: Iterable = (),
               probabilities: bool = False, faults: FaultConfig = FaultConfig(),
               backoff: Backoff = Backoff(), stop: StopFlag | None = None,
               on_event: Callable[[dict], None] | None = None) -> RunSummary:
    """Watch ``source`` (a FrameSource, or what ``open_frame_source`` accepts) with an image
    bundle until the source ends, ``max_frames``/``duration`` is reached or ``stop`` is set.

    Events go to every sink (``write(dict)``) and ``on_event``; the summary is returned.
    Its ``extra`` has the CPU milliseconds per frame of this thread (``main_cpu_ms``:
    inference, debouncing, logging) and of the reading thread (``reader_cpu_ms``:
    decoding, fault checks, preprocessing), so a slow run shows which side limits it, and
    how many frames this thread preprocessed itself (``preprocessed_here``).
    """
    bundle, engine, entry = open_for_run(bundle, "image", fmt, options)
    spec = bundle.spec
    debouncer = Debouncer(spec.labels, min_frames, threshold, class_thresholds,
                          ignore_classes)
    if tiles and grid:
        raise InputError("give either --tiles or --grid, not both")
    if snapshots is not None:
        snapshots = Path(snapshots)
        try:
            snapshots.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"cannot create snapshot folder {snapshots}: "
                             f"{exc.strerror}") from None
    preview = _Preview() if show else None
    sinks = list(sinks)
    stop = stop or StopFlag()
    health = monitor_for(bundle, "image")   # source health from the training envelope
    if health is not None and faults == FaultConfig():
        faults = FaultConfig(**{**faults.__dict__, **fault_config_kwargs(health.envelope)})
    prepare = FramePreparer(spec, FrameFaultDetector(faults), roi, tiles, grid)
    if isinstance(source, FrameSource):
        src = source
        src.prepare = prepare   # its reading thread prepares every frame from now on
    else:
        src = open_frame_source(source, realtime=realtime, backoff=backoff, prepare=prepare)
    summary = RunSummary(kind="camera", source=src.name, bundle=str(bundle.path),
                         model_format=entry.get("format", fmt or ""),
                         model_sha256=entry["sha256"], unit="frames")
    latency = LatencyHistogram()
    events: Counter = Counter()
    fault_counts: Counter = Counter({name: 0 for name in FAULTS + (
        IMAGE_HEALTH_FAULTS if health is not None else ())})
    regions: list[Region] = []
    active_fault = None
    labels_now: list[str] = []
    alerts: list[bool] = []
    started = time.monotonic()
    cpu_started = time.thread_time()
    taken = processed = shared = 0

    def emit(event: dict) -> None:
        for sink in sinks:
            sink.write(event)
        if on_event is not None:
            on_event(event)

    opencv_threads = cv2.getNumThreads()   # process-wide: restored when the run ends
    cv2.setNumThreads(1)
    try:
        read, monotonic = src.read, time.monotonic
        while not stop.is_set():
            if duration is not None and monotonic() - started >= duration:
                stop.set("duration reached")
                break
            frame = read(0.2)
            if frame is None:
                if src.exhausted:
                    stop.set("end of source")
                    break
                continue
            taken += 1
            if frame.prepared is not prepare:   # read before ``prepare`` was installed
                frame.work = prepare(frame.image, frame.work)
                frame.prepared = prepare
            work = frame.work
            if work.regions is not regions:      # first frame, or the frame size changed
                regions = work.regions
                debouncer.resize(len(regions))
            fault = work.fault
            checked = health is not None and fault is None   # a black frame is not 'dark'
            for change in health.check(work.pixels) if checked else ():
                fault_counts[change["fault"]] += change["state"] == "start"
                emit({"time": utc_now(), "source": src.name, "frame": frame.index,
                      **fault_event(change), "model_sha256": summary.model_sha256})
            if fault is None and health is not None and health.active:
                fault = health.active[0]   # not classified while the source is unhealthy
                debouncer.reset()
                active_fault = fault
            elif fault is not None:
                fault_counts[fault] += 1
                if fault != active_fault:
                    debouncer.reset()
                    emit({"time": utc_now(), "type": "fault", "source": src.name,
                          "frame": frame.index, "fault": fault,
                          "model_sha256": summary.model_sha256})
                active_fault = fault
            else:
                active_fault = None
                if not work.ready:              # left to this thread: it was idle
                    prepare.tensors(work)
                    shared += 1
                runner = work.runner
                if runner is None or runner.inputs is not work.tensor:
                    # this slot's first frame (or new region count): bind its tensor
                    runner = engine.runner(spec.input_shape, len(regions))
                    runner.inputs[...] = work.tensor
                    work.tensor, work.runner = runner.inputs, runner
                probs = runner.run()
                done = monotonic()
                latency.add(done - frame.time)
                processed += 1
                if preview is not None:
                    labels_now = [f"{spec.labels[int(np.argmax(p))]} {float(np.max(p)):.2f}"
                                  for p in probs]
                    alerts = [False] * len(regions)
                snapshot_path = None
                for i, region in enumerate(regions):
                    hit = debouncer.update(i, probs[i])
                    if hit is None:
                        continue
                    if snapshots is not None and snapshot_path is None:
                        snapshot_path = save_snapshot(snapshots, frame.image, frame.index,
                                                      hit.label)
                    events[hit.label] += 1
                    if preview is not None:
                        alerts[i] = True
                    emit(_event(src.name, frame.index, hit, region, i, len(regions),
                                (done - frame.time) * 1000.0, summary.model_sha256,
                                probs[i] if probabilities else None, spec.labels,
                                snapshot_path))
            if preview is not None:
                canvas = draw_overlay(frame.image, regions, labels_now if active_fault is None
                                      else [], alerts, active_fault)
                if not preview.show(canvas):
                    stop.set("preview closed")
                    break
            if max_frames is not None and taken >= max_frames:
                stop.set("max frames reached")
                break
    finally:
        cpu = time.thread_time() - cpu_started
        src.close()
        cv2.setNumThreads(opencv_threads)
        if preview is not None:
            preview.close()
    elapsed = time.monotonic() - started
    stats = src.stats
    summary.processed = processed
    summary.read = taken + stats.dropped
    summary.dropped = stats.dropped
    summary.corrupt = stats.corrupt
    summary.reconnects = stats.reconnects
    summary.faults = counter_dict(fault_counts)
    summary.elapsed_s = round(elapsed, 3)
    summary.fps = processed / elapsed if elapsed > 0 else 0.0
    summary.latency_p50_ms = latency.percentile(50)
    summary.latency_p99_ms = latency.percentile(99)
    summary.events = counter_dict(events)
    summary.stop_reason = stop.reason or "stopped"
    # CPU ms per frame of this thread (inference included) and of the reading thread
    # (decode, fault checks, preprocessing): which of the two limits the rate
    summary.extra = {"decoded": stats.read, "regions": len(regions),
                     "preprocessed_here": shared,
                     "main_cpu_ms": round(1000.0 * cpu / taken, 4) if taken else None,
                     "reader_cpu_ms": round(1000.0 * stats.cpu_s / stats.read, 4)
                     if stats.read and stats.cpu_s else None}
    return summary


def _event(source: str, frame: int, hit: Persisted, region: Region, index: int,
           count: int, latency_ms: float, sha: str, probs, labels, snapshot) -> dict:
    event = {"time": utc_now(), "type": "defect", "source": source, "frame": frame,
             "class": hit.label, "confidence": round(hit.confidence, 6),
             "mean_confidence": round(hit.mean_confidence, 6), "frames": hit.count,
             "region": region.as_list(), "latency_ms": round(latency_ms, 3),
             "model_sha256": sha}
    if count > 1:
        event["tile"] = index
    if probs is not None:
        event["probabilities"] = {l: round(float(p), 6) for l, p in zip(labels, probs)}
    if snapshot is not None:
        event["snapshot"] = str(snapshot)
    return event
