"""Raw-domain augmentation: what a line does to a camera or a sensor, applied in training.

Images are changed before the resize (uint8, native size, gray or BGR), signals before the
STFT (float windows of raw samples), so a model learns the physics of the change, not a
tensor trick. The primitives here (``apply_image`` / ``apply_signal`` with fixed
parameters) are also what the robustness suite (``edgecnn.robustness``) perturbs with, so
training and measurement share one implementation of every change. numpy and OpenCV only.

Families (``IMAGE_FAMILIES`` / ``SIGNAL_FAMILIES``); at strength 1 each draws from the
range in its comment; ``strength`` scales the ranges (0.5 = half as far from "no change").
Per sample, a share ``CLEAN_PROBABILITY`` is left unchanged; signals then draw each family
with probability ``APPLY_PROBABILITY``; images draw 1 to ``MAX_IMAGE_FAMILIES`` distinct
families (the mirror symmetries apply to every sample). A line changes one or two things
at a time: a sample pushed through four changes at full range at once looks like nothing
the line shows and leaves few images near the clean ones. Held-out test splits (20 %),
with the weight average of edgecnn.schedule: X-SDD 91.4 -> 94.1 % (robustness mean 91.1 ->
93.4 %), NEU 100 % both, robustness mean 99.2 -> 98.9 %, worst 97.3 -> 97.0 %. Label
smoothing (edgecnn.schedule) gives back part of what the camera changes cost on clean
X-SDD images (worst of three seeds 94.1 -> 95.0 %). Annealing them away in the last 15 %
of the epochs ("close mosaic") did not: 94.1 -> 95.0 / 94.1 %.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edgecnn.deploy.errors import InputError

# name -> what it models (range at strength 1)
IMAGE_FAMILIES = {
    "gain": "exposure / lamp brightness: pixel values x0.6-x1.6",
    "offset": "black level: +/-30 grey levels",
    "gamma": "sensor response curve: gamma 0.6-1.65",
    "contrast": "contrast around the mean: x0.6-x1.5",
    "noise": "sensor noise: Gaussian, sigma 0-12 grey levels",
    "defocus": "focus loss: Gaussian blur, sigma 0-1.6 pixels of the native image",
    "motion": "motion blur: a line of 3-9 pixels at any angle",
    "jpeg": "re-compression (IP cameras, MJPG streams): quality 30-95",
    "rotate": "small camera rotation: +/-8 degrees",
    "zoom": "working distance: scale x0.8-x1.25",
    "shift": "product position: +/-8 % of the side",
    "flip": "left/right and up/down mirror (textures with no orientation)",
    "rot90": "quarter turns (square textures with no orientation)",
}
SIGNAL_FAMILIES = {
    "gain": "sensor sensitivity / mounting: x0.4-x2.5",
    "dc": "DC offset: +/-1 x the window RMS",
    "noise": "additive white noise: SNR 3-40 dB",
    "hum": "mains hum 50 or 60 Hz with 2nd and 3rd harmonics: 0.03-1.5 x the window RMS",
    "speed": "shaft speed: x0.96-x1.04 (time stretch)",
}
APPLY_PROBABILITY = {"signal": 0.5}  # each family, independently, per sample
MAX_IMAGE_FAMILIES = 2    # camera changes drawn per image: 1..this, distinct
CLEAN_PROBABILITY = 0.2   # share of samples left photometrically/physically unchanged
SYMMETRIES = ("flip", "rot90")  # label-preserving: applied to clean samples too


def families_for(kind: str) -> dict[str, str]:
    return IMAGE_FAMILIES if kind == "image" else SIGNAL_FAMILIES


def parse_families(value, kind: str, default: tuple[str, ...]) -> tuple[str, ...]:
    """``--augment`` value -> family names: None/True = task default, False/'none' = off,
    'a,b' or a sequence = those. Unknown names are refused with the valid list."""
    if value is None or value is True:
        names = tuple(default)
    elif value is False or (isinstance(value, str) and value.strip().lower() in ("none", "")):
        return ()
    elif isinstance(value, str):
        names = tuple(n.strip() for n in value.split(",") if n.strip())
    else:
        names = tuple(value)
    valid = families_for(kind)
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise InputError(f"unknown {kind} augmentation {', '.join(map(repr, unknown))}; valid: "
                         f"{', '.join(valid)} (or 'none')")
    return tuple(dict.fromkeys(names))


def check_strength(strength: float) -> float:
    if not isinstance(strength, (int, float)) or not 0 <= strength <= 2:
        raise InputError(f"augmentation strength must be between 0 and 2; found {strength!r}")
    return float(strength)


# --------------------------------------------------------------------------- images

def _to_uint8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def _geometry(image: np.ndarray, angle: float, scale: float, dx: float, dy: float,
              flip_h: bool = False, flip_v: bool = False, quarter: int = 0) -> np.ndarray:
    """One warp for rotation, zoom and shift (reflected borders), then flips / rot90."""
    if angle or scale != 1.0 or dx or dy:
        h, w = image.shape[:2]
        matrix = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), angle, scale)
        matrix[0, 2] += dx * w
        matrix[1, 2] += dy * h
        image = cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REFLECT_101)
    if flip_h:
        image = image[:, ::-1]
    if flip_v:
        image = image[::-1]
    if quarter and image.shape[0] == image.shape[1]:
        image = np.rot90(image, quarter)
    return np.ascontiguousarray(image)


def defocus(image: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(image, (0, 0), sigma) if sigma > 0.05 else image


def motion_blur(image: np.ndarray, length: int, angle: float) -> np.ndarray:
    if length < 2:
        return image
    kernel = np.zeros((length, length), np.float32)
    kernel[length // 2, :] = 1.0
    rotation = cv2.getRotationMatrix2D(((length - 1) / 2.0, (length - 1) / 2.0), angle, 1.0)
    kernel = cv2.warpAffine(kernel, rotation, (length, length))
    kernel /= max(kernel.sum(), 1e-6)
    return cv2.filter2D(image, -1, kernel, borderType=cv2.BORDER_REFLECT_101)


def photometric(image: np.ndarray, gain: float = 1.0, offset: float = 0.0, gamma: float = 1.0,
                contrast: float = 1.0) -> np.ndarray:
    """Gain and offset, contrast around the mean, then the gamma curve; uint8 out."""
    if gain == 1.0 and offset == 0.0 and gamma == 1.0 and contrast == 1.0:
        return image
    values = image.astype(np.float32)
    if contrast != 1.0:
        mean = float(values.mean())
        values = (values - mean) * contrast + mean
    values = values * gain + offset
    if gamma != 1.0:
        values = 255.0 * np.power(np.clip(values, 0, 255) / 255.0, gamma)
    return _to_uint8(values)


def add_noise(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    if sigma <= 0:
        return image
    noise = rng.standard_normal(image.shape, dtype=np.float32) * np.float32(sigma)
    return _to_uint8(image.astype(np.float32) + noise)


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        return image
    flag = cv2.IMREAD_GRAYSCALE if image.ndim == 2 else cv2.IMREAD_COLOR
    return cv2.imdecode(encoded, flag).reshape(image.shape)


@dataclass(frozen=True)
class ImageChange:
    """One fixed set of image changes (neutral defaults): a drawn augmentation or one cell
    of the robustness suite."""

    angle: float = 0.0
    scale: float = 1.0
    dx: float = 0.0
    dy: float = 0.0
    flip_h: bool = False
    flip_v: bool = False
    quarter: int = 0
    defocus: float = 0.0
    motion: int = 0
    motion_angle: float = 0.0
    gain: float = 1.0
    offset: float = 0.0
    gamma: float = 1.0
    contrast: float = 1.0
    noise: float = 0.0
    jpeg: int = 0


def apply_image(image: np.ndarray, change: ImageChange, rng: np.random.Generator) -> np.ndarray:
    """Camera chain order: geometry -> optics (blur) -> exposure -> sensor noise -> codec."""
    c = change
    out = _geometry(image, c.angle, c.scale, c.dx, c.dy, c.flip_h, c.flip_v, c.quarter)
    out = defocus(out, c.defocus)
    out = motion_blur(out, c.motion, c.motion_angle)
    out = photometric(out, c.gain, c.offset, c.gamma, c.contrast)
    out = add_noise(out, c.noise, rng)
    return jpeg(out, c.jpeg) if c.jpeg else out


def draw_image_change(families, strength: float, rng: np.random.Generator) -> ImageChange:
    s = strength
    changes = [f for f in families if f not in SYMMETRIES]
    on: dict[str, bool] = {}
    if changes and rng.random() >= CLEAN_PROBABILITY:
        count = int(rng.integers(1, min(MAX_IMAGE_FAMILIES, len(changes)) + 1))
        on = {str(f): True for f in rng.choice(changes, size=count, replace=False)}

    def log_uniform(low, high):
        return float(np.exp(rng.uniform(np.log(low) * s, np.log(high) * s)))

    values = {}
    if on.get("rotate"):
        values["angle"] = rng.uniform(-8, 8) * s
    if on.get("zoom"):
        values["scale"] = log_uniform(0.8, 1.25)
    if on.get("shift"):
        values["dx"], values["dy"] = rng.uniform(-0.08, 0.08, 2) * s
    if "flip" in families:
        values["flip_h"], values["flip_v"] = bool(rng.random() < 0.5), bool(rng.random() < 0.5)
    if "rot90" in families:
        values["quarter"] = int(rng.integers(0, 4))
    if on.get("defocus"):
        values["defocus"] = rng.uniform(0.3, 1.6) * s
    if on.get("motion"):
        values["motion"] = int(round(rng.uniform(2.5, 9) * s))
        values["motion_angle"] = rng.uniform(0, 180)
    if on.get("gain"):
        values["gain"] = log_uniform(0.6, 1.6)
    if on.get("offset"):
        values["offset"] = rng.uniform(-30, 30) * s
    if on.get("gamma"):
        values["gamma"] = log_uniform(0.6, 1.65)
    if on.get("contrast"):
        values["contrast"] = log_uniform(0.6, 1.5)
    if on.get("noise"):
        values["noise"] = rng.uniform(0, 12) * s
    if on.get("jpeg"):
        values["jpeg"] = int(round(95 - rng.uniform(0, 65) * min(s, 1.0)))
    return ImageChange(**values)


# --------------------------------------------------------------------------- signals

def _rms(window: np.ndarray) -> float:
    centred = window - window.mean()
    return float(np.sqrt(np.mean(centred * centred))) + 1e-12


def stretch(window: np.ndarray, factor: float) -> np.ndarray:
    """Speed change by ``factor`` (>1 faster: frequencies up), same length, linear
    interpolation; the tail is reflected when the stretched signal runs short."""
    if factor == 1.0:
        return window
    n = len(window)
    positions = np.arange(n) * factor
    period = 2 * (n - 1)
    positions = np.mod(positions, period)
    positions = np.where(positions > n - 1, period - positions, positions)
    return np.interp(positions, np.arange(n), window).astype(window.dtype)


def hum(n: int, sample_rate: float, amplitude: float, mains: float,
        rng: np.random.Generator) -> np.ndarray:
    """Mains hum: the fundamental plus 2nd and 3rd harmonics (1/2 and 1/3 amplitude)."""
    t = np.arange(n) / sample_rate
    out = np.zeros(n)
    for k, weight in ((1, 1.0), (2, 0.5), (3, 1.0 / 3.0)):
        out += weight * np.sin(2 * np.pi * k * mains * t + rng.uniform(0, 2 * np.pi))
    return amplitude * out


@dataclass(frozen=True)
class SignalChange:
    """One fixed set of sensor changes (neutral defaults)."""

    gain: float = 1.0
    dc: float = 0.0        # x window RMS
    snr_db: float | None = None
    hum: float = 0.0       # x window RMS
    mains: float = 50.0
    speed: float = 1.0


def apply_signal(window: np.ndarray, change: SignalChange, sample_rate: float,
                 rng: np.random.Generator) -> np.ndarray:
    """Machine -> sensor chain: speed, then hum and noise relative to the signal, DC, gain."""
    c = change
    out = np.asarray(window, dtype=np.float64)
    out = stretch(out, c.speed)
    rms = _rms(out)
    if c.hum:
        out = out + hum(len(out), sample_rate, c.hum * rms, c.mains, rng)
    if c.snr_db is not None:
        out = out + rng.standard_normal(len(out)) * (rms / 10 ** (c.snr_db / 20.0))
    if c.dc:
        out = out + c.dc * rms
    return (out * c.gain).astype(np.asarray(window).dtype)


def draw_signal_change(families, strength: float, rng: np.random.Generator) -> SignalChange:
    s = strength
    if rng.random() < CLEAN_PROBABILITY:
        return SignalChange()
    on = {f: rng.random() < APPLY_PROBABILITY["signal"] for f in families}
    values = {}
    if on.get("gain"):
        values["gain"] = float(np.exp(rng.uniform(-1, 1) * np.log(2.5) * s))
    if on.get("dc"):
        values["dc"] = rng.uniform(-1, 1) * s
    if on.get("noise"):
        values["snr_db"] = 40.0 - rng.uniform(0, 37) * s
    if on.get("hum"):
        values["hum"] = float(np.exp(rng.uniform(np.log(0.03), np.log(1.5)))) * s
        values["mains"] = 50.0 if rng.random() < 0.5 else 60.0
    if on.get("speed"):
        values["speed"] = 1.0 + rng.uniform(-0.04, 0.04) * s
    return SignalChange(**values)


# --------------------------------------------------------------------------- batches

def augment_batch(items, kind: str, families, strength: float, rng: np.random.Generator,
                  sample_rate: float = 1.0) -> list:
    """Raw samples -> changed raw samples (same shapes and dtypes), one draw each."""
    out = []
    for item in items:
        if kind == "image":
            out.append(apply_image(item, draw_image_change(families, strength, rng), rng))
        else:
            out.append(apply_signal(item, draw_signal_change(families, strength, rng),
                                    sample_rate, rng))
    return out
