"""Opening and reading OpenCV captures: files, camera devices, streams, GStreamer pipelines.

Each ``open_*`` returns an opened cv2.VideoCapture or raises SourceError saying what went
wrong (no such file or device, connection refused, timed out, not a video);
``CaptureReader`` reads one, telling a corrupt frame from the end. Opening is quiet:
FFmpeg's and OpenCV's own complaints are held back, our message tells the reason.

Given the consumer's colour (``color``: the model's InputSpec colour), a file or stream
whose codec is MJPEG is read as compressed packets and each JPEG is decoded with
``cv2.imdecode`` straight to that colour (``PacketCapture``): gray decoding skips the
colour planes and the BGR conversion, and is how training decoded its JPEG images.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from .errors import InputError, SourceError
from .preprocess import quiet_opencv, read_image
from .shown import shown_url

OPEN_TIMEOUT_MS = 10000
READ_TIMEOUT_MS = 10000
DEFAULT_PORTS = {"http": 80, "https": 443, "rtsp": 554, "rtsps": 322, "rtmp": 1935}
# FFmpeg's own log level for OpenCV captures unless the user set one: "panic" only, so a
# broken stream does not write megabytes of decoder complaints to stderr (what went wrong
# is counted instead: corrupt frames, disconnected / stalled faults), nor a file that is
# no video three lines of them before our one-line error (FFmpeg logs "No JPEG data
# found" as fatal). Set OPENCV_FFMPEG_LOGLEVEL=24 (warning) to see them.
FFMPEG_LOGLEVEL = "0"
# OpenCV reads it once, when its FFmpeg backend starts: set it as early as we can
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", FFMPEG_LOGLEVEL)


def capture_fps(capture) -> float | None:
    try:
        fps = float(capture.get(cv2.CAP_PROP_FPS))
    except (cv2.error, TypeError, ValueError):
        return None
    return fps if 0 < fps < 1000 else None


# FFmpeg pixel formats of 8-bit gray video (mono cameras, raw gray recordings)
GRAY_PIXEL_FORMATS = ("Y800", "GREY", "GRAY", "Y8  ")
# FOURCCs of Motion JPEG (each packet one complete JPEG image); FFmpeg's mpjpeg demuxer
# (HTTP multipart JPEG) reports MJPG too
MJPEG_FOURCCS = ("MJPG", "JPEG", "AVRN", "DMB1")


def _fourcc(capture, prop: int) -> str:
    try:
        code = int(capture.get(prop))
    except (cv2.error, TypeError, ValueError):
        return ""
    return "".join(chr((code >> 8 * i) & 0xFF) for i in range(4)) if code > 0 else ""


def _keep_native_gray(capture):
    """Let an 8-bit gray stream arrive as it is (H x W) instead of as three equal BGR
    channels: saves a conversion to BGR and back per frame, same pixels. Only where FFmpeg
    names the gray pixel format; every other format is converted to BGR as usual."""
    if _fourcc(capture, cv2.CAP_PROP_CODEC_PIXEL_FORMAT) in GRAY_PIXEL_FORMATS:
        capture.set(cv2.CAP_PROP_CONVERT_RGB, 0)
    return capture


def imdecode_flag(color: str | None) -> int | None:
    """How ``cv2.imdecode`` decodes a JPEG for a consumer of ``color`` (None: no packets)."""
    if color is None:
        return None
    return cv2.IMREAD_GRAYSCALE if color == "gray" else cv2.IMREAD_COLOR


# bytes at the end of a packet searched for the end of its JPEG: a frame may be padded
# with zeros after it (AVI chunks to an even size, some cameras to a fixed size)
_TAIL = 1024


def jpeg_is_whole(packet: np.ndarray) -> bool:
    """Whether a JPEG packet ends with its end-of-image marker (FF D9), zeros after it
    allowed. A cut one (a lost network packet, a frame cut short by its sender) would
    decode partly, libjpeg filling the missing part gray: a frame of no camera, which
    is counted as corrupt instead of classified."""
    data = packet.reshape(-1)
    if len(data) >= 2 and data[-1] == 0xD9 and data[-2] == 0xFF:   # the usual end
        return True
    tail = data[-_TAIL:]
    filled = np.flatnonzero(tail)
    if not len(filled) and len(data) > _TAIL:
        tail = data
        filled = np.flatnonzero(tail)
    if not len(filled):
        return False
    last = len(data) - len(tail) + int(filled[-1])
    return last >= 1 and data[last] == 0xD9 and data[last - 1] == 0xFF


class PacketCapture:
    """A cv2.VideoCapture of MJPEG in raw mode, read like a decoding one: ``read`` takes
    the next compressed packet (one JPEG) and decodes it with ``cv2.imdecode`` (gray for
    a gray model, BGR otherwise). A packet that does not decode reads as (True, None):
    a frame arrived but is no image, counted as corrupt by ``CaptureReader`` (so does one
    cut short: ``jpeg_is_whole``, which libjpeg would decode in part); a failed
    packet read is the end / a failed stream, as before. ``get``/``set``/``release`` are
    the capture's (frame positions and stream times count packets, one per frame)."""

    def __init__(self, capture, flag: int):
        self.capture = capture
        self.flag = flag
        self._packet: np.ndarray | None = None
        self._first: np.ndarray | None = None   # decoded by ``probe``, not yet read

    def probe(self) -> bool:
        """Decode the first packet (kept for the first ``read``): False when imdecode
        cannot (the caller then reopens for the capture's own decoding: raw mode
        cannot be undone)."""
        ok, image = self._next()
        self._first = image if ok else None
        return self._first is not None

    def read(self, buffer=None):
        if self._first is not None:
            image, self._first = self._first, None
            return True, image
        return self._next()

    def _next(self):
        ok, packet = self.capture.read(self._packet)
        if not ok or packet is None:
            return False, None
        self._packet = packet
        if not jpeg_is_whole(packet):
            return True, None
        try:
            image = cv2.imdecode(packet, self.flag)
        except cv2.error:
            image = None
        return True, image

    def get(self, prop):
        return self.capture.get(prop)

    def set(self, prop, value):
        return self.capture.set(prop, value)

    def isOpened(self) -> bool:
        return self.capture.isOpened()

    def release(self) -> None:
        self.capture.release()


class StillCapture:
    """A still image file (PNG, TIFF, JPEG ...) as a one-frame video, decoded as training
    reads images (``preprocess.read_image``): a 16-bit file scaled by the model's bit
    depth, where OpenCV's capture scaled a 12-bit PNG by 16 bits (a frame 16 times too
    dark: a 'black' fault instead of a class)."""

    def __init__(self, path: str, color: str | None, bit_depth: int | None):
        try:
            self.image = read_image(path, "gray" if color == "gray" else "bgr", bit_depth)
        except InputError as exc:
            raise SourceError(str(exc)) from None
        self._read = False

    def read(self, buffer=None):
        if self._read:
            return False, None
        self._read = True
        return True, self.image

    def get(self, prop):
        if prop == cv2.CAP_PROP_FRAME_COUNT:
            return 1.0
        if prop == cv2.CAP_PROP_POS_FRAMES:
            return float(self._read)
        return 0.0

    def set(self, prop, value) -> bool:
        return False

    def isOpened(self) -> bool:
        return True

    def release(self) -> None:
        pass


def _raw_mjpeg(capture, color: str | None, reopen: Callable):
    """``capture`` as compressed packets when that pays (see PacketCapture): an FFmpeg
    capture of MJPEG that accepts raw mode, for a consumer of ``color``, whose first
    JPEG imdecode decodes; otherwise ``capture`` as before (other codecs and backends),
    or ``reopen()`` (a capture decoding itself) when raw mode was set but the first
    packet does not decode. Call before any read."""
    flag = imdecode_flag(color)
    if flag is None or _fourcc(capture, cv2.CAP_PROP_FOURCC).upper() not in MJPEG_FOURCCS:
        return _keep_native_gray(capture)
    try:
        if capture.getBackendName() != "FFMPEG" or not capture.set(cv2.CAP_PROP_FORMAT, -1):
            return _keep_native_gray(capture)
    except (cv2.error, AttributeError):
        return _keep_native_gray(capture)
    packets = PacketCapture(capture, flag)
    if packets.probe():
        return packets
    capture.release()
    return reopen()


def _valid(image) -> bool:
    return (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.size > 0
            and image.ndim in (2, 3))


def indexed_file(path: str) -> bool:
    """Whether a video file's container lists every frame it holds: AVI, whose index (or
    header) gives FFmpeg the exact count. Other containers may only estimate it from the
    duration and the frame rate."""
    return Path(path).suffix.lower() == ".avi"


class CaptureReader:
    """Wraps a cv2.VideoCapture-like object; tells a corrupt frame from the end of a file.

    ``indexed``: the name of a file that lists every frame (``indexed_file``). FFmpeg's
    demuxer skips a damaged chunk without a word (its frame never reaches ``read``); at
    the end of such a file the frames its index lists that never arrived are counted as
    corrupt too, and a warning says how many."""

    def __init__(self, capture, is_file: bool, max_bad: int = 25, indexed: str | None = None):
        self.capture = capture
        self.is_file = is_file
        self.max_bad = max_bad
        self.into = True    # capture.read(buffer) reuses the buffer (cv2.VideoCapture does)
        self.packets = isinstance(capture, PacketCapture)   # imdecode of JPEG packets
        self.total = 0
        self.position = 0.0  # live: stream time (ms) of the last frame, 0 when not known
        if is_file:
            total = capture.get(cv2.CAP_PROP_FRAME_COUNT)
            self.total = int(total) if total and total > 0 else 0
        self.indexed = indexed if is_file and self.total > 0 else None
        self.seen = 0        # frames delivered or counted corrupt

    def _grab(self, buffer):
        if buffer is not None and self.into:
            try:
                return self.capture.read(buffer)
            except TypeError:   # a capture-like object whose read() takes no buffer
                self.into = False
        return self.capture.read()

    def read(self, stats, buffer: np.ndarray | None = None):
        """A valid image (in ``buffer`` when its size fits), or None at the end of a file /
        when a live stream failed; corrupt frames are counted in ``stats`` (the source's
        frames.SourceStats).

        OpenCV reports an undecodable frame of a file as a failed read and goes on with
        the next one on the following read; failures are counted as corrupt only once a
        good frame follows them (a run of failures at the end is the end of the file).
        """
        pending = junk = 0
        # a file ends where its reads fail, not at a run of undecodable frames (a second of
        # cut JPEGs in a recording): those are counted, up to every frame its index lists
        junk_limit = self.total + self.max_bad if self.is_file and self.total else self.max_bad
        last_position = -1
        while True:
            try:
                ok, image = self._grab(buffer)
            except cv2.error:
                ok, image = False, None
            if ok and _valid(image) and (self.is_file or self._advanced()):
                stats.corrupt += pending
                self.seen += pending + 1
                return image
            if ok:   # not an image, or no new picture (a broken stream's partial decode)
                stats.corrupt += 1
                self.seen += 1
                junk += 1
                if junk >= junk_limit:
                    return None
                continue
            if not self.is_file:
                return None
            pending += 1
            position = int(self.capture.get(cv2.CAP_PROP_POS_FRAMES) or 0)
            # failed reads end a file at its last frame, or after max_bad of them where it
            # lists no frame count or its position stands still (no more frames come)
            stuck, last_position = position == last_position, position
            if (self.total and position >= self.total) or (
                    pending >= self.max_bad and (not self.total or stuck)):
                if self.indexed is not None and self.seen < self.total:
                    logging.getLogger("edgecnn.deploy").warning(
                        "%s: %d of the %d frames its index lists never arrived (a damaged "
                        "or cut-short file): counted as corrupt", self.indexed,
                        self.total - self.seen, self.total)
                    stats.corrupt += self.total - self.seen
                    self.seen = self.total     # once: a later read is at the end again
                return None

    def _advanced(self) -> bool:
        """False when a live stream repeats the stream time of the previous frame: FFmpeg
        then handed out a frame it could not decode again (a broken stream does this
        thousands of times a second); where the stream tells no time, every frame counts."""
        try:
            position = float(self.capture.get(cv2.CAP_PROP_POS_MSEC) or 0.0)
        except (cv2.error, TypeError, ValueError):
            return True
        repeated = position > 0 and position == self.position
        self.position = position
        return not repeated

    def release(self) -> None:
        try:
            self.capture.release()
        except cv2.error:
            pass


def open_file(path: str, color: str | None = None):
    """The video file at ``path``; for a consumer of ``color`` an MJPEG file whose first
    JPEG imdecode can decode is read as packets (PacketCapture)."""
    if not Path(path).is_file():
        raise SourceError(f"video source {path!r} is not a file, a camera index, a URL "
                          "(rtsp://, http://...) or a GStreamer pipeline")
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:   # OpenCV crashes the process on such a name (SIGSEGV)
        raise SourceError(f"video file name {str(path)!r} is not UTF-8 (bytes of another "
                          "encoding): OpenCV cannot open it; rename the file") from None
    with quiet_opencv("ERROR"):
        capture = cv2.VideoCapture(path)
    if not capture.isOpened():
        capture.release()
        raise SourceError(f"cannot open {path} as a video (expected a file OpenCV can "
                          "decode, e.g. .avi/.mp4/.mkv)")
    return _raw_mjpeg(capture, color, lambda: open_file(path))


def open_device(index: int):
    if sys.platform.startswith("linux") and not Path(f"/dev/video{index}").exists():
        raise SourceError(f"cannot open camera {index}: there is no /dev/video{index}")
    with quiet_opencv("ERROR"):
        capture = cv2.VideoCapture(index)
    if not capture.isOpened():
        capture.release()
        raise SourceError(f"cannot open camera {index} (no such device, or it is in use)")
    capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)
    return capture


def _why_unreachable(url: str, timeout: float) -> str:
    """Why OpenCV could not open ``url``, from one plain TCP connection to its host (made
    only after OpenCV failed, so a single-client server is not disturbed while it works)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or DEFAULT_PORTS.get(scheme)
    except ValueError:
        return "its port is not a number"
    host = parts.hostname
    if not host or not port:
        return "not a video stream OpenCV can open (or no answer)"
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except socket.gaierror:
        return f"host {host!r} not found"
    except ConnectionRefusedError:
        return f"connection refused by {host}:{port}"
    except (socket.timeout, TimeoutError):
        return f"no answer from {host}:{port} (timed out after {timeout:g} s)"
    except OSError as exc:
        return f"cannot reach {host}:{port} ({exc.strerror or exc})"
    return (f"{host}:{port} accepts connections, but OpenCV could not open a video "
            "stream there (wrong path or credentials, not a video, or it was not up yet)")


def open_url(url: str, color: str | None = None, open_timeout_ms: int = OPEN_TIMEOUT_MS):
    """A network stream; for a consumer of ``color`` an MJPEG stream (e.g. HTTP multipart
    JPEG) is read as packets (PacketCapture; a later JPEG that does not decode is a
    corrupt frame). A stream whose first JPEG imdecode cannot decode is opened again,
    decoded by FFmpeg as before (a second connection)."""
    params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, open_timeout_ms,
              cv2.CAP_PROP_READ_TIMEOUT_MSEC, READ_TIMEOUT_MS]
    started = time.monotonic()
    with quiet_opencv("ERROR"):
        capture = cv2.VideoCapture(url, cv2.CAP_FFMPEG, params)
    if not capture.isOpened():
        capture.release()
        took = time.monotonic() - started
        if took >= 0.9 * open_timeout_ms / 1000.0:
            why = f"no answer (timed out after {took:.1f} s)"
        else:
            why = _why_unreachable(url, timeout=min(5.0, open_timeout_ms / 1000.0))
        raise SourceError(f"cannot open stream {shown_url(url)}: {shown_url(why)}")
    capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)
    return _raw_mjpeg(capture, color, lambda: open_url(url))


def open_gstreamer(pipeline: str):
    with quiet_opencv("ERROR"):
        capture = cv2.VideoCapture(pipeline, cv2.CAP_GSTREAMER)
    if not capture.isOpened():
        capture.release()
        raise SourceError("cannot open the GStreamer pipeline (check it with gst-launch-1.0; "
                          "it must end in appsink, and OpenCV must be built with GStreamer: "
                          "the opencv-python wheels are not)")
    return capture
