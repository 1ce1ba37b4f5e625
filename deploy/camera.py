"""The camera pipeline: source -> fault checks -> regions -> preprocess -> infer -> events.

``run_camera`` is what ``edgecnn run camera`` calls. It is split over two threads so a
2-core line PC spends one core on the model: the source's reading thread decodes each
frame, checks it for faults and preprocesses its regions (the InputSpec's own
``preprocess_image``, as in training) into a tensor owned by the frame's ring slot; the
calling thread runs the model on that tensor (bound as the input of the slot's own
engine runner: no copy), checks source health, debounces and logs. When the calling
thread would only wait for the next frame, the reading thread leaves that frame's gray
conversion, health features and preprocessing to it, so the two share the work wherever
decoding is the slower half (large tiled frames: the reading thread then only decodes
and checks faults). Nothing is allocated per frame.
OpenCV's own worker pool is held to one thread for the run: otherwise a resize in the
reading thread spreads over both cores and preempts the model.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Callable, Iterable

import cv2
import numpy as np

from .decisions import Debouncer
from .engine import open_for_run
from .errors import InputError
from .faults import FAULTS, FaultConfig, FrameFaultDetector
from .frames import Frame, FrameSource, SharedReading, open_frame_source
from .health import IMAGE_HEALTH_FAULTS, fault_config_kwargs, monitor_for
from .loop import Pipeline, RunLoop
from .options import CameraSource, RunPlan, plan_from_keywords
from .preprocess import fit_image, plain_resize, preprocess_image, scale_pixels, to_color
from .runstats import RunSummary, StopFlag, counter_dict
from .snapshots import SnapshotStore, shared_store
from .spec import InputSpec
from .tilebatch import TileBatch
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
            hint = (" (this OpenCV has no GUI: the runtime installs opencv-python-headless; "
                    "for --show install opencv-python in its place)"
                    if "not implemented" in str(exc).lower() else "")
            raise InputError(f"cannot show the preview window: {exc}{hint}") from None
        return key not in (ord("q"), 27)

    def close(self) -> None:
        try:
            cv2.destroyWindow(PREVIEW_WINDOW)
            cv2.waitKey(1)
        except cv2.error:
            pass


class _OpenCvPool:
    """OpenCV's worker pool is process-wide: held to one thread while any camera pipeline
    runs (its resizes would otherwise spread over both cores and preempt the model),
    restored when the last one closes."""

    _lock = threading.Lock()
    _holders = 0
    _saved = 1

    @classmethod
    def hold(cls) -> None:
        with cls._lock:
            if cls._holders == 0:
                cls._saved = cv2.getNumThreads()
                cv2.setNumThreads(1)
            cls._holders += 1

    @classmethod
    def release(cls) -> None:
        with cls._lock:
            cls._holders -= 1
            if cls._holders == 0:
                cv2.setNumThreads(cls._saved)


class Prepared:
    """What the reading thread made of one frame; one per ring slot, reused.

    ``tensor`` becomes the input buffer of the slot's own engine runner (made by the
    pipeline thread at the slot's first use), so inference reads the tensor where it was
    written.
    """

    __slots__ = ("fault", "regions", "image", "pixels", "gray", "view", "features",
                 "analysed", "tensor", "ready", "runner", "resized", "probs", "inference_s")

    def __init__(self) -> None:
        self.fault: str | None = None
        self.regions: list[Region] = []
        self.image: np.ndarray | None = None    # the decoded frame (the ring slot's buffer)
        self.pixels: np.ndarray | None = None   # the frame as the model's colour takes it
        self.gray: np.ndarray | None = None     # the slot's buffer for a gray conversion
        self.view: np.ndarray | None = None     # a whole-frame model's view: pixels fitted
        self.features: dict | None = None       # source-health features of ``pixels``
        self.analysed = False                    # pixels and features are this frame's
        self.tensor: np.ndarray | None = None   # float32 regions x H x W x C
        self.ready = False                       # tensor holds this frame's regions
        self.runner = None
        self.resized: np.ndarray | None = None  # the slot's buffer for a resize
        self.probs: np.ndarray | None = None    # the model's answer, where ``ahead`` ran it
        self.inference_s = 0.0                   # ... and how long that run took


class FramePreparer:
    """The per-frame work before inference, as a source's ``prepare`` step: fault checks
    on every decoded frame (in order, so frozen streams are seen), then, for a frame
    without a fault (a faulty frame is not classified), its gray conversion and
    source-health ``features`` (``analyse``) and the regions' model tensors (``tensors``).
    ``features(pixels, resized)`` is ``HealthMonitor.features``: ``resized`` is the model's
    view of the frame where the features measure that very view, else None.

    Analysis and tensors are left to the pipeline thread when it is waiting for this
    frame anyway: where decoding takes longer than inference (large tiled frames), the
    reading thread then only decodes and checks, and the two threads share the work
    instead of one idling. The fault checks take the decoded frame as it is (a gray
    thumbnail of a BGR frame is the thumbnail of its gray conversion, pixel for pixel).
    """

    def __init__(self, spec: InputSpec, detector: FrameFaultDetector,
                 roi: Region | None = None, tiles: tuple[int, int] | None = None,
                 grid: tuple[int, int, int] | None = None, share: bool = True,
                 features: Callable[[np.ndarray, np.ndarray | None], dict] | None = None):
        self.spec = spec
        self.detector = detector
        self.share = share
        self.features = features
        self.concurrent = False   # the engine takes runs from the reading thread too (ahead)
        self._plan = (roi, tiles, grid)
        self._shape: tuple[int, ...] | None = None
        self._regions: list[Region] = []
        self._batch: TileBatch | None = None    # all tiles with one resize, if it equals
        # for one region that is the whole frame: (those regions, whether the health
        # features measure the model's very view of it); the view is then made once
        self._whole: tuple[list[Region], bool] | None = None
        self.misfit: str | None = None           # why the regions do not fit this frame size
        self._frames = 0                         # frames seen (a tiny one counts)
        self._noted: set = set()                 # region sizes said to be large
        # the reading thread calls this; the pipeline only for a frame read before it
        # installed this step on a caller's source
        self._lock = threading.Lock()

    def __call__(self, image: np.ndarray, previous=None, waiting: bool = False) -> Prepared:
        work = previous if isinstance(previous, Prepared) else Prepared()
        work.image = image
        work.analysed = work.ready = False
        work.probs = None
        with self._lock:
            work.fault = self.detector.check(image)
            self._frames += 1
            # a tiny frame is a fault, not a frame to plan regions in (they may not fit)
            if image.shape != self._shape and work.fault != "tiny":
                self._replan(image.shape, first=self._frames == 1)
            if self.misfit is not None and work.fault != "tiny":
                work.fault = "resolution"
            work.regions = self._regions
        if work.fault is None and not (waiting and self.share):
            self.tensors(work)
        return work

    def _replan(self, shape: tuple[int, ...], first: bool = False) -> None:
        """Regions for a new frame size. On the first frame regions that do not fit are the
        user's mistake (InputError); later, the camera changed: a ``resolution`` fault on
        every frame of that size, so one source's change does not end the others (also
        after tiny frames at the start: the run is under way, faults are logged)."""
        try:
            regions = plan_regions(shape, *self._plan)
        except InputError as exc:
            if first:
                raise
            self.misfit = f"{shape[1]}x{shape[0]} frames: {exc}"
            self._regions, self._batch, self._whole = [], None, None
        else:
            self.misfit = None
            self._regions = regions
            self._batch = TileBatch.plan(regions, self.spec)
            _note_large_regions(regions, self.spec, self._noted)
            image = self.spec.image
            # the health features resize the gray frame bilinearly to the model's size
            self._whole = (regions, image.color == "gray" and image.interpolation == "linear"
                           and plain_resize(shape, image)) \
                if regions == [Region(0, 0, shape[1], shape[0])] else None
        self._shape = shape

    def analyse(self, work: Prepared) -> None:
        """The frame in the model's colour (``work.pixels``), for a whole-frame model its
        view of it (``work.view``: the frame fitted to the model's size, made once for the
        tensor and, where they measure the same view, the health features) and its health
        features (either thread)."""
        work.pixels = pixels = self._pixels(work.image, work)
        whole = self._whole           # (the reading thread may plan a new size meanwhile)
        work.view, same = None, False
        if whole is not None and whole[0] is work.regions and pixels.dtype == np.uint8:
            view = fit_image(to_color(pixels, self.spec.image.color), self.spec.image,
                             dst=work.resized)
            work.view, same = view, whole[1]
            # a resize: the slot's buffer from now on (never the frame itself or a view
            # of it, as an H x W x 1 frame at the model's size gives)
            if not (np.may_share_memory(view, pixels) or np.may_share_memory(view, work.image)):
                work.resized = view
        work.features = None if self.features is None else \
            self.features(pixels, work.view if same else None)
        work.analysed = True

    def _pixels(self, image: np.ndarray, work: Prepared) -> np.ndarray:
        """A gray model's frame converted once, into the slot's buffer, for the health
        features and every region (the same ``to_color`` conversion preprocessing would
        do); other colours go to preprocessing as decoded."""
        if self.spec.image.color != "gray" or image.ndim == 2 or image.shape[2] != 3:
            return image
        reuse = work.gray is not None and work.gray.shape == image.shape[:2]
        work.gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY, dst=work.gray if reuse else None)
        return work.gray

    def tensors(self, work: Prepared) -> None:
        """Preprocess the regions of ``work.pixels`` into ``work.tensor`` (either thread;
        analyses the frame first where that was left too)."""
        if not work.analysed:
            self.analyse(work)
        image = work.pixels
        regions = work.regions
        tensor = work.tensor
        if tensor is None or len(tensor) != len(regions):
            tensor = work.tensor = np.zeros((len(regions), *self.spec.input_shape),
                                            np.float32)
        batch = self._batch
        if work.view is not None:       # this frame's whole-frame view (``analyse``)
            scale_pixels(work.view.reshape(self.spec.input_shape), self.spec.image,
                         out=tensor[0])
        elif batch is not None and batch.regions is regions:   # planned for this size
            work.resized = batch.fill(image, regions, tensor, work.resized)
        else:
            for i, region in enumerate(regions):
                preprocess_image(region.crop(image), self.spec, out=tensor[i])
        work.ready = True

    def ahead(self, work: Prepared) -> None:
        """The reading thread's share of the model, while the pipeline is behind (a file
        read in order whose ring is full: this thread would wait for a slot): it runs the
        model on the frame it just prepared, on the slot's own runner, and the pipeline
        thread then only classifies it. Both threads then split the model's work where it
        is the larger part, as on a CPU without VNNI (an 1800x1000 frame's 45 tiles took
        13 ms there against 5.4 ms to decode). Only for an engine that takes runs from
        several threads at once, and a slot whose runner the pipeline bound already."""
        runner = work.runner
        if not self.concurrent or not work.ready or work.fault is not None or \
                runner is None or runner.inputs is not work.tensor:
            return
        begun = time.monotonic()
        work.probs = runner.run()
        work.inference_s = time.monotonic() - begun


def run_camera(bundle, source, *, sinks: Iterable = (), stop: StopFlag | None = None,
               on_event: Callable[[dict], None] | None = None, **keywords) -> RunSummary:
    """Watch ``source`` (a FrameSource, or what ``open_frame_source`` accepts) with an image
    bundle until the source ends, the frame/duration limit is reached or ``stop`` is set.

    ``keywords`` are the run settings by name (``min_frames``, ``threshold``, ``tiles``,
    ``fmt``, ...; see ``options.plan_from_keywords``). Events go to every sink
    (``write(dict)``) and ``on_event``; the summary is returned.
    """
    plan = plan_from_keywords("camera", source, **keywords)
    return CameraPipeline(bundle, plan, sinks=sinks, stop=stop, on_event=on_event).run()


LARGE_REGION = 4.0    # a region this many times the model's input (either side): say so


def _note_large_regions(regions: list[Region], spec: InputSpec, noted: set) -> None:
    """One note per region size (of this source, ``noted``) far beyond the model's input
    where it is not resized by area: the model resizes as its training did (the
    InputSpec), and a bilinear resize of a 1600x1600 frame to 128x128 reads one pixel in
    12; products that small in the frame are better cut out with --tiles / --grid (the
    model then sees them at the size it learned them)."""
    image = spec.image
    region = max(regions, key=lambda r: r.w * r.h)
    factor = max(region.w / image.width, region.h / image.height)
    key = (region.w, region.h)
    if factor < LARGE_REGION or image.interpolation == "area" or key in noted:
        return     # (an area resize averages every pixel, as the model's training did)
    noted.add(key)
    logging.getLogger(__name__).warning(
        "note: each region is %dx%d, %.1fx the model's %dx%d input; it is resized %s, as "
        "in training, which at %.0fx skips most pixels. If the training images showed one "
        "product each, --tiles or --grid cut the frame into regions of that size",
        region.w, region.h, factor, image.width, image.height, image.interpolation, factor)


class CameraPipeline(Pipeline):
    """One camera source through one bundle: ``step`` takes and classifies the next frame,
    ``run`` steps until the loop stops and returns the summary.

    The summary's ``extra`` has the CPU milliseconds per frame of the stepping thread
    (``main_cpu_ms``: inference, debouncing, logging) and of the reading thread
    (``reader_cpu_ms``: decoding, fault checks, preprocessing), so a slow run shows which
    side limits it, how many frames the stepping thread preprocessed itself
    (``preprocessed_here``) and on how many the reading thread ran the model
    (``inferred_by_reader``, see ``FramePreparer.ahead``).
    """

    def __init__(self, bundle, plan: RunPlan, *, sinks: Iterable = (),
                 stop: StopFlag | None = None,
                 on_event: Callable[[dict], None] | None = None,
                 engines: dict | None = None, reading: SharedReading | None = None):
        cam: CameraSource = plan.source
        stop = stop or StopFlag()
        batch = cam.tiles[0] * cam.tiles[1] if cam.tiles else 1
        self.bundle, self.engine, entry = open_for_run(bundle, "image", plan.model.fmt,
                                                       plan.model.engine, batch=batch,
                                                       shared=engines)
        self.spec = spec = self.bundle.spec
        d = plan.decisions
        self.debouncer = Debouncer(spec.labels, d.count_for("camera"), d.threshold,
                                   d.class_thresholds, d.ignore_classes)
        self.probabilities = d.probabilities
        self.snapshots = cam.snapshots
        if cam.snapshots is not None and not isinstance(cam.snapshots, SnapshotStore):
            # cameras of one run sharing a folder share its limits
            self.snapshots = shared_store(cam.snapshots, cam.snapshots_max_mb,
                                          cam.snapshots_keep_days)
        self.preview = _Preview() if cam.show else None
        # source health learned from the training data (None for older bundles)
        self.health = monitor_for(self.bundle, "image")
        faults = cam.faults
        if self.health is not None and faults == FaultConfig():   # thresholds from it too
            faults = FaultConfig(**{**faults.__dict__,
                                    **fault_config_kwargs(self.health.envelope)})
        self.prepare = FramePreparer(spec, FrameFaultDetector(faults), cam.roi, cam.tiles,
                                     cam.grid, features=self.health.features
                                     if self.health is not None else None)
        self.prepare.concurrent = self.engine.concurrent
        if isinstance(cam.source, FrameSource):
            self.src = cam.source
            self.src.prepare = self.prepare   # its reading thread prepares every frame now
        else:
            # MJPEG decoded from its packets straight to the model's colour (gray
            # frames for a gray model: snapshots and previews of them are gray too)
            self.src = open_frame_source(cam.source, realtime=cam.realtime,
                                         backoff=cam.backoff, prepare=self.prepare,
                                         stop=stop, color=spec.image.color,
                                         shared=reading, bit_depth=spec.image.bit_depth)
        if cam.grid and plan.model.fmt is None:
            entry = self._follow_grid(cam, plan, engines, entry)
        summary = RunSummary(kind="camera", source=cam.name or self.src.name,
                             bundle=str(self.bundle.path),
                             model_format=entry.get("format", plan.model.fmt or ""),
                             model_sha256=entry["sha256"], unit="frames")
        self.format_choice = entry["chosen"]
        self.loop = RunLoop(summary, limits=plan.limits, sinks=sinks, stop=stop,
                            on_event=on_event, item="frame", fault_names=FAULTS + (
                                IMAGE_HEALTH_FAULTS if self.health is not None else ()))
        self.regions: list[Region] = []
        self.active_fault: str | None = None
        self.labels_now: list[str] = []
        self.alerts: list[bool] = []
        self.taken = self.shared = self.ahead = 0
        self._closed = False
        _OpenCvPool.hold()
        self._cpu = 0.0                 # this pipeline's steps' CPU seconds

    def close(self) -> None:
        """Stop the source and restore OpenCV's thread pool (once; ``run`` calls it)."""
        if self._closed:
            return
        self._closed = True
        self.src.close()
        _OpenCvPool.release()
        if self.preview is not None:
            self.preview.close()

    def step(self, timeout: float) -> bool:
        """Take the next frame (waiting up to ``timeout``) and classify it; False when
        none came (the loop is stopped at the end of a finite source)."""
        taken = self.take(timeout)
        if isinstance(taken, bool):
            return taken
        started = time.thread_time()
        begun = time.monotonic()
        probs = taken.work.runner.run()
        done = time.monotonic()
        return self.complete(taken, probs, done - begun, done, time.thread_time() - started)

    def take(self, timeout: float) -> bool | Frame:
        """The first half of ``step``: take the next frame, log its source changes and
        faults, check source health. Returns the frame when it awaits the model (its
        regions' tensor is the input of ``frame.work.runner``; ``complete`` takes the
        probabilities), else whether a frame came (a faulty frame is done here, and so is
        one the reading thread ran the model on, see ``FramePreparer.ahead``)."""
        started = time.thread_time()
        try:
            taken = self._take(timeout)
        finally:
            self._cpu += time.thread_time() - started
        if isinstance(taken, bool) or taken.work.probs is None:
            return taken
        self.ahead += 1
        return self.complete(taken, taken.work.probs, taken.work.inference_s,
                             time.monotonic())

    def _follow_grid(self, cam: CameraSource, plan: RunPlan, engines, entry: dict) -> dict:
        """--grid: how many windows a frame has is known once its size is (a file's first
        frame, decoded at the open); the format is then this machine's choice for that
        batch, as for --tiles' count, not batch 1's. A live source's size comes later:
        batch 1's choice stays (one note)."""
        from .hosts import selected_format

        shape = getattr(self.src, "frame_shape", None)
        if shape is None:
            logging.getLogger(__name__).warning(
                "note: --grid on %s: the windows per frame are not known before its first "
                "frame, so the format is this machine's choice for batch 1 (--format "
                "chooses another)", self.src.name)
            return entry
        try:
            count = len(plan_regions(shape, cam.roi, cam.tiles, cam.grid))
        except InputError:
            return entry                # the first frame says so, exit 2
        threads = plan.model.engine.threads
        if count <= 1 or selected_format(self.bundle, count, False, threads)[0] == \
                entry.get("format"):
            return entry
        _, self.engine, entry = open_for_run(self.bundle, "image", None, plan.model.engine,
                                             batch=count, shared=engines)
        self.prepare.concurrent = self.engine.concurrent
        return entry

    def _take(self, timeout: float) -> bool | Frame:
        loop = self.loop
        frame = self.src.read(timeout)
        loop.source_changes(self.src.poll_status(), self.src.stats.read)
        if frame is None:
            if self.src.exhausted:
                loop.stop.set("end of source")
            return False
        self.taken += 1
        prepare = self.prepare
        if frame.prepared is not prepare:   # read before ``prepare`` was installed
            frame.work = prepare(frame.image, frame.work)
            frame.prepared = prepare
        work = frame.work
        if work.regions is not self.regions:   # first frame, or the frame size changed
            self.regions = work.regions
            self.debouncer.resize(len(self.regions))
        if work.fault is None and not work.analysed:   # left to this thread: it was idle
            prepare.analyse(work)
            self.shared += 1
        health = self.health
        if health is not None and work.fault is None:   # a black frame is not also 'dark'
            loop.health_changes(health.check_features(work.features), frame.index)
        loop.input_faults((work.fault,) if work.fault is not None else (), frame.index,
                          {"resolution": prepare.misfit})
        if work.fault is None and health is not None and health.active:
            # not classified while the source is unhealthy
            self.debouncer.reset()
            self.active_fault = health.active[0]
            loop.active_faults = tuple(health.active)
        elif work.fault is not None:
            if work.fault != self.active_fault:
                self.debouncer.reset()
            self.active_fault = work.fault
            loop.active_faults = (work.fault,)
            if loop.preview is not None and loop.preview.wants():
                loop.preview.offer(frame.image, self.regions, [], [], work.fault)
        else:
            self.active_fault = None
            loop.active_faults = ()
            self._bind(work)
            return frame
        return self._done(frame)

    def _bind(self, work: Prepared) -> None:
        """Make ``work.tensor`` the input of a runner of this pipeline's engine."""
        if not work.ready:              # left to this thread: it was idle
            self.prepare.tensors(work)
        runner = work.runner
        if runner is None or runner.inputs is not work.tensor:
            # this slot's first frame (or new region count): bind its tensor
            runner = self.engine.runner(self.spec.input_shape, len(self.regions))
            runner.inputs[...] = work.tensor
            work.tensor, work.runner = runner.inputs, runner

    def _done(self, frame: Frame) -> bool:
        """The end of every frame's step: the preview window, then the frame count."""
        loop = self.loop
        if self.preview is not None:
            canvas = draw_overlay(frame.image, self.regions,
                                  self.labels_now if self.active_fault is None else [],
                                  self.alerts, self.active_fault)
            if not self.preview.show(canvas):
                loop.stop.set("preview closed")
                return True
        loop.counted()
        return True

    def complete(self, frame: Frame, probs: np.ndarray, inference_s: float, done: float,
                 model_cpu_s: float = 0.0) -> bool:
        """The second half of ``step`` for a frame ``take`` returned: ``probs`` (regions x
        classes) came from the model at monotonic time ``done``; ``inference_s`` is this
        frame's time in the model (in a run batched with other sources' frames, its share
        of that run), which cost it ``model_cpu_s`` of the stepping thread's CPU."""
        started = time.thread_time() - model_cpu_s
        try:
            self._classify(frame, probs, inference_s, done)
            return self._done(frame)
        finally:
            self._cpu += time.thread_time() - started

    def _classify(self, frame: Frame, probs: np.ndarray, inference_s: float, done: float) -> None:
        loop, spec, regions = self.loop, self.spec, self.regions
        latency_ms = (done - frame.time) * 1000.0
        loop.latency.add(done - frame.time)
        loop.inference.add(inference_s)
        loop.summary.processed += 1
        live = loop.preview is not None and loop.preview.wants()
        if self.preview is not None or live:
            self.labels_now = [f"{spec.labels[int(np.argmax(p))]} {float(np.max(p)):.2f}"
                               for p in probs]
            self.alerts = [False] * len(regions)
        snapshot_path = None
        snapshot_tried = False
        for i, region in enumerate(regions):
            hit = self.debouncer.update(i, probs[i])
            if hit is None:
                continue
            if self.snapshots is not None and not snapshot_tried:   # one per frame
                snapshot_path = self.snapshots.save(frame.image, frame.index, hit.label,
                                                    loop.summary.source)
                snapshot_tried = True
            if self.alerts:
                self.alerts[i] = True
            tail = {}
            if len(regions) > 1:
                tail["tile"] = i
            if self.probabilities:
                tail["probabilities"] = {l: round(float(p), 6)
                                         for l, p in zip(spec.labels, probs[i])}
            if snapshot_path is not None:
                tail["snapshot"] = str(snapshot_path)
            loop.defect(hit.label, frame.index, hit.fields("frames") | {
                "region": region.as_list(), "latency_ms": round(latency_ms, 3)}, tail)
        if live:
            loop.preview.offer(frame.image, regions, self.labels_now, self.alerts, None)

    def finish(self) -> RunSummary:
        stats = self.src.stats
        self.loop.end_open_faults(stats.read, self.src, self.health)
        taken, cpu = self.taken, self._cpu
        # CPU ms per frame of this thread (inference included) and of the reading thread
        # (decode, fault checks, preprocessing): which of the two limits the rate
        extra = {"decoded": stats.read, "decoding": self.src.decoding,
                 "format_choice": self.format_choice,
                 "regions": len(self.regions),
                 "source_faults": counter_dict(self.loop.source_faults),
                 "preprocessed_here": self.shared,
                 "inferred_by_reader": self.ahead,
                 "main_cpu_ms": round(1000.0 * cpu / taken, 4) if taken else None,
                 "reader_cpu_ms": round(1000.0 * stats.cpu_s / stats.read, 4)
                 if stats.read and stats.cpu_s else None}
        return self.loop.finish(read=taken + stats.dropped, dropped=stats.dropped,
                                corrupt=stats.corrupt, reconnects=stats.reconnects,
                                extra=extra)
