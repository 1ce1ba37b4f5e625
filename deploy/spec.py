"""InputSpec: the preprocessing contract between raw input and model tensor.

It is born at training, written into the model directory and the bundle, and read back by
export and the runtime, so every stage applies exactly the same transforms (see
``edgecnn.deploy.preprocess``). It is frozen and round-trips through JSON unchanged.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from .errors import SpecError

SPEC_VERSION = 1

COLOR_MODES = ("gray", "bgr", "rgb")
INTERPOLATIONS = ("area", "linear", "nearest", "cubic")
# How an image of another aspect ratio meets the model's H x W: "stretch" resizes to H x W
# (the shape changes), "letterbox" scales it to fit inside and pads the rest with the image's
# mean grey (nothing lost, nothing distorted), "crop" scales it to cover and cuts the centre.
IMAGE_FITS = ("stretch", "letterbox", "crop")
# Bits of data a 16-bit image file can carry: a camera's Mono10/12/14/16 formats, and 8
# for 8-bit pictures saved 16 bits wide (see ImageSpec.bit_depth).
BIT_DEPTHS = (8, 10, 12, 14, 16)
MAGNITUDE_TRANSFORMS = ("none", "log", "log1p", "db")
STFT_SCALINGS = ("spectrum", "density")
STFT_MODES = ("magnitude", "psd")
# The CWRU drive-end accelerometer: the channel a recording is read from by default.
DEFAULT_CHANNEL = "DE"


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise SpecError(f"{name} must be one of {', '.join(allowed)}; found {value!r}")


def _real(value: Any) -> bool:
    """A finite int or float (not a bool; an int too large for a float is not)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _positive(name: str, value: Any) -> None:
    if not _real(value) or not value > 0:
        raise SpecError(f"{name} must be a positive number; found {_short(value)}")


def _finite(name: str, values) -> None:
    """Numbers a tensor is normalised with: NaN, inf or 1e30 turn every input into one class."""
    for value in values:
        if not _real(value) or abs(value) > 1e6:
            raise SpecError(f"{name} must be finite numbers of at most 1e6; found "
                            f"{_short(value)}")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


_PLAIN_WINDOWS = ("hann", "hamming", "blackman", "boxcar", "bartlett", "flattop")


def _check_window(window, nperseg: int) -> None:
    """The STFT window is one SciPy knows with sane parameters (checked here, where the
    spec is read, not at the first window of a run). The usual ones are known without
    importing SciPy, so the task table and ``edgecnn --help`` stay quick."""
    if window in _PLAIN_WINDOWS or (
            isinstance(window, tuple) and len(window) == 2 and window[0] == "tukey"
            and _real(window[1]) and 0 <= window[1] <= 1):
        return
    from scipy.signal import get_window

    try:
        get_window(window, nperseg)
    except (ValueError, TypeError, OverflowError) as exc:
        raise SpecError(f"window {_short(window)} is not a SciPy window: {exc}") from None


@dataclass(frozen=True)
class ImageSpec:
    """How a decoded image (uint8 BGR or gray, any size) becomes an H x W x C float tensor.

    ``scale`` multiplies the raw 0-255 values, then ``(x - mean) / std`` per channel.
    ``fit`` (IMAGE_FITS) says how an image of another aspect ratio is brought to H x W;
    specs written before it existed mean "stretch", today's resize. ``bit_depth`` is the
    bits of data in a 16-bit image file (12 for a Mono12 camera's PNG or TIFF): such a file
    is brought to 0-255 by x * 255 / (2**bit_depth - 1) before anything else. None (a model
    trained on 8-bit files, and specs written before): found from the 16-bit files read
    together, with a note. 8-bit files and camera frames are used as they are.
    """

    height: int
    width: int
    color: str = "gray"
    interpolation: str = "area"
    scale: float = 1.0 / 255.0
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    layout: str = "NHWC"
    fit: str = "stretch"
    bit_depth: int | None = None

    def __post_init__(self) -> None:
        _positive("image height", self.height)
        if self.bit_depth is not None and self.bit_depth not in BIT_DEPTHS:
            raise SpecError(f"image bit depth must be one of {', '.join(map(str, BIT_DEPTHS))}"
                            f"; found {self.bit_depth!r}")
        _choice("image fit", self.fit, IMAGE_FITS)
        _positive("image width", self.width)
        _choice("image color", self.color, COLOR_MODES)
        _choice("image interpolation", self.interpolation, INTERPOLATIONS)
        if self.layout != "NHWC":
            raise SpecError(f"image layout must be NHWC; found {self.layout!r}")
        _positive("image scale", self.scale)
        _finite("image scale", (self.scale,))   # 1e308 overflows every pixel
        _finite("image mean", self.mean)
        _finite("image std", self.std)
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        if len(self.mean) not in (1, self.channels) or len(self.std) not in (1, self.channels):
            need = "1 value each" if self.channels == 1 else f"1 or {self.channels} values"
            raise SpecError(f"image mean/std need {need} ({self.channels} channel(s)); "
                            f"found {len(self.mean)} and {len(self.std)}")
        if any(s <= 0 for s in self.std):
            raise SpecError(f"image std values must be positive; found {self.std}")

    @property
    def channels(self) -> int:
        return 1 if self.color == "gray" else 3

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.height, self.width, self.channels)


MAX_SAMPLE_RATE = 1e7   # Hz: 10 MHz, far above any vibration or acoustic DAQ


def sample_rate_problem(value) -> str | None:
    """Why ``value`` is no sample rate (None: it is one): a number of Hz in
    (0, MAX_SAMPLE_RATE]; infinity, NaN, zero and negatives are refused."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"expected a number of Hz; found {value!r}"
    if not 0 < value <= MAX_SAMPLE_RATE:
        return f"expected a positive number of Hz up to {MAX_SAMPLE_RATE:g}; found {value!r}"
    return None


@dataclass(frozen=True)
class SignalSpec:
    """How a 1-D vibration signal becomes a (freq x time x 1) spectrogram tensor.

    Samples are resampled to ``sample_rate``, cut into windows of ``window_length`` samples,
    turned into ``scipy.signal.spectrogram(x, fs, window, nperseg, noverlap, detrend,
    scaling, mode)``, passed through ``transform`` and normalised with ``mean``/``std``
    (fitted on the training windows).
    """

    sample_rate: float = 12000.0
    window_length: int = 10000
    nperseg: int = 256
    noverlap: int = 32
    window: tuple[Any, ...] = ("tukey", 0.25)
    detrend: str = "constant"
    scaling: str = "spectrum"
    mode: str = "magnitude"
    transform: str = "none"
    eps: float = 1e-10
    mean: float = 0.0
    std: float = 1.0
    channel: str = DEFAULT_CHANNEL

    def __post_init__(self) -> None:
        _positive("sample_rate", self.sample_rate)
        _positive("window_length", self.window_length)
        _positive("nperseg", self.nperseg)
        if not isinstance(self.noverlap, int) or not 0 <= self.noverlap < self.nperseg:
            raise SpecError(f"noverlap must be an integer in [0, nperseg={self.nperseg}); "
                            f"found {self.noverlap!r}")
        if self.window_length < self.nperseg:
            raise SpecError(f"window_length ({self.window_length}) must be at least "
                            f"nperseg ({self.nperseg})")
        _choice("scaling", self.scaling, STFT_SCALINGS)
        _choice("mode", self.mode, STFT_MODES)
        _choice("transform", self.transform, MAGNITUDE_TRANSFORMS)
        if self.detrend not in ("constant", "linear", "none"):
            raise SpecError(f"detrend must be constant, linear or none; found {self.detrend!r}")
        window = self.window if isinstance(self.window, str) else tuple(self.window)
        object.__setattr__(self, "window", window)
        _check_window(window, self.nperseg)
        _positive("std", self.std)
        _finite("mean", (self.mean,))
        _positive("eps", self.eps)

    @property
    def hop(self) -> int:
        return self.nperseg - self.noverlap

    @property
    def shape(self) -> tuple[int, int, int]:
        frames = (self.window_length - self.noverlap) // self.hop
        return (self.nperseg // 2 + 1, frames, 1)


@dataclass(frozen=True)
class InputSpec:
    """Everything between raw input and model tensor, plus the class labels."""

    kind: str
    labels: tuple[str, ...]
    image: ImageSpec | None = None
    signal: SignalSpec | None = None
    version: int = field(default=SPEC_VERSION)

    def __post_init__(self) -> None:
        _choice("spec kind", self.kind, ("image", "signal"))
        labels = tuple(str(label) for label in self.labels)
        object.__setattr__(self, "labels", labels)
        if len(labels) < 2:
            raise SpecError(f"a classifier needs at least 2 labels; found {list(labels)}")
        if len(set(labels)) != len(labels):
            raise SpecError(f"labels must be unique; found {list(labels)}")
        odd = [label for label in labels
               if not label or any(ord(c) < 32 or 127 <= ord(c) < 160 for c in label)]
        if odd:   # a newline or a C1 escape (U+009B) in a class name would forge lines
                  # in logs and summaries, or drive the terminal
            raise SpecError(f"labels must be non-empty and free of control characters "
                            f"(newlines, tabs ...); found {odd[:3]}")
        if self.kind == "image" and (self.image is None or self.signal is not None):
            raise SpecError("an image spec needs an 'image' section and no 'signal' section")
        if self.kind == "signal" and (self.signal is None or self.image is not None):
            raise SpecError("a signal spec needs a 'signal' section and no 'image' section")
        if self.version != SPEC_VERSION:
            raise SpecError(f"InputSpec version {self.version} is not supported "
                            f"(this edgecnn reads version {SPEC_VERSION})")

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Model input shape without the batch axis."""
        return self.image.shape if self.kind == "image" else self.signal.shape

    def replace(self, **changes: Any) -> "InputSpec":
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"version": self.version, "kind": self.kind,
                               "labels": list(self.labels)}
        section = self.image if self.kind == "image" else self.signal
        out[self.kind] = _jsonable(asdict(section))
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Any) -> "InputSpec":
        if not isinstance(data, dict):
            raise SpecError(f"an InputSpec must be a JSON object; found {type(data).__name__}")
        try:
            kind = data["kind"]
            labels = data["labels"]
        except KeyError as exc:
            raise SpecError(f"InputSpec is missing the key {exc.args[0]!r}") from None
        image = _section(ImageSpec, data.get("image")) if kind == "image" else None
        signal = _section(SignalSpec, data.get("signal")) if kind == "signal" else None
        return cls(kind=kind, labels=tuple(labels), image=image, signal=signal,
                   version=data.get("version", SPEC_VERSION))

    @classmethod
    def from_json(cls, text: str) -> "InputSpec":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SpecError(f"InputSpec is not valid JSON: {exc}") from None
        return cls.from_dict(data)


def spec_section(spec: "InputSpec | ImageSpec | SignalSpec", kind: str):
    """The ImageSpec ("image") or SignalSpec ("signal") of ``spec`` -- an InputSpec or a
    section itself -- refusing a spec of the other kind."""
    wanted = ImageSpec if kind == "image" else SignalSpec
    section = spec
    if isinstance(spec, InputSpec):
        section = spec.image if kind == "image" else spec.signal
    if not isinstance(section, wanted):
        found = spec.kind if isinstance(spec, InputSpec) else type(spec).__name__
        what = "an image" if kind == "image" else "a vibration (signal)"
        raise SpecError(f"expected {what} input spec; this one is for {found} input")
    return section


def _section(kind: type, data: Any):
    if not isinstance(data, dict):
        raise SpecError(f"InputSpec needs a {kind.__name__} object; found {data!r}")
    known = {f.name for f in fields(kind)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise SpecError(f"unknown {kind.__name__} keys {unknown}; valid keys: {sorted(known)}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    try:
        return kind(**values)
    except TypeError as exc:
        raise SpecError(f"invalid {kind.__name__}: {exc}") from None


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value
