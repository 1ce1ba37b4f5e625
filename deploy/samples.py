"""Where vibration samples come from: recordings, raw float32 on stdin, TCP streams.

Sample sources hand out chunks of float64 samples at the model's sample rate: recording
files (via ``recordings.read_recording``), raw float32 on stdin, or a TCP sample stream that
is reconnected after a drop (the lost samples are reported as a gap).
"""

from __future__ import annotations

import os
import select
import socket
import time
from dataclasses import dataclass

import numpy as np

from .errors import InputError, SourceError
from .spec import DEFAULT_CHANNEL
from .preprocess import StreamResampler
from .reconnect import Backoff

@dataclass
class Chunk:
    samples: np.ndarray     # float64 at the model's sample rate
    gap: bool = False       # samples were lost just before this chunk (stream reconnected)


@dataclass
class SampleStats:
    samples: int = 0        # samples delivered (after resampling)
    chunks: int = 0
    bad_chunks: int = 0     # unreadable pieces skipped (e.g. a partial float at the end)
    disconnects: int = 0
    reconnects: int = 0


class SampleSource:
    """``read(timeout)`` -> Chunk, or None when nothing arrived in time; ``exhausted`` at
    the end of a finite source; ``close()``."""

    name: str = ""
    live: bool = False

    def __init__(self, sample_rate: float):
        self.sample_rate = float(sample_rate)
        self.stats = SampleStats()
        self.exhausted = False

    def read(self, timeout: float = 0.5) -> Chunk | None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _deliver(self, samples: np.ndarray, gap: bool = False) -> Chunk:
        self.stats.samples += len(samples)
        self.stats.chunks += 1
        return Chunk(samples, gap)


class RecordingSource(SampleSource):
    """A recording file, resampled to the model rate, in chunks (paced with ``realtime``)."""

    def __init__(self, path, sample_rate: float, channel: str = DEFAULT_CHANNEL,
                 file_rate: float | None = None, realtime: bool = False,
                 chunk_seconds: float = 0.1):
        from .preprocess import resample
        from .recordings import read_recording

        super().__init__(sample_rate)
        recording = read_recording(path, channel=channel, sample_rate=file_rate)
        self.name = str(path)
        self.recording = recording
        self.samples = resample(recording.samples, recording.sample_rate, sample_rate)
        self._chunk = max(1, int(round(chunk_seconds * sample_rate)))
        self._pos = 0
        self._realtime = realtime
        self._start = time.monotonic()

    def read(self, timeout: float = 0.5) -> Chunk | None:
        if self._pos >= len(self.samples):
            self.exhausted = True
            return None
        if self._realtime:
            due = self._start + (self._pos + self._chunk) / self.sample_rate
            delay = due - time.monotonic()
            if delay > timeout:
                time.sleep(timeout)
                return None
            if delay > 0:
                time.sleep(delay)
        piece = self.samples[self._pos:self._pos + self._chunk]
        self._pos += len(piece)
        return self._deliver(piece)


class _RawFloatStream(SampleSource):
    """Raw little-endian float32 samples from a file descriptor-like byte stream."""

    live = True

    def __init__(self, sample_rate: float, stream_rate: float | None):
        super().__init__(sample_rate)
        self.stream_rate = float(stream_rate or sample_rate)
        self._resampler = StreamResampler(self.stream_rate, sample_rate)
        self._pending = b""

    def _decode(self, data: bytes) -> np.ndarray:
        data = self._pending + data
        usable = len(data) - len(data) % 4
        self._pending = data[usable:]
        raw = np.frombuffer(data[:usable], dtype="<f4").astype(np.float64)
        return self._resampler(raw)

    def _finish(self) -> None:
        if self._pending:
            self.stats.bad_chunks += 1   # a partial float at the very end
            self._pending = b""


class StdinSource(_RawFloatStream):
    """Raw float32 samples on a pipe (``-``): ``sensor | edgecnn run vibration B --source -``."""

    def __init__(self, sample_rate: float, stream_rate: float | None = None, fd: int = 0,
                 block: int = 1 << 16):
        super().__init__(sample_rate, stream_rate)
        self.name = "stdin"
        self._fd = fd
        self._block = block

    def read(self, timeout: float = 0.5) -> Chunk | None:
        if self.exhausted:
            return None
        ready, _, _ = select.select([self._fd], [], [], timeout)
        if not ready:
            return None
        try:
            data = os.read(self._fd, self._block)
        except OSError as exc:
            raise SourceError(f"cannot read samples from stdin: {exc.strerror}") from None
        if not data:
            self._finish()
            self.exhausted = True
            return None
        samples = self._decode(data)
        return self._deliver(samples) if len(samples) else None


class TcpSampleSource(_RawFloatStream):
    """Raw float32 samples from ``tcp://host:port``; reconnects with backoff after a drop."""

    def __init__(self, url: str, sample_rate: float, stream_rate: float | None = None,
                 backoff: Backoff = Backoff(), connect_timeout: float = 5.0):
        super().__init__(sample_rate, stream_rate)
        self.name = url
        rest = url[len("tcp://"):]
        host, _, port = rest.rpartition(":")
        if not host or not port.isdigit():
            raise InputError(f"expected tcp://host:port; found {url!r}")
        self._address = (host.strip("[]"), int(port))
        self._backoff = backoff
        self._timeout = connect_timeout
        self._sock = self._connect()
        if self._sock is None:
            raise SourceError(f"cannot connect to sample stream {url}")
        self._gap = False
        self._retry_at = 0.0
        self._delays = None

    def _connect(self) -> socket.socket | None:
        try:
            sock = socket.create_connection(self._address, timeout=self._timeout)
        except OSError:
            return None
        sock.setblocking(False)
        return sock

    def read(self, timeout: float = 0.5) -> Chunk | None:
        if self._sock is None:
            return self._reconnect(timeout)
        ready, _, _ = select.select([self._sock], [], [], timeout)
        if not ready:
            return None
        try:
            data = self._sock.recv(1 << 16)
        except BlockingIOError:
            return None
        except OSError:
            data = b""
        if not data:
            self._drop()
            return None
        samples = self._decode(data)
        if not len(samples):
            return None
        chunk = self._deliver(samples, gap=self._gap)
        self._gap = False
        return chunk

    def _drop(self) -> None:
        self._sock.close()
        self._sock = None
        self._finish()
        self._resampler = StreamResampler(self.stream_rate, self.sample_rate)
        self.stats.disconnects += 1
        self._gap = True
        self._delays = self._backoff.delays()
        self._retry_at = time.monotonic() + next(self._delays)

    def _reconnect(self, timeout: float) -> None:
        wait = self._retry_at - time.monotonic()
        if wait > 0:
            time.sleep(min(wait, timeout))
            return None
        sock = self._connect()
        if sock is None:
            self._retry_at = time.monotonic() + next(self._delays)
            return None
        self._sock = sock
        self.stats.reconnects += 1
        return None

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def open_sample_source(src, sample_rate: float, channel: str = DEFAULT_CHANNEL,
                       stream_rate: float | None = None, realtime: bool = False,
                       backoff: Backoff = Backoff()) -> SampleSource:
    """A SampleSource for a recording path, ``-`` (stdin) or ``tcp://host:port``."""
    text = str(src).strip()
    if text == "-":
        return StdinSource(sample_rate, stream_rate)
    if text.lower().startswith("tcp://"):
        return TcpSampleSource(text, sample_rate, stream_rate, backoff)
    return RecordingSource(text, sample_rate, channel=channel, file_rate=stream_rate,
                           realtime=realtime)
