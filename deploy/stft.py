"""Streaming spectrogram: samples in, one model-ready spectrogram per window out.

Every window equals ``preprocess.magnitude_spectrogram`` of the same samples (that is,
``scipy.signal.spectrogram`` with the InputSpec's parameters) -- the same per-segment
operations in the same order: detrend, multiply by the window, ``rfft``, scale, magnitude
or PSD. Consecutive windows share segments when the hop between windows is a multiple of
the segment step (nperseg - noverlap); their columns are then reused, not recomputed, so
a small hop costs one FFT per new segment, not a whole spectrogram.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import fft as sp_fft
from scipy import signal as sps

from .errors import InputError
from .preprocess import apply_transform
from .spec import InputSpec, SignalSpec, spec_section

MAX_HOP_WINDOWS = 100   # a hop of more windows than this skips >99 % of the signal


def default_hop(spec: SignalSpec | InputSpec) -> int:
    """Half a window, rounded down to a multiple of the segment step (so columns are reused)."""
    spec = spec_section(spec, "signal")
    return max(spec.hop, (spec.window_length // 2) // spec.hop * spec.hop)


@dataclass
class SpectrogramWindow:
    """One finished window. ``samples`` and ``sxx`` are views into the streamer's buffers,
    valid until the next window is produced; copy them to keep them."""


    index: int          # window number since the stream started
    start: int          # absolute index of the window's first sample
    samples: np.ndarray  # (window_length,) float64
    sxx: np.ndarray      # (freq, time) float64, before the magnitude transform
    values: np.ndarray   # (freq, time) float64 after transform and normalisation: the
    #                      model tensor is ``values.astype(float32)[..., None]``


class StreamingSpectrogram:
    """Ring buffer of samples + incremental STFT for windows ``hop`` samples apart.

    When ``hop`` is a multiple of the segment step (and at most a window's worth of
    segments), every segment belongs to some window: segment columns are computed once,
    in batches as samples arrive, and each window is a view of ``frames`` consecutive
    columns. Otherwise each window's segments are computed when it completes.
    """

    def __init__(self, spec: SignalSpec | InputSpec, hop: int | None = None,
                 capacity: int | None = None):
        self.spec = spec = spec_section(spec, "signal")
        hop = default_hop(spec) if hop is None else hop
        if isinstance(hop, bool) or not isinstance(hop, (int, np.integer)) or hop < 1:
            raise InputError(f"hop must be a whole number of samples >= 1; found {hop!r}")
        if hop > MAX_HOP_WINDOWS * spec.window_length:
            raise InputError(f"--hop {hop} is more than {MAX_HOP_WINDOWS} windows of "
                             f"{spec.window_length} samples: the run would skip nearly all "
                             f"of the signal (and hold the hop in memory); give at most "
                             f"{MAX_HOP_WINDOWS * spec.window_length}")
        self.hop = int(hop)
        self.length = spec.window_length
        self.nperseg = spec.nperseg
        self.step = spec.hop
        self.freqs, self.frames, _ = spec.shape
        self.shift = self.hop // self.step
        self.reuse = self.hop % self.step == 0 and self.shift <= self.frames
        win = sps.get_window(spec.window, spec.nperseg)   # SignalSpec keeps it a str/tuple
        self._win = np.asarray(win, dtype=np.float64)
        if spec.scaling == "density":
            scale = 1.0 / (spec.sample_rate * (self._win * self._win).sum())
        else:
            scale = 1.0 / self._win.sum() ** 2
        self._scale = np.sqrt(scale) if spec.mode == "magnitude" else scale
        cap = capacity or max(4 * self.length, self.length + 2 * self.hop)
        self._buf = np.zeros(max(cap, self.length + 1), dtype=np.float64)
        # Reuse path: one row per segment (rows are what rfft produces), windows are views.
        self._cols = np.zeros((self.frames + len(self._buf) // self.step + 2, self.freqs))
        self._vals = np.zeros_like(self._cols)   # the same columns, transformed+normalised
        self._sxx = np.zeros((self.freqs, self.frames))
        self._sxx_vals = np.zeros((self.freqs, self.frames))
        self.segments_computed = 0
        self.windows_emitted = 0
        self._base = 0
        self.reset(0)

    def reset(self, position: int | None = None) -> None:
        """Forget buffered samples (after a gap); the next window starts at the next sample.

        ``position`` is the absolute index the next pushed sample will have (default: the
        count of samples pushed so far, i.e. no samples were lost).
        """
        if position is None:
            position = self._base + self._fill
        self._base = int(position)   # absolute index of self._buf[0]
        self._fill = 0
        self._origin = int(position)  # absolute index of segment 0 / window 0 since reset
        self._next_start = int(position)
        self._seg_base = 0            # segment index of self._cols[0]
        self._seg_done = 0            # segments computed since reset

    @property
    def samples_pushed(self) -> int:
        """Absolute index of the next sample (buffer end)."""
        return self._base + self._fill

    def push(self, samples: np.ndarray):
        """Append samples; yield every window they complete (in order)."""
        samples = np.asarray(samples, dtype=np.float64).ravel()
        pos = 0
        while pos < len(samples):
            self._make_room()
            take = min(len(samples) - pos, len(self._buf) - self._fill)
            self._buf[self._fill:self._fill + take] = samples[pos:pos + take]
            self._fill += take
            pos += take
            if self.reuse:
                with np.errstate(invalid="ignore", over="ignore"):   # NaN/Inf input: the
                    self._compute_segments()   # window checks report it, no warnings
            yield from self._windows()

    def _make_room(self) -> None:
        if self._fill < len(self._buf):
            return
        keep_from = max(0, min(self._next_start - self._base, self._fill))
        kept = self._fill - keep_from
        self._buf[:kept] = self._buf[keep_from:self._fill]
        self._base += keep_from
        self._fill = kept
        if self.reuse:
            first = (self._next_start - self._origin) // self.step - self._seg_base
            done = self._seg_done - self._seg_base
            if first > 0:
                self._cols[:done - first] = self._cols[first:done]
                self._vals[:done - first] = self._vals[first:done]
                self._seg_base += first

    def _compute_segments(self) -> None:
        end = self._base + self._fill
        available = (end - self._origin - self.nperseg) // self.step + 1
        if available <= self._seg_done:
            return
        start = self._origin + self._seg_done * self.step - self._base
        count = available - self._seg_done
        segs = _segments(self._buf[start:], count, self.nperseg, self.step)
        row = self._seg_done - self._seg_base
        self._cols[row:row + count] = self._columns(segs)
        values = self._vals[row:row + count]
        values[...] = self._cols[row:row + count]
        normalise(values, self.spec)
        self._seg_done = available
        self.segments_computed += count

    def _windows(self):
        while self._next_start + self.length <= self._base + self._fill:
            offset = self._next_start - self._base
            window = self._buf[offset:offset + self.length]
            if self.reuse:
                row = (self._next_start - self._origin) // self.step - self._seg_base
                sxx = self._cols[row:row + self.frames].T
                values = self._vals[row:row + self.frames].T
            else:
                segs = _segments(window, self.frames, self.nperseg, self.step)
                with np.errstate(invalid="ignore", over="ignore"):
                    self._sxx[...] = self._columns(segs).T
                    sxx, values = self._sxx, self._sxx_vals
                    values[...] = sxx
                    normalise(values, self.spec)
                self.segments_computed += self.frames
            index = self.windows_emitted
            self.windows_emitted += 1
            yield SpectrogramWindow(index, self._next_start, window, sxx, values)
            self._next_start += self.hop

    def _columns(self, segs: np.ndarray) -> np.ndarray:
        """(n, nperseg) segments -> (n, freq) columns, as scipy's _spectral_helper does."""
        if self.spec.detrend == "constant":
            segs = segs - np.mean(segs, -1, keepdims=True)
        elif self.spec.detrend == "linear":
            segs = sps.detrend(segs, type="linear", axis=-1)
        result = sp_fft.rfft(self._win * segs, n=self.nperseg)
        if self.spec.mode == "magnitude":
            result *= self._scale
            return np.abs(result)
        result = np.conjugate(result) * result
        result *= self._scale
        result = result.real
        if self.nperseg % 2:
            result[..., 1:] *= 2
        else:
            result[..., 1:-1] *= 2
        return result


def _segments(x: np.ndarray, count: int, nperseg: int, step: int) -> np.ndarray:
    """Read-only (count, nperseg) view of segments ``step`` apart (what scipy's
    sliding_window_view(...)[::step] gives, without its per-call checks)."""
    if len(x) < (count - 1) * step + nperseg:
        raise ValueError("not enough samples for the requested segments")
    stride = x.strides[0]
    return np.lib.stride_tricks.as_strided(x, (count, nperseg), (stride * step, stride),
                                           writeable=False)


def normalise(values: np.ndarray, spec: SignalSpec) -> np.ndarray:
    """In place: ``preprocess.spectrogram_to_tensor`` before its float32 cast -- the same
    float64 operations in the same order (transform, minus mean, divided by std), so the
    results are identical element by element."""
    apply_transform(values, spec, out=values)
    values -= spec.mean
    values /= spec.std
    return values


class TensorWriter:
    """``spectrogram_to_tensor`` of any (F, T) spectrogram into a preallocated
    (F, T, 1) float32 buffer (streamed windows already carry ``values``)."""

    def __init__(self, spec: SignalSpec | InputSpec):
        self.spec = spec_section(spec, "signal")
        freqs, frames, _ = self.spec.shape
        self._scratch = np.zeros((freqs, frames), dtype=np.float64)

    def write(self, sxx: np.ndarray, out: np.ndarray) -> np.ndarray:
        self._scratch[...] = sxx
        out[..., 0] = normalise(self._scratch, self.spec)
        return out
