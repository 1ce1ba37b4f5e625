"""Where frames come from: cameras, video files, network streams, GStreamer pipelines.

Every frame source decodes in its own reading thread, into a small ring of reusable frame
slots, and runs the consumer's ``prepare`` step there too (the camera pipeline's fault
checks and preprocessing), so the consumer's thread only takes ready frames: decoding and
preparing overlap with inference on a 2-core line PC.

Live sources (a camera, an RTSP/HTTP stream, a GStreamer pipeline, or a video paced with
``realtime``) keep only the newest frame: inference never works on a stale, buffered
frame, and every frame replaced before the pipeline took it is counted as dropped. A live
source that is not up yet is retried with backoff for ``Backoff.connect_timeout`` seconds;
one that stops delivering is reopened with exponential backoff, forever, until the run is
stopped. Silence (``stall_seconds`` without a frame) and every disconnect are state changes
the run loop reads with ``poll_status()``. A video file read without ``realtime`` gives
every frame, in order (the ring is the read-ahead); a missing file fails at once.

``color`` (the model's colour) decodes MJPEG files and streams from their packets
straight to it (captures.PacketCapture); otherwise frames come as the capture decodes.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from .captures import (
    CaptureReader,
    StillCapture,
    capture_fps,
    indexed_file,
    open_device,
    open_file,
    open_gstreamer,
    open_url,
)
from .errors import SourceError
from .preprocess import IMAGE_SUFFIXES
from .reconnect import Backoff, StatusChange, StatusLog, check_port, connect_with_backoff
from .shown import shown_url

URL_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://",
               "srt://")

Prepare = Callable[[np.ndarray, Any, bool], Any]
"""``prepare(image, previous, waiting) -> work``, run in the reading thread on every
decoded frame; ``previous`` is what it returned for the last frame held by the same ring
slot (so it can reuse that slot's buffers); ``waiting`` tells that the consumer has no
other frame ready (it may leave work it can share to the consumer, then idle anyway);
the result becomes ``Frame.work``. A ``prepare`` with an ``ahead(work)`` method is also
asked, on a video file read in order, to do more of the consumer's work on a frame when the
consumer is behind (no slot is free for the next frame: the reading thread would wait)."""


class Frame:
    """One slot of a source's ring: a decoded frame and what ``prepare`` made of it.

    ``read`` lends it out until the next ``read`` of the same source, which takes it back:
    its image buffer is then decoded into again, so keep nothing from it past that.
    """

    __slots__ = ("index", "image", "time", "work", "prepared")

    def __init__(self) -> None:
        self.index = -1        # frame number at the source (every frame read counts)
        self.image = None      # decoded uint8 BGR or gray (the slot's reused buffer; a
        #                        packet-decoded frame is a new array per frame)
        self.time = 0.0        # time.monotonic() when acquired (live: grabbed; file: taken
        #                        by the pipeline, so read-ahead does not count as latency)
        self.work = None       # what ``prepared`` returned for this frame
        self.prepared = None   # the prepare callable that made ``work`` (None: not run)


@dataclass
class SourceStats:
    read: int = 0        # frames decoded
    dropped: int = 0     # live: replaced by a newer frame before the pipeline took them
    corrupt: int = 0     # frames that failed to decode (skipped)
    disconnects: int = 0
    reconnects: int = 0
    cpu_s: float = 0.0   # CPU time of the reading thread (decode + prepare), once it ended


def source_kind(src: str) -> str:
    """device | url | gstreamer | file, from what the user typed."""
    text = str(src).strip()
    if text.isdigit():
        return "device"
    if text.lower().startswith(URL_SCHEMES):
        return "url"
    if "!" in text:
        return "gstreamer"
    return "file"


class FrameSource:
    """Common interface: ``read(timeout)`` -> Frame, or None when nothing new arrived in
    time; ``exhausted`` once a finite source has ended; ``close()`` (or ``with``).

    ``prepare`` (see ``Prepare``; given to the constructor or set before the first
    ``read``) runs on every decoded frame in the reading thread, so it sees frames a live
    source later drops and runs in parallel with the consumer. The reading thread starts
    at the first ``read``; an error raised by ``prepare`` ends the source and is raised
    by ``read``.
    """

    name: str = ""
    live: bool = False
    fps: float | None = None

    def __init__(self, prepare: Prepare | None = None, slots: int = 3) -> None:
        self.stats = SourceStats()
        self.exhausted = False
        self.prepare = prepare
        self._free: queue.SimpleQueue = queue.SimpleQueue()
        for _ in range(slots):
            self._free.put(Frame())
        self._lent: Frame | None = None
        self._failure: BaseException | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._reader: CaptureReader | None = None
        self._status = StatusLog()

    def poll_status(self) -> list[StatusChange]:
        """State changes since the last call (stalled / disconnected, start or end), in
        order; the run loop logs each as a fault event. Files have none."""
        return self._status.poll()

    def end_faults(self, detail: str) -> None:
        """End the faults still active (the run ends); ``poll_status`` then has them."""
        self._status.end_all(detail)

    @property
    def decoding(self) -> str:
        """"packets" (imdecode of JPEG packets) or "capture" (the capture decodes)."""
        reader = self._reader
        return "packets" if reader is not None and reader.packets else "capture"

    # -- reading thread
    def _decode(self, frame: Frame, reader: "CaptureReader") -> bool:
        """Decode the next frame into ``frame``'s buffer; False at the end / on failure."""
        image = reader.read(self.stats, frame.image)
        if image is None:
            return False
        frame.image = image
        frame.index = self.stats.read
        frame.time = time.monotonic()
        frame.prepared = None
        self.stats.read += 1
        return True

    def _prepare(self, frame: Frame, ahead: bool = False) -> None:
        prepare = self.prepare
        if prepare is not None:
            frame.work = prepare(frame.image, frame.work, self._consumer_waiting())
            frame.prepared = prepare
            if ahead and self._free.empty():   # the consumer is behind (see ``Prepare``)
                more = getattr(prepare, "ahead", None)
                if more is not None:
                    more(frame.work)

    def _consumer_waiting(self) -> bool:
        raise NotImplementedError

    def _free_slot(self) -> Frame | None:
        """A slot to decode into (waits while the consumer is behind); None once closed."""
        while not self._stop.is_set():
            try:
                return self._free.get(timeout=0.1)
            except queue.Empty:
                continue
        return None

    def _thread_main(self) -> None:
        started = time.thread_time()
        try:
            self._run()
        except Exception as exc:   # handed to the consumer: read() raises it
            self._failure = exc
        finally:
            self.stats.cpu_s = time.thread_time() - started
            self._finish()

    def _run(self) -> None:
        raise NotImplementedError

    def _finish(self) -> None:
        """Tell the consumer that no more frames come (reading thread, at its end)."""
        raise NotImplementedError

    # -- consumer
    def _take_back(self) -> None:
        if self._lent is not None:
            self._free.put(self._lent)
            self._lent = None

    def _start(self) -> None:
        if self._thread is None and not self._stop.is_set():
            self._thread = threading.Thread(target=self._thread_main, daemon=True,
                                            name=f"edgecnn-{type(self).__name__}")
            self._thread.start()

    def _ended(self) -> None:
        self.exhausted = True
        failure, self._failure = self._failure, None
        if failure is not None:
            raise failure

    def read(self, timeout: float = 0.5) -> Frame | None:
        raise NotImplementedError

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        elif self._reader is not None:
            self._reader.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# What the read-ahead ring of a video file may hold: a slot keeps its decoded frame and
# about as much again in what ``prepare`` made of it (gray copy, tensors), so a 2-5 MP
# frame gets fewer slots (an 1800x1000 BGR frame: 3 slots, ~30 MB, instead of 6); at
# least 3 (one lent, one ready, one being decoded) keep both threads busy. Counted by
# pixels as a BGR frame: a gray frame's float tensors weigh as much again.
RING_BYTES = 32 << 20
MIN_SLOTS = 3


class VideoFileSource(FrameSource):
    """Every frame of a video file, in order; the reading thread keeps up to ``prefetch``
    decoded and prepared frames ahead of the consumer (fewer for large frames: the ring
    stays within ``ring_bytes``)."""

    live = False

    def __init__(self, path, prefetch: int = 4, opener: Callable | None = None,
                 prepare: Prepare | None = None, ring_bytes: int = RING_BYTES,
                 color: str | None = None, shared: "SharedReading | None" = None):
        slots = max(1, prefetch) + 2
        super().__init__(prepare, slots=slots)
        self.name = str(path)
        capture = opener(self.name) if opener is not None else open_file(self.name, color)
        self.fps = capture_fps(capture)
        self._reader = CaptureReader(capture, is_file=True,
                                     indexed=self.name if indexed_file(self.name) else None)
        self._first = self._free.get()
        if not self._decode(self._first, self._reader):
            self._reader.release()
            raise SourceError(f"video {path} opened but no frame could be decoded from it")
        image = self._first.image
        self.frame_shape = image.shape        # the first frame's (before any read)
        per_slot = 2 * 3 * max(1, image.shape[0] * image.shape[1])
        self.slots = max(min(slots, MIN_SLOTS), min(slots, ring_bytes // per_slot))
        for _ in range(slots - self.slots):   # never filled: no buffers of their own
            self._free.get()
        self._ready: queue.SimpleQueue = queue.SimpleQueue()
        # small frames read by the run's shared reading thread, larger ones by their own
        small = image.shape[0] * image.shape[1] <= SHARED_READING_PIXELS
        self._shared = shared if small else None
        self._joined = False                  # handed to ``_shared`` (at the first read)
        self._left = threading.Event()        # ... and let go by it (ended or closed)

    @property
    def shares_reading(self) -> bool:
        """Whether a shared reading thread reads this file (see SharedReading)."""
        return self._shared is not None

    def _start(self) -> None:
        if self._shared is None:
            super()._start()
        elif not self._joined and not self._stop.is_set():
            self._joined = True
            self._shared.add(self)

    def _advance(self) -> bool | None:
        """The shared reading thread's turn for this file, never waiting: the frame
        decoded last (the first one, decoded at the open) or the next one decoded into a
        free slot is prepared and handed over. True: a frame went to the consumer; False:
        no free slot (the consumer is behind); None: the file ended or failed, or the
        source was closed (its end is told and the capture released)."""
        started = time.thread_time()
        try:
            if self._stop.is_set():
                return self._leave()
            frame, self._first = self._first, None
            if frame is None:
                try:
                    frame = self._free.get_nowait()
                except queue.Empty:
                    return False
                if not self._decode(frame, self._reader):
                    self._free.put(frame)
                    return self._leave()
            self._prepare(frame)
            self._ready.put(frame)
            return True
        except Exception as exc:   # handed to the consumer: read() raises it
            self._failure = exc
            return self._leave()
        finally:
            self.stats.cpu_s += time.thread_time() - started

    def _leave(self) -> None:
        try:
            self._reader.release()
        finally:
            self._finish()
            self._left.set()
        return None

    def close(self) -> None:
        if not self._joined:
            super().close()
            return
        self._stop.set()              # the shared thread releases the capture
        self._shared.wake()
        self._left.wait(timeout=5)

    def _run(self) -> None:
        frame, self._first = self._first, None
        try:
            while frame is not None:
                self._prepare(frame, ahead=True)
                self._ready.put(frame)
                frame = self._free_slot()
                if frame is not None and not self._decode(frame, self._reader):
                    self._free.put(frame)
                    break
        finally:
            self._reader.release()

    def _finish(self) -> None:
        self._ready.put(None)

    def _consumer_waiting(self) -> bool:
        # a shared reading thread never idles (it reads the others): whether the stepping
        # thread that serves every source would is told by all the rings together
        if self._shared is not None:
            return self._shared.consumers_ahead()
        return self._ready.empty()

    def read(self, timeout: float = 0.5) -> Frame | None:
        lent = self._lent is not None
        self._take_back()
        if lent and self._shared is not None:
            self._shared.wake()       # a slot is free again
        if self.exhausted:
            return None
        self._start()
        try:
            frame = self._ready.get(timeout=timeout)
        except queue.Empty:
            return None
        if frame is None:
            self._ended()
            return None
        frame.time = time.monotonic()
        self._lent = frame
        return frame


# The largest frame (pixels) a shared reading thread reads; see SharedReading.
SHARED_READING_PIXELS = 320 * 320
SHARED_IDLE_S = 0.1       # every ring full: wait this long at most for a slot (woken by one)
SHARED_GIVE_BELOW = 0.25  # rings this full or less: the consumers keep up (consumers_ahead)


class SharedReading:
    """One reading thread for the small-frame video files of a several-source run
    (frames up to ``SHARED_READING_PIXELS``), round-robin: each file's turn decodes and
    prepares its next frame into a free slot of its own ring; a file whose ring is full
    waits for its consumer without holding up the others, and with every ring full the
    thread sleeps until a consumer gives a slot back (``wake``); it ends with the last
    file and starts again for a later one. An error in one file's turn ends that file
    alone (its ``read`` raises it).

    Why not a thread each: a small frame's decode and checks are many short calls that
    each let go of the interpreter lock, and when several threads want it each hand-over
    costs more than the call. Four 200x200 MJPEG files in one run (2026-12-02, this 2-core
    PC, shipped NEU): 3650-3790 frames/s together read by one thread, 2850-2910 by a
    thread each; two files 3330-3350 against 3000-3010. Larger frames decode long enough
    to gain from a core each (four 640x480 files: 1100-1200 frames/s with a thread each,
    820-860 with one), so they keep their own.

    While the consumers keep up (``consumers_ahead``), a frame's analysis and tensors are
    left to the stepping thread, as a file's own thread does when its consumer waits: this
    thread then mostly decodes, which lets go of the interpreter lock for its whole length.
    Four 200x200 MJPEG files (2026-12-03, shipped NEU, old and new code alternating, four
    pairs): 3360-3750 -> 3610-3970 frames/s; with 2x2 tiles each, where the stepping
    thread has more to do, 1980-2210 -> 2220-2450."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._members: list[VideoFileSource] = []
        self._thread: threading.Thread | None = None
        self._slot = threading.Event()    # a consumer gave a slot back (or a file closes)

    def add(self, source: VideoFileSource) -> None:
        with self._lock:
            self._members.append(source)
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, daemon=True,
                                                name="edgecnn-shared-reading")
                self._thread.start()
        self.wake()

    def wake(self) -> None:
        self._slot.set()

    def consumers_ahead(self) -> bool:
        """Whether the consumers keep up: fewer than ``SHARED_GIVE_BELOW`` of the files'
        slots hold frames ready. Then the stepping thread would wait for frames, and a
        frame's analysis and tensors are left to it (see FramePreparer); while they are
        behind, this thread keeps the work. One measure over every file, so a file's
        place in the round-robin does not decide which thread prepares its frames."""
        members = self._members
        ready = sum(m._ready.qsize() for m in members)
        return ready < SHARED_GIVE_BELOW * sum(m.slots for m in members)

    def _serve(self) -> None:
        while True:
            with self._lock:
                members = list(self._members)
                if not members:
                    self._thread = None   # a later file starts a new thread
                    return
            progressed = False
            for source in members:
                try:
                    state = source._advance()
                except Exception:   # escaped _advance's own handling: ends this file alone
                    state = None
                    if not source._left.is_set():
                        try:
                            source._leave()
                        except Exception:
                            pass
                if state is None:
                    with self._lock:
                        self._members.remove(source)
                progressed |= bool(state)
            if not progressed:
                # every ring full: the consumers are behind; no polling meanwhile
                self._slot.wait(SHARED_IDLE_S)
                self._slot.clear()    # the next round sees every slot given back


class _PaceClock:
    """When a paced file's next frame is due: at its own timestamp (the stream time of
    the frame just decoded), so a recording with a gap or a varying frame rate plays as
    the camera delivered it; by the nominal rate where the file has no usable
    timestamps (none, or one going backwards)."""

    def __init__(self, fps: float, reader) -> None:
        self.period = 1.0 / fps
        self.start = time.monotonic()
        self.first = self._stamp(reader)     # the first frame's, decoded already
        self.last = 0.0                      # seconds after the first frame

    @staticmethod
    def _stamp(reader) -> float | None:
        try:
            ms = float(reader.capture.get(cv2.CAP_PROP_POS_MSEC))
        except (cv2.error, AttributeError, TypeError, ValueError):
            return None
        return ms / 1000.0 if math.isfinite(ms) and ms >= 0 else None

    def due(self, reader) -> float:
        stamp = self._stamp(reader)
        offset = None if stamp is None or self.first is None else stamp - self.first
        if offset is None or offset <= self.last:
            offset = self.last + self.period
        self.last = offset
        return self.start + offset


class LatestFrameSource(FrameSource):
    """A capture thread that keeps only the newest frame.

    ``opener()`` returns a cv2.VideoCapture-like object (``read``, ``release``, ``get``)
    or raises SourceError. The first open happens here and is retried with ``backoff`` for
    up to ``backoff.connect_timeout`` seconds (``stop``, Event-like, ends the wait), so a
    source that never comes up fails the run with the last reason and the time waited;
    later failures reconnect with ``backoff`` until ``close()``. ``pace`` (fps) plays a
    finite file at its own rate and ends at its end (a file is opened once, no waiting).
    """

    live = True

    def __init__(self, opener: Callable, name: str, backoff: Backoff = Backoff(),
                 pace: float | None = None, is_file: bool = False,
                 prepare: Prepare | None = None, stop=None):
        # three slots: one being decoded, the newest, the one lent to the consumer
        super().__init__(prepare, slots=3)
        self.name = shown_url(name)   # a URL's password stays out of events and logs
        self._opener = opener
        self._backoff = backoff
        self._pace = pace
        self._is_file = is_file
        self._first = self._free.get()
        if is_file:
            self._reader = self._open_first()
        else:
            self._reader = connect_with_backoff(self._open_first, backoff, stop)
        self.fps = capture_fps(self._reader.capture) or pace
        self._cond = threading.Condition()
        self._latest: Frame | None = None
        self._over = False
        self._last_frame = time.monotonic()   # when the reading thread last decoded one
        self._connected = True

    def _open_first(self) -> "CaptureReader":
        """Open and decode the first frame (one connection attempt)."""
        capture = self._opener()
        reader = CaptureReader(capture, is_file=self._is_file, indexed=self.name
                               if self._is_file and indexed_file(self.name) else None)
        if not self._decode(self._first, reader):
            reader.release()
            raise SourceError(f"source {self.name} opened but delivered no frame")
        return reader

    def poll_status(self) -> list[StatusChange]:
        """State changes since the last call; a connected source that delivered no frame
        for ``backoff.stall_seconds`` starts a "stalled" fault here (the reading thread
        may be blocked inside the decoder), the next frame ends it."""
        if self._connected and not self._over and not self._status.active("stalled"):
            silent = time.monotonic() - self._last_frame
            if silent >= self._backoff.stall_seconds:
                self._status.start("stalled", f"connected, no frame for {silent:.1f} s")
        return self._status.poll()

    def _decode(self, frame: Frame, reader: "CaptureReader") -> bool:
        if not super()._decode(frame, reader):
            return False
        self._last_frame = frame.time
        if self._status.active("stalled"):
            self._status.end("stalled", "frames again")
        return True

    def _store(self, frame: Frame) -> None:
        self._prepare(frame)
        with self._cond:
            if self._latest is not None:
                self.stats.dropped += 1
                self._free.put(self._latest)
            self._latest = frame
            self._cond.notify_all()

    def _run(self) -> None:
        reader = self._reader
        clock = _PaceClock(self._pace, reader) if self._pace else None
        frame, self._first = self._first, None
        try:
            self._store(frame)
            while not self._stop.is_set():
                frame = self._free_slot()
                if frame is None:
                    break
                if self._decode(frame, reader):
                    if clock is not None:
                        delay = clock.due(reader) - time.monotonic()
                        if delay > 0 and self._stop.wait(delay):
                            self._free.put(frame)
                            break
                        # it arrives when due, as from a camera: the wait is no latency
                        frame.time = time.monotonic()
                    self._store(frame)
                    continue
                self._free.put(frame)
                reader.release()
                reader = None
                if self._is_file:
                    break
                self.stats.disconnects += 1
                self._connected = False
                self._status.end("stalled", "disconnected")
                self._status.start("disconnected", "the stream stopped delivering frames")
                reader = self._reconnect()
                if reader is None:
                    return
                self._reader = reader
        finally:
            if reader is not None:
                reader.release()

    def _finish(self) -> None:
        with self._cond:
            self._over = True
            self._cond.notify_all()

    def _consumer_waiting(self) -> bool:
        return self._latest is None

    def _reconnect(self) -> "CaptureReader | None":
        for delay in self._backoff.delays():
            if self._stop.wait(delay):
                return None
            try:
                capture = self._opener()
            except SourceError:
                continue
            self.stats.reconnects += 1
            self._last_frame = time.monotonic()
            self._connected = True
            self._status.end("disconnected", "reconnected")
            return CaptureReader(capture, is_file=False)
        return None

    def read(self, timeout: float = 0.5) -> Frame | None:
        self._take_back()
        self._start()
        with self._cond:
            if self._latest is None and not self._over:
                self._cond.wait(timeout)
            frame = self._latest
            if frame is not None:
                self._latest = None
                self._lent = frame
                return frame
            over = self._over
        if over:
            self._ended()
        return None


def open_frame_source(src, realtime: bool = False, backoff: Backoff = Backoff(),
                      prefetch: int = 4, prepare: Prepare | None = None,
                      stop=None, color: str | None = None,
                      shared: SharedReading | None = None,
                      bit_depth: int | None = None) -> FrameSource:
    """A FrameSource for what the user typed: device index, file, URL or GStreamer pipeline.

    ``prepare`` runs on every decoded frame in the reading thread (see FrameSource). A
    live source is waited for up to ``backoff.connect_timeout`` seconds (``stop``, e.g.
    the run's StopFlag, ends the wait); a file that cannot be opened fails at once.
    ``color`` ("gray", "bgr", "rgb") decodes MJPEG files and streams from their packets
    (devices and GStreamer pipelines as before). ``shared`` reads a small-frame file
    (not paced) by the run's shared reading thread. A still image file is one frame,
    read as training reads images (16-bit files by the model's ``bit_depth``).
    """
    text = str(src).strip()
    kind = source_kind(text)
    if kind == "device":
        index = int(text)
        return LatestFrameSource(lambda: open_device(index), f"camera {index}", backoff,
                                 prepare=prepare, stop=stop)
    if kind == "url":
        check_port(text)
        first = [backoff.first_open]

        def opener():   # the very first attempt within ``backoff.first_open`` s, if given
            limit, first[0] = first[0], None
            return open_url(text, color, int(limit * 1000)) if limit else open_url(text, color)

        return LatestFrameSource(opener, text, backoff, prepare=prepare, stop=stop)
    if kind == "gstreamer":
        return LatestFrameSource(lambda: open_gstreamer(text), "gstreamer pipeline",
                                 backoff, prepare=prepare, stop=stop)
    if Path(text).suffix.lower() in IMAGE_SUFFIXES and Path(text).is_file():
        return VideoFileSource(text, prefetch=prefetch, prepare=prepare, shared=shared,
                               opener=lambda name: StillCapture(name, color, bit_depth))
    if realtime:
        probe = open_file(text)
        fps = capture_fps(probe) or 25.0
        probe.release()
        return LatestFrameSource(lambda: open_file(text, color), text, backoff, pace=fps,
                                 is_file=True, prepare=prepare)
    return VideoFileSource(text, prefetch=prefetch, prepare=prepare, color=color,
                           shared=shared)
