"""What the live view knows of a running line: per source its counters, faults, recent
events and -- only while someone watches -- an annotated preview frame.

``LiveHub`` is an event sink (``write``) beside the log, and gives each pipeline's loop a
``SourcePreview`` (``loop.preview``). The pipeline asks ``wants()`` per frame: true only
while a viewer fetched a frame in the last few seconds and the capped rate (about 5
frames/s) allows one more, so an unwatched line pays two comparisons per frame. Annotation
and JPEG encoding happen in the HTTP thread that asks for the frame, never in the
pipeline.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections import deque

import cv2
import numpy as np

PREVIEW_FPS = 5.0             # preview frames handed over per second at most
VIEWER_TIMEOUT_S = 5.0        # a viewer that asked nothing for this long has gone
STALL_S = 10.0                # a source that delivered nothing for this long is not up
RECENT_EVENTS = 500           # events kept for the page and /api/events
HOUR_S = 3600.0
RATE_WINDOW_S = 10.0          # the live rate: items per second over about this long


class SourcePreview:
    """The latest frame (or spectrogram) a pipeline handed over, and whether it should."""

    def __init__(self, fps: float = PREVIEW_FPS):
        self.interval = 1.0 / fps
        self._lock = threading.Lock()
        self._watched_until = 0.0
        self._next = 0.0
        self._frame = None           # (image copy, regions, labels, alerts, fault)
        self._spectrogram = None     # (values copy, label)
        self.offered = 0
        self._encoded: tuple[int, bytes | None] | None = None   # (offered, JPEG) drawn last

    # pipeline thread
    def wants(self) -> bool:
        now = time.monotonic()
        return now < self._watched_until and now >= self._next

    def offer(self, image: np.ndarray, regions, labels, alerts, fault) -> None:
        with self._lock:
            self._frame = (image.copy(), list(regions), list(labels), list(alerts), fault)
            self._next = time.monotonic() + self.interval
            self.offered += 1

    def offer_spectrogram(self, values: np.ndarray, label: str) -> None:
        with self._lock:
            self._spectrogram = (np.array(values, dtype=np.float32), label)
            self._next = time.monotonic() + self.interval
            self.offered += 1

    # HTTP threads
    def watched(self) -> None:
        self._watched_until = time.monotonic() + VIEWER_TIMEOUT_S

    def jpeg(self) -> bytes | None:
        """The latest preview as an annotated JPEG (None before the first one), drawn and
        encoded once per preview frame however many viewers ask for it."""
        self.watched()
        with self._lock:
            frame, spectrogram, offered = self._frame, self._spectrogram, self.offered
            cached = self._encoded
        if cached is not None and cached[0] == offered:
            return cached[1]
        data = self._encode(frame, spectrogram)
        with self._lock:
            self._encoded = (offered, data)
        return data

    def _encode(self, frame, spectrogram) -> bytes | None:
        if frame is not None:
            from .camera import draw_overlay

            image, regions, labels, alerts, fault = frame
            canvas = draw_overlay(image, regions, labels if fault is None else [],
                                  alerts or [False] * len(regions), fault)
        elif spectrogram is not None:
            canvas = _spectrogram_image(*spectrogram)
        else:
            return None
        ok, data = cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, 80])
        return data.tobytes() if ok else None


def _spectrogram_image(values: np.ndarray, label: str) -> np.ndarray:
    """A normalised spectrogram (freq x time) as a colour picture, low frequencies at the
    bottom, with the current class written on it."""
    v = values[::-1]
    lo, hi = np.percentile(v, 1), np.percentile(v, 99)
    gray = np.clip((v - lo) / max(hi - lo, 1e-9) * 255, 0, 255).astype(np.uint8)
    gray = cv2.resize(gray, (max(256, 8 * gray.shape[1]), 2 * gray.shape[0]),
                      interpolation=cv2.INTER_NEAREST)
    canvas = cv2.applyColorMap(gray, cv2.COLORMAP_VIRIDIS)
    cv2.putText(canvas, label, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1,
                cv2.LINE_AA)
    return canvas


class LiveHub:
    """The live state of every source of a run: an event sink plus pipeline views."""

    def __init__(self, pipelines, stall_s: float = STALL_S):
        self.pipelines = {p.loop.summary.source: p for p in pipelines}
        self.stall_s = stall_s
        self._lock = threading.Lock()
        self._seq = itertools.count(1)
        # seqs start at 1 again with every run: ``run`` tells a poller (the page, a
        # script with ?since=) that the service restarted and its since is another run's
        self.run = os.urandom(6).hex()
        self._events: deque = deque(maxlen=RECENT_EVENTS)   # (seq, event)
        self._hour: dict[str, deque] = {name: deque() for name in self.pipelines}
        self._rates: dict[str, deque] = {}   # per source (monotonic, processed) at looks
        self.previews = {}
        for name, pipeline in self.pipelines.items():
            self.previews[name] = pipeline.loop.preview = SourcePreview()

    # sink
    def write(self, event: dict) -> None:
        with self._lock:
            self._events.append((next(self._seq), event))
            if event.get("type") == "defect":
                hour = self._hour.setdefault(event.get("source", ""), deque())
                now = time.monotonic()
                hour.append((now, event["class"]))
                while hour[0][0] < now - HOUR_S:   # bounded whether or not anyone looks
                    hour.popleft()

    def close(self) -> None:
        for pipeline in self.pipelines.values():
            pipeline.loop.preview = None

    # views
    def events(self, since: int | None = None, limit: int = 100) -> list[dict]:
        """Events after sequence number ``since``, oldest first, each with its ``seq``: the
        ``limit`` oldest after it, so a client that polls with the last seq it saw pages
        through every event still kept (``since`` 0: from the oldest kept); no ``since``
        (a first look) gives the newest."""
        return self.page(since, limit)["events"]

    def page(self, since: int | None = None, limit: int = 100) -> dict:
        """``events`` with ``more`` (newer events wait beyond this page) and ``oldest``
        (the oldest seq still kept: a client whose ``since`` is older lost some)."""
        after = -1 if since is None else since
        with self._lock:
            picked = [dict(event, seq=seq) for seq, event in self._events if seq > after]
            oldest = self._events[0][0] if self._events else None
        shown = picked[-limit:] if since is None else picked[:limit]
        return {"events": shown, "more": since is not None and len(picked) > len(shown),
                "oldest": oldest, "run": self.run}

    def event(self, seq: int) -> dict | None:
        with self._lock:
            return next((dict(e, seq=s) for s, e in self._events if s == seq), None)

    def _last_hour(self, name: str) -> dict[str, int]:
        cutoff = time.monotonic() - HOUR_S
        with self._lock:
            hour = self._hour.get(name, deque())
            while hour and hour[0][0] < cutoff:
                hour.popleft()
            counts: dict[str, int] = {}
            for _, label in hour:
                counts[label] = counts.get(label, 0) + 1
        return counts

    def _recent_rate(self, name: str, processed: int, now: float) -> float:
        """Items classified per second over about the last RATE_WINDOW_S (from the
        counts seen at earlier looks): a source that went quiet shows 0, not its
        lifetime average."""
        with self._lock:
            seen = self._rates.setdefault(name, deque())
            seen.append((now, processed))
            while len(seen) > 2 and seen[1][0] <= now - RATE_WINDOW_S:
                seen.popleft()
            began, first = seen[0]
        pipeline = self.pipelines[name]
        if now - began < 1.0:     # a first look: since the start
            began, first = pipeline.loop.started, 0
        return round((processed - first) / max(now - began, 1e-9), 2)

    def health(self, name: str) -> tuple[bool, str]:
        """(up, reason): up while running, delivering and free of source faults."""
        pipeline = self.pipelines[name]
        loop = pipeline.loop
        if loop.stop.is_set():
            return False, f"stopped ({loop.stop.reason or 'stopped'})"
        faults = loop.current_faults()
        if faults:
            return False, f"source fault: {', '.join(faults)}"
        last = loop.last_item if loop.last_item is not None else loop.started
        quiet = time.monotonic() - last
        if quiet > self.stall_s:
            return False, f"nothing received for {quiet:.0f} s"
        return True, "ok"

    def status(self) -> dict:
        sources = []
        for name, pipeline in self.pipelines.items():
            loop = pipeline.loop
            up, reason = self.health(name)
            now = time.monotonic()
            elapsed = max(now - loop.started, 1e-9)
            sources.append({**loop.status(), "kind": loop.summary.kind,
                            "unit": loop.summary.unit, "up": up, "health": reason,
                            "rate_per_s": self._recent_rate(name, loop.summary.processed,
                                                            now),
                            "rate_per_s_since_start": round(loop.summary.processed
                                                            / elapsed, 2),
                            "latency_p99_ms": loop.latency.percentile(99),
                            "inference_p50_ms": loop.inference.percentile(50),
                            "events_last_hour": self._last_hour(name),
                            "active_faults": loop.current_faults(),
                            "labels": list(pipeline.bundle.labels)})
        return {"sources": sources}
