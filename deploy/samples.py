"""Where vibration samples come from: recordings, raw float32 on stdin, TCP streams.

Sample sources hand out chunks of float64 samples at the model's sample rate: recording
files (via ``recordings.read_recording``), raw float32 on stdin, or a TCP sample stream that
is waited for when it is not up yet and reconnected after a drop (the lost samples are
reported as a gap). A raw stream that slipped a byte (every float read from the wrong
4-byte phase) is re-aligned on the phase that gives plausible samples; a connected stream
that stays silent for ``Backoff.stall_seconds`` is "stalled". Both, and every disconnect,
are state changes the run loop reads with ``poll_status()``; a chunk after any of them is
marked ``gap`` so no window mixes samples from both sides.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import select
import socket
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from .errors import InputError, SourceError
from .preprocess import StreamResampler
from .reconnect import Backoff, StatusChange, StatusLog, check_port, connect_with_backoff
from .shown import shown_url
from .spec import DEFAULT_CHANNEL

# What a raw float32 vibration sample can plausibly be: finite, |x| at most PLAUSIBLE_MAX
# (g, m/s^2, even raw 24-bit ADC counts stay below it) and zero or at least PLAUSIBLE_MIN.
# Floats read from the wrong byte phase have random exponents: about half of them fall
# outside these bounds, so a slip shows within a few samples.
PLAUSIBLE_MAX = 1e7
PLAUSIBLE_MIN = 1e-30
SLIP_PROBE = 64        # samples after the first implausible one that decide: slip or not
SLIP_BAD = 0.25        # share of implausible samples in the probe that means a slip
PHASE_OK = 0.02        # share a candidate phase may have and still be taken
PHASE_SAMPLES = 256    # samples a candidate phase is scored on (at most)
SLIP_BACK = 4          # samples before the first implausible one dropped with the slip
SOCKET_TIMEOUT = 5.0   # seconds one TCP connection attempt may take


def implausible(samples: np.ndarray) -> np.ndarray:
    """True where a sample cannot be a reading (non-finite, absurdly large or tiny)."""
    with np.errstate(invalid="ignore", over="ignore"):
        magnitude = np.abs(samples)
        return ~(magnitude <= PLAUSIBLE_MAX) | ((magnitude < PLAUSIBLE_MIN) & (magnitude > 0))


def _own_non_finite(probe: np.ndarray, bad: np.ndarray) -> bool:
    """Are the implausible samples of ``probe`` nearly all NaN or Inf? A byte slip makes
    a NaN of 1 sample in 256 (exponent bits all set); a sensor that reports "no reading"
    sends them one after another."""
    with np.errstate(invalid="ignore"):
        return float((~np.isfinite(probe[bad])).mean()) >= 0.9 if bad.any() else False


def _bad_share(data: bytes, dtype: str = "<f4") -> float:
    """Share of implausible samples among the first PHASE_SAMPLES floats of ``data``."""
    count = min(len(data) // 4, PHASE_SAMPLES)
    if count == 0:
        return 1.0
    return float(implausible(np.frombuffer(data, dtype=dtype, count=count)).mean())


@dataclass
class Chunk:
    samples: np.ndarray     # float64 at the model's sample rate
    gap: bool = False       # samples were lost or delayed just before this chunk
    #                         (reconnected, re-aligned or resumed after a stall)


@dataclass
class SampleStats:
    samples: int = 0        # samples delivered (after resampling)
    chunks: int = 0
    bad_chunks: int = 0     # unreadable pieces skipped (e.g. a partial float at the end)
    disconnects: int = 0
    reconnects: int = 0
    realigned: int = 0      # byte slips re-aligned on a raw float32 stream
    slipped_bytes: int = 0  # bytes skipped to re-align


class SampleSource:
    """``read(timeout)`` -> Chunk, or None when nothing arrived in time; ``exhausted`` at
    the end of a finite source; ``close()``."""

    name: str = ""
    live: bool = False

    def __init__(self, sample_rate: float):
        self.sample_rate = float(sample_rate)
        self.stats = SampleStats()
        self.exhausted = False
        self._status = StatusLog()

    def poll_status(self) -> list[StatusChange]:
        """State changes since the last call (stalled / disconnected start or end,
        realigned), in order; the run loop logs each as a fault event."""
        return self._status.poll()

    def end_faults(self, detail: str) -> None:
        """End the faults still active (the run ends); ``poll_status`` then has them."""
        self._status.end_all(detail)

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


_log = logging.getLogger("edgecnn.deploy")
RATE_CHECK_S = 20.0     # seconds of arrival before the rate is judged
RATE_TOLERANCE = 1.3    # arrival within this factor of the stated rate passes


def note_rate(name: str, source_rate: float, model_rate: float) -> None:
    """Say what resampling a source to the model's rate costs, as training and eval do
    (a rate too far off to resample is refused first, without a note about it)."""
    from .preprocess import resample_ratio

    resample_ratio(source_rate, model_rate)
    if source_rate > model_rate * (1 + 1e-6):
        _log.warning("NOTE: %s at %g Hz is resampled to the model's %g Hz: everything above "
                     "%g Hz is dropped", name, source_rate, model_rate, model_rate / 2)
    elif source_rate < model_rate * (1 - 1e-6):
        _log.warning("NOTE: %s at %g Hz is resampled up to the model's %g Hz: the model's "
                     "band above %g Hz stays empty", name, source_rate, model_rate,
                     source_rate / 2)


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
        note_rate(self.name, recording.sample_rate, sample_rate)
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
    """Raw little-endian float32 samples from a byte stream: decoding with re-alignment
    after a byte slip, stall detection, chunks marked where samples are missing."""

    live = True

    def __init__(self, sample_rate: float, stream_rate: float | None,
                 stall_seconds: float = Backoff().stall_seconds):
        super().__init__(sample_rate)
        self.stream_rate = float(stream_rate or sample_rate)
        note_rate("the stream", self.stream_rate, sample_rate)
        self._resampler = StreamResampler(self.stream_rate, sample_rate)
        self._pending = b""
        self._ready: deque = deque()   # (samples, gap) decoded but not handed out yet
        self._gap = False              # the next piece follows lost / delayed samples
        self._stall_seconds = stall_seconds
        self._last_data = time.monotonic()
        self._rate_since: float | None = None   # arrival-rate watch (``_watch_rate``)
        self._order: str | None = None   # "<f4" / ">f4", from the first samples (_decode)
        self._rate_samples = 0
        self._rate_noted = False

    def _deliver(self, samples: np.ndarray, gap: bool = False) -> Chunk:
        self._watch_rate(len(samples), gap)
        return super()._deliver(samples, gap)

    def _watch_rate(self, count: int, gap: bool, now: float | None = None) -> None:
        """Say once when samples arrive at a rate far from the one the stream is taken to
        run at (``--sample-rate``, else the model's): a 25.6 kHz sensor read as 12 kHz is
        classified as garbage without any fault. Measured over RATE_CHECK_S of arrival
        without a gap (a stall or a reconnect starts it again)."""
        now = time.monotonic() if now is None else now
        if gap or self._rate_since is None:
            self._rate_since, self._rate_samples = now, 0   # counted from this piece on
            return
        self._rate_samples += count
        span = now - self._rate_since
        if self._rate_noted or span < RATE_CHECK_S:
            return
        ratio = self._rate_samples / span / self.sample_rate
        if 1 / RATE_TOLERANCE <= ratio <= RATE_TOLERANCE:
            return
        self._rate_noted = True
        _log.warning("note: %s: samples arrive at about %.0f per second, but the stream is "
                     "read as %g Hz (--sample-rate, else the model's): a sensor at another "
                     "rate is misread (give its --sample-rate); a replay faster or slower "
                     "than real time is fine", self.name, ratio * self.stream_rate,
                     self.stream_rate)

    def _decide_order(self, data: bytes) -> None:
        """Little-endian float32, as documented, unless the first samples are no readings
        that way and are read big-endian (network byte order, as many DAQs and PLCs send):
        then big-endian, said once. A byte slip search would otherwise take a big-endian
        stream for a slip and classify what a 1-byte shift happens to read."""
        self._order = "<f4"
        if _bad_share(data) >= SLIP_BAD and _bad_share(data, ">f4") <= PHASE_OK:
            self._order = ">f4"
            _log.warning("note: %s sends big-endian float32 (network byte order): read so; "
                         "the documented stream is little-endian float32", self.name)

    def _decode(self, data: bytes) -> None:
        """Queue the samples in ``data`` (after what was pending) as pieces for ``read``."""
        data = self._pending + data
        if self._order is None:
            if len(data) < PHASE_SAMPLES * 4:   # the byte order needs a few samples
                self._pending = data
                return
            self._decide_order(data)
        order = self._order
        while True:
            usable = len(data) - len(data) % 4
            raw = np.frombuffer(data, dtype=order, count=usable // 4)
            bad = implausible(raw)
            if not bad.any():
                self._queue(raw)
                self._pending = data[usable:]
                return
            first = int(np.argmax(bad))
            if len(raw) - first < SLIP_PROBE:    # too few samples yet to tell
                self._queue(raw[:first])
                self._pending = data[first * 4:]
                return
            probe = raw[first:first + SLIP_PROBE]
            if bad[first:first + SLIP_PROBE].mean() < SLIP_BAD or \
                    _own_non_finite(probe, bad[first:first + SLIP_PROBE]):
                # a few bad samples, or the sensor's own NaN/Inf readings (a slip reads as
                # huge and tiny numbers, seldom as NaN): not a slip; delivered, the window
                # checks report them as nonfinite
                self._queue(raw[:first + SLIP_PROBE])
                data = data[(first + SLIP_PROBE) * 4:]
                continue
            # the slip happened at or before sample ``first``: whole samples in the new
            # phase start from there on; the few old-phase samples just before it may be
            # misread already and are dropped with the slip
            tail = data[first * 4:]
            shift, share = min(((k, _bad_share(tail[k:], order)) for k in (1, 2, 3)),
                               key=lambda item: item[1])
            if share > PHASE_OK:     # no phase gives readings: passed on as it is
                self._queue(raw)
                self._pending = data[usable:]
                return
            self._queue(raw[:max(0, first - SLIP_BACK)])
            self.stats.realigned += 1
            self.stats.slipped_bytes += shift
            self._status.once("realigned", f"byte slip: skipped {shift} byte(s) to read "
                                           "whole float32 samples again")
            self._mark_gap()
            data = tail[shift:]

    def _queue(self, raw: np.ndarray) -> None:
        """Resampled here, by the filter of the stretch it belongs to: a slip found later
        in the same data starts a new one (``_mark_gap``) only for what follows it."""
        if len(raw):
            with np.errstate(invalid="ignore"):  # garbage bytes hold signalling NaNs
                samples = self._resampler(raw.astype(np.float64))
            if len(samples):
                self._ready.append((samples, self._gap))
                self._gap = False

    def _mark_gap(self) -> None:
        """Samples are missing here: no filter state or window spans the break."""
        self._resampler = StreamResampler(self.stream_rate, self.sample_rate)
        self._gap = True

    def _next_chunk(self) -> Chunk | None:
        """The next decoded piece, resampled, as a Chunk (None: nothing ready)."""
        while self._ready:
            samples, gap = self._ready.popleft()
            if len(samples):
                return self._deliver(samples, gap)
        return None

    def _received(self, data: bytes) -> Chunk | None:
        self._last_data = time.monotonic()
        if self._status.active("stalled"):
            self._status.end("stalled", "samples again")
            self._mark_gap()
        self._decode(data)
        return self._next_chunk()

    def _silent(self) -> None:
        """No data this time: a connected stream silent for ``stall_seconds`` stalls."""
        if not self._status.active("stalled"):
            silent = time.monotonic() - self._last_data
            if silent >= self._stall_seconds:
                self._status.start("stalled", f"connected, no samples for {silent:.1f} s")

    def _finish(self, deliver: bool = True) -> None:
        """The stream ended: whole samples still held back (for the byte order or a slip
        check) are delivered as read (``deliver``), and only a partial float is counted
        as an unreadable piece."""
        pending, self._pending = self._pending, b""
        whole = len(pending) - len(pending) % 4
        if whole and deliver:
            self._queue(np.frombuffer(pending, dtype=self._order or "<f4", count=whole // 4))
        if len(pending) % 4:
            self.stats.bad_chunks += 1   # a partial float at the very end


class StdinSource(_RawFloatStream):
    """Raw float32 samples on a pipe (``-``): ``sensor | edgecnn run vibration B --source -``."""

    def __init__(self, sample_rate: float, stream_rate: float | None = None, fd: int = 0,
                 block: int = 1 << 16, stall_seconds: float = Backoff().stall_seconds):
        super().__init__(sample_rate, stream_rate, stall_seconds)
        self.name = "stdin"
        self._fd = fd
        self._block = block

    def read(self, timeout: float = 0.5) -> Chunk | None:
        if self._ready:
            return self._next_chunk()
        if self.exhausted:
            return None
        ready, _, _ = select.select([self._fd], [], [], timeout)
        if not ready:
            self._silent()
            return None
        try:
            data = os.read(self._fd, self._block)
        except OSError as exc:
            raise SourceError(f"cannot read samples from stdin: {exc.strerror}") from None
        if not data:
            self._finish()
            chunk = self._next_chunk()   # what was held back, then the end
            if chunk is None:
                self.exhausted = True
            return chunk
        return self._received(data)


class TcpSampleSource(_RawFloatStream):
    """Raw float32 samples from ``tcp://host:port``: waited for up to
    ``backoff.connect_timeout`` seconds, reconnected with backoff after a drop."""

    def __init__(self, url: str, sample_rate: float, stream_rate: float | None = None,
                 backoff: Backoff = Backoff(), stop=None):
        super().__init__(sample_rate, stream_rate, backoff.stall_seconds)
        self.name = shown_url(url)
        rest = url[len("tcp://"):]
        host, _, port = rest.rpartition(":")
        if not host or not port.isdigit():
            raise InputError(f"expected tcp://host:port; found {url!r}")
        check_port(url)
        self._address = (host.strip("[]"), int(port))
        self._backoff = backoff
        self._sock = connect_with_backoff(self._connect_once, backoff, stop)
        self._last_data = time.monotonic()
        self._retry_at = 0.0
        self._delays = None
        self._connecting: tuple[socket.socket, float] | None = None   # a reconnect under way

    def _connect_once(self) -> socket.socket:
        host, port = self._address
        try:
            sock = socket.create_connection(self._address, timeout=SOCKET_TIMEOUT)
        except socket.gaierror:
            why = f"host {host!r} not found"
        except ConnectionRefusedError:
            why = "connection refused"
        except (socket.timeout, TimeoutError):
            why = f"no answer (timed out after {SOCKET_TIMEOUT:g} s)"
        except OSError as exc:
            why = exc.strerror or str(exc)
        else:
            sock.setblocking(False)
            return sock
        raise SourceError(f"cannot connect to sample stream {self.name}: {why}")

    def read(self, timeout: float = 0.5) -> Chunk | None:
        if self._ready:
            return self._next_chunk()
        if self._sock is None:
            return self._reconnect(timeout)
        ready, _, _ = select.select([self._sock], [], [], timeout)
        if not ready:
            self._silent()
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
        return self._received(data)

    def _drop(self) -> None:
        self._sock.close()
        self._sock = None
        self._finish(deliver=False)
        self._ready.clear()
        self._mark_gap()
        self.stats.disconnects += 1
        self._status.end("stalled", "disconnected")
        self._status.start("disconnected", "the sensor closed the connection")
        self._delays = self._backoff.delays()
        self._retry_at = time.monotonic() + next(self._delays)

    def _reconnect(self, timeout: float) -> None:
        """One step of getting the connection back, never blocking longer than
        ``timeout``: the connect runs non-blocking across reads, so a sensor host that
        does not answer (powered off, its packets dropped) holds up no other source of
        the run while it is tried for up to SOCKET_TIMEOUT."""
        if self._connecting is None:
            wait = self._retry_at - time.monotonic()
            if wait > 0:
                time.sleep(min(wait, timeout))
                return None
            self._connecting = self._start_connect()
            if self._connecting is None:
                self._retry_at = time.monotonic() + next(self._delays)
            return None
        sock, began = self._connecting
        left = began + SOCKET_TIMEOUT - time.monotonic()
        _, writable, _ = select.select([], [sock], [], max(0.0, min(timeout, left)))
        if not writable:
            if left <= 0:
                self._give_up_connect()
            return None
        if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):   # refused, unreachable
            self._give_up_connect()
            return None
        self._connecting = None
        self._sock = sock
        self._last_data = time.monotonic()
        self.stats.reconnects += 1
        self._status.end("disconnected", "reconnected")
        return None

    def _start_connect(self):
        """(socket, started) with a non-blocking connect under way, or None."""
        try:
            family, kind, proto, _, address = socket.getaddrinfo(
                *self._address, type=socket.SOCK_STREAM)[0]
            sock = socket.socket(family, kind, proto)
        except OSError:
            return None
        sock.setblocking(False)
        error = sock.connect_ex(address)
        if error not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN):
            sock.close()
            return None
        return sock, time.monotonic()

    def _give_up_connect(self) -> None:
        sock, _ = self._connecting
        sock.close()
        self._connecting = None
        self._retry_at = time.monotonic() + next(self._delays)

    def close(self) -> None:
        if self._connecting is not None:
            self._connecting[0].close()
            self._connecting = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def open_sample_source(src, sample_rate: float, channel: str = DEFAULT_CHANNEL,
                       stream_rate: float | None = None, realtime: bool = False,
                       backoff: Backoff = Backoff(), stop=None,
                       given_channel: str | None = None) -> SampleSource:
    """A SampleSource for a recording path, ``-`` (stdin) or ``tcp://host:port`` (waited
    for up to ``backoff.connect_timeout`` s; ``stop``, Event-like, ends the wait).
    ``given_channel``: a --channel the user gave (refused for streams: they carry one)."""
    text = str(src).strip()
    if (text == "-" or text.lower().startswith("tcp://")) and given_channel is not None:
        raise InputError(f"--channel {given_channel} for --source {text}: a stream is one "
                         "channel of float32 samples (interleaved channels are not "
                         "split); send the one channel, or record to a file")
    if text == "-":
        return StdinSource(sample_rate, stream_rate, stall_seconds=backoff.stall_seconds)
    if text.lower().startswith("tcp://"):
        return TcpSampleSource(text, sample_rate, stream_rate, backoff, stop=stop)
    scheme = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", text)
    if scheme:
        raise InputError(f"--source {text}: {scheme.group(1)}:// streams are not read; "
                         "expected a recording file, '-' (float32 on stdin) or "
                         "tcp://host:port")
    return RecordingSource(text, sample_rate, channel=channel, file_rate=stream_rate,
                           realtime=realtime)
