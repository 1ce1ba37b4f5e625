"""Every transform from raw input to model tensor, implemented once.

Training, export (calibration, parity) and the line-side runtime all call these functions
with the model's InputSpec, so what a model saw in training is exactly what it sees on the
line. The one other path is the runtime's streaming spectrogram (``stft.py``), which
computes the same numbers incrementally and is tested equal to ``magnitude_spectrogram``.
Only numpy, scipy and OpenCV are used here; SciPy is imported by the signal
functions only, so a camera process does not load it.
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from fractions import Fraction

import cv2
import numpy as np

from .errors import InputError
from .spec import BIT_DEPTHS, ImageSpec, InputSpec, SignalSpec, spec_section

# Image files the loaders and the sample-video maker read (OpenCV decodes them).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm")

_INTERPOLATION = {
    "area": cv2.INTER_AREA,
    "linear": cv2.INTER_LINEAR,
    "nearest": cv2.INTER_NEAREST,
    "cubic": cv2.INTER_CUBIC,
}


# --------------------------------------------------------------------------- images

def to_color(image: np.ndarray, color: str) -> np.ndarray:
    """Convert a decoded uint8 image (gray HxW / HxWx1, BGR HxWx3, BGRA HxWx4) to ``color``."""
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        if color == "gray":
            return image
        code = cv2.COLOR_GRAY2RGB if color == "rgb" else cv2.COLOR_GRAY2BGR
        return cv2.cvtColor(image, code)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise InputError(f"expected an image of shape HxW, HxWx3 or HxWx4; found {image.shape}")
    if image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if color == "gray":
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    if color == "rgb":
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return image


def preprocess_image(image: np.ndarray, spec: ImageSpec | InputSpec,
                     out: np.ndarray | None = None) -> np.ndarray:
    """Decoded uint8 image (any size, gray or BGR) -> float32 H x W x C tensor.

    ``out`` (float32, the spec's shape) is filled in place when given, so a camera loop can
    reuse one buffer per frame.
    """
    spec = spec_section(spec, "image")
    if image.size == 0:
        raise InputError("expected a non-empty image; found an empty array")
    if image.dtype != np.uint8:
        raise InputError(f"expected a uint8 image; found dtype {image.dtype}")
    pixels = fit_image(to_color(image, spec.color), spec)
    return scale_pixels(pixels.reshape(spec.shape), spec, out)


def scale_pixels(pixels: np.ndarray, spec: ImageSpec, out: np.ndarray | None = None
                 ) -> np.ndarray:
    """uint8 pixels at the model's size (H x W x C, or any view of such, e.g. a grid of
    tiles) -> float32 ``out`` of the same shape: x * scale, then (x - mean) / std."""
    if out is None:
        out = np.empty(pixels.shape, dtype=np.float32)
    np.multiply(pixels, np.float32(spec.scale), out=out, casting="unsafe")
    if spec.mean != (0.0,) or spec.std != (1.0,):
        out -= np.asarray(spec.mean, dtype=np.float32)
        out /= np.asarray(spec.std, dtype=np.float32)
    return out


def plain_resize(shape: tuple[int, ...], spec: ImageSpec) -> bool:
    """Whether ``fit_image`` brings pixels of ``shape`` to the spec's size by one plain
    resize (or none): the stretch policy, or the frame already has the model's aspect."""
    height, width = shape[:2]
    return spec.fit == "stretch" or height * spec.width == width * spec.height


def fit_image(pixels: np.ndarray, spec: ImageSpec, dst: np.ndarray | None = None
              ) -> np.ndarray:
    """Bring a uint8 image to the spec's H x W by its ``fit`` policy (see IMAGE_FITS); an
    image of that size is returned as it is. ``dst``: a buffer for a plain resize, reused
    by a camera from frame to frame (a new array is made where it does not fit)."""
    height, width = pixels.shape[:2]
    if height == spec.height and width == spec.width:
        return pixels
    interpolation = _INTERPOLATION[spec.interpolation]
    if plain_resize(pixels.shape, spec):
        return cv2.resize(pixels, (spec.width, spec.height), dst=dst,
                          interpolation=interpolation)
    pick = min if spec.fit == "letterbox" else max
    scale = pick(spec.height / height, spec.width / width)
    new_h = min(spec.height, max(1, round(height * scale))) if spec.fit == "letterbox" \
        else max(spec.height, round(height * scale))
    new_w = min(spec.width, max(1, round(width * scale))) if spec.fit == "letterbox" \
        else max(spec.width, round(width * scale))
    scaled = cv2.resize(pixels, (new_w, new_h), interpolation=interpolation)
    if spec.fit == "crop":
        top, left = (new_h - spec.height) // 2, (new_w - spec.width) // 2
        return scaled[top:top + spec.height, left:left + spec.width]
    top, left = (spec.height - new_h) // 2, (spec.width - new_w) // 2
    fill = [float(v) for v in np.atleast_1d(cv2.mean(scaled)[:1 if scaled.ndim == 2 else 3])]
    return cv2.copyMakeBorder(scaled, top, spec.height - new_h - top, left,
                              spec.width - new_w - left, cv2.BORDER_CONSTANT,
                              value=fill + [0.0] * (4 - len(fill)))


def preprocess_images(images, spec: ImageSpec | InputSpec) -> np.ndarray:
    """A sequence of decoded images -> float32 N x H x W x C batch."""
    spec = spec_section(spec, "image")
    batch = np.empty((len(images), *spec.shape), dtype=np.float32)
    for i, image in enumerate(images):
        preprocess_image(image, spec, out=batch[i])
    return batch


_QUIET_LOCK = threading.Lock()
_quiet_levels: list[int] = []          # the levels of the threads inside quiet_opencv
_loud_level: list[int] = []            # OpenCV's level before the first of them


@contextmanager
def quiet_opencv(level: str):
    """OpenCV's own log lines below ``level`` ("ERROR", "FATAL") held back while a file or
    capture is opened: "backend is generally available but can't be used" after a failed
    open, "imdecode_ ... can't read" for a corrupt image. Our own error message gives the
    reason. Unless OPENCV_LOG_LEVEL is set (the user asked for OpenCV's words).

    The level is process-wide: threads inside at once share the quietest of their levels,
    and the last one out restores the level from before the first came in."""
    if "OPENCV_LOG_LEVEL" in os.environ:
        yield
        return
    logging = cv2.utils.logging
    wanted = getattr(logging, f"LOG_LEVEL_{level}")
    with _QUIET_LOCK:
        if not _quiet_levels:
            _loud_level[:] = [logging.getLogLevel()]
        _quiet_levels.append(wanted)
        logging.setLogLevel(min(_quiet_levels))
    try:
        yield
    finally:
        with _QUIET_LOCK:
            _quiet_levels.remove(wanted)
            logging.setLogLevel(min(_quiet_levels) if _quiet_levels else _loud_level[0])


def decode_image(path, color: str = "bgr") -> np.ndarray:
    """Decode an image file (any path, spaces and non-ASCII included) in ``color`` at its
    stored depth: uint8, or uint16 for 16-bit PNG/TIFF (``to_8bit`` brings those down).

    Raises InputError for a file that is missing, empty or not a decodable image.
    """
    try:
        raw = np.fromfile(str(path), dtype=np.uint8)
    except OSError as exc:
        raise InputError(f"cannot read image {path}: {exc.strerror or exc}") from None
    if raw.size == 0:
        raise InputError(f"image file {path} is empty")
    flag = cv2.IMREAD_GRAYSCALE if color == "gray" else cv2.IMREAD_COLOR
    try:
        with quiet_opencv("FATAL"):
            image = cv2.imdecode(raw, flag | cv2.IMREAD_ANYDEPTH)
    except cv2.error as exc:   # e.g. a 50000x50000 header: beyond OpenCV's pixel limit
        detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else "decoder error"
        raise InputError(f"{path} cannot be decoded: {detail[:160]}") from None
    if image is not None and image.dtype not in (np.uint8, np.uint16):
        raise InputError(f"{path} holds {image.dtype.itemsize * 8}-bit "
                         f"{'floating-point' if image.dtype.kind == 'f' else 'integer'} "
                         "samples: expected an 8- or 16-bit image")
    if image is None:
        raise InputError(f"{path} is not a decodable image (expected JPEG, PNG, BMP, TIFF, WebP "
                         "or PGM/PPM)")
    return to_color(image, color) if color == "rgb" else image


def to_8bit(image: np.ndarray, bit_depth: int | None = None) -> np.ndarray:
    """A uint16 image holding ``bit_depth`` bits of data -> uint8, x * 255 / (2**bit_depth
    - 1), rounded; values beyond that range saturate at 255. A uint8 image is returned as is.

    A 12-bit camera's file scaled this way matches the same camera's 8-bit (Mono8) frames;
    OpenCV's own reading divides by 257 whatever the depth, which leaves a 12-bit picture
    16 times too dark with 16 grey levels. None: the image's own (``bit_depth_for`` its
    largest value); a set read together should share one (``edgecnn.data.images``).
    """
    if image.dtype == np.uint8:
        return image
    if bit_depth is None:
        bit_depth = bit_depth_for(int(image.max()))
    return cv2.convertScaleAbs(image, alpha=255.0 / float((1 << bit_depth) - 1))


def bit_depth_for(max_value: int) -> int:
    """The smallest of BIT_DEPTHS whose range holds ``max_value``."""
    return next(bits for bits in BIT_DEPTHS if max_value < (1 << bits))


def read_image(path, color: str = "bgr", bit_depth: int | None = None) -> np.ndarray:
    """Decode an image file to uint8 in ``color``; a 16-bit file is taken to hold
    ``bit_depth`` bits of data (the model's ImageSpec.bit_depth; None: its own, see
    ``to_8bit``).

    Raises InputError for a file that is missing, empty or not a decodable image.
    """
    return to_8bit(decode_image(path, color), bit_depth)


# --------------------------------------------------------------------------- signals

# Resampling beyond this factor either way is refused: one rig's rates lie within it
# (CWRU: 12 and 48 kHz); a rate 1000x off was typed in kHz, and 2000-fold upsampling
# would turn 16 samples into a window of nothing.
MAX_RESAMPLE = 16


def resample_ratio(rate_from: float, rate_to: float) -> tuple[int, int]:
    """(up, down): the exact rational ratio between two sample rates (denominator <= 1000)."""
    if rate_from <= 0 or rate_to <= 0:
        raise InputError(f"sample rates must be positive; found {rate_from} -> {rate_to}")
    factor = max(rate_from, rate_to) / min(rate_from, rate_to)
    if factor > MAX_RESAMPLE:
        raise InputError(f"a sample rate of {rate_from:g} Hz is {factor:.0f}x "
                         f"{'below' if rate_from < rate_to else 'above'} the model's "
                         f"{rate_to:g} Hz: expected rates within {MAX_RESAMPLE}x of it; is "
                         "one given in kHz? Rates are in Hz")
    ratio = Fraction(rate_to / rate_from).limit_denominator(1000)
    return ratio.numerator, ratio.denominator


def resample(samples: np.ndarray, rate_from: float, rate_to: float) -> np.ndarray:
    """Polyphase resampling of a 1-D signal between sample rates (exact rational ratio)."""
    up, down = resample_ratio(rate_from, rate_to)
    samples = np.asarray(samples, dtype=np.float64)
    if up == down:
        return samples
    from scipy import signal as sps

    return sps.resample_poly(samples, up, down)


class StreamResampler:
    """``resample_poly`` for a stream: the same polyphase filter, applied chunk by chunk.

    The output equals ``resample`` of the whole signal delayed by ``delay``
    output samples (the filter is causal here), so chunk boundaries leave no seams.
    """

    def __init__(self, rate_from: float, rate_to: float):
        self.up, self.down = resample_ratio(rate_from, rate_to)
        self.identity = self.up == self.down == 1
        self.delay = 0
        if self.identity:
            return
        max_rate = max(self.up, self.down)
        half_len = 10 * max_rate
        from scipy import signal as sps

        self._upfirdn = sps.upfirdn
        h = sps.firwin(2 * half_len + 1, 1.0 / max_rate, window=("kaiser", 5.0)) * self.up
        pre = self.down - half_len % self.down
        self.h = np.concatenate([np.zeros(pre), h])
        self.delay = (half_len + pre) // self.down
        self._hist = np.zeros(0)
        self._hist_start = 0   # input index of _hist[0], always a multiple of down
        self._received = 0
        self._next_out = 0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self.identity:
            return x
        self._hist = np.concatenate([self._hist, x])
        self._received += len(x)
        if self._received == 0:
            return np.zeros(0)
        last = ((self._received - 1) * self.up) // self.down
        if last < self._next_out:
            return np.zeros(0)
        y = self._upfirdn(self.h, self._hist, self.up, self.down)
        shift = self._hist_start * self.up // self.down
        out = y[self._next_out - shift:last + 1 - shift].copy()
        self._next_out = last + 1
        need = max(0, (self._next_out * self.down - len(self.h) + 1) // self.up)
        start = need // self.down * self.down
        if start > self._hist_start:
            self._hist = self._hist[start - self._hist_start:]
            self._hist_start = start
        return out


def window_starts(n_samples: int, length: int, stride: int) -> np.ndarray:
    """Start indices of every complete window of ``length`` samples, ``stride`` apart."""
    if stride <= 0:
        raise InputError(f"window stride must be positive; found {stride}")
    if n_samples < length:
        return np.zeros(0, dtype=np.int64)
    return np.arange(0, n_samples - length + 1, stride, dtype=np.int64)


def cut_windows(samples: np.ndarray, length: int, stride: int) -> np.ndarray:
    """1-D signal -> (N, length) array of windows (a view where possible)."""
    starts = window_starts(len(samples), length, stride)
    if len(starts) == 0:
        return np.zeros((0, length), dtype=np.asarray(samples).dtype)
    view = np.lib.stride_tricks.sliding_window_view(samples, length)
    return view[starts]


def magnitude_spectrogram(windows: np.ndarray, spec: SignalSpec | InputSpec) -> np.ndarray:
    """``scipy.signal.spectrogram`` of one window (L,) or many (N, L) with the spec's
    parameters, before the magnitude transform: (..., freq, time)."""
    spec = spec_section(spec, "signal")
    windows = np.asarray(windows, dtype=np.float64)
    if windows.shape[-1] != spec.window_length:
        raise InputError(f"expected windows of {spec.window_length} samples; "
                         f"found {windows.shape[-1]}")
    from scipy import signal as sps

    detrend = False if spec.detrend == "none" else spec.detrend
    _, _, sxx = sps.spectrogram(windows, fs=spec.sample_rate, window=spec.window,
                                nperseg=spec.nperseg, noverlap=spec.noverlap, detrend=detrend,
                                scaling=spec.scaling, mode=spec.mode, axis=-1)
    return sxx


def spectrogram_to_tensor(sxx: np.ndarray, spec: SignalSpec | InputSpec) -> np.ndarray:
    """Magnitude transform and normalisation: (..., F, T) -> float32 (..., F, T, 1)."""
    spec = spec_section(spec, "signal")
    values = apply_transform(sxx, spec)
    values = (values - spec.mean) / spec.std
    return values.astype(np.float32)[..., np.newaxis]


def apply_transform(sxx: np.ndarray, spec: SignalSpec,
                    out: np.ndarray | None = None) -> np.ndarray:
    """The spec's magnitude transform (log, log1p, dB or none) in float64; written into
    ``out`` when given (which may be ``sxx`` itself: the streaming spectrogram transforms
    its columns in place), else into a new array."""
    if out is None:
        out = np.array(sxx, dtype=np.float64)
    elif out is not sxx:
        out[...] = sxx
    if spec.transform == "log":
        out += spec.eps
        np.log(out, out=out)
    elif spec.transform == "log1p":
        np.log1p(out, out=out)
    elif spec.transform == "db":
        out += spec.eps
        np.log10(out, out=out)
        out *= 20.0 if spec.mode == "magnitude" else 10.0
    return out


def preprocess_windows(windows: np.ndarray, spec: SignalSpec | InputSpec) -> np.ndarray:
    """Windows of raw samples (L,) or (N, L) -> model tensors (F, T, 1) or (N, F, T, 1)."""
    return spectrogram_to_tensor(magnitude_spectrogram(windows, spec), spec)


def check_samples(samples: np.ndarray, clip_level: float | None = None) -> dict[str, int]:
    """Count samples that cannot be trusted: NaN, +/-Inf and (if given) clipped values."""
    samples = np.asarray(samples)
    finite = np.isfinite(samples)
    counts = {"nan": int(np.isnan(samples).sum()), "inf": int(np.isinf(samples).sum())}
    if clip_level is not None:
        counts["clipped"] = int((np.abs(samples[finite]) >= clip_level).sum())
    return counts
