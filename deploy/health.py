"""Source health learned from the training data: an envelope of what inputs look like.

Training stores, per feature, the range its inputs covered (``fit_envelope``); the model
directory and the bundle manifest carry it as ``health``. At run time a source whose input
leaves the envelope for a while raises a fault, never a class: the camera's light went
(``dark``), a lamp or shutter changed (``bright``), the lens lost focus (``defocus``), the
sensor got noisy (``noisy``) or shows a blank scene (``flat``); a vibration sensor's gain
changed (``gain_change``), it picks up mains ``hum``, is ``noisy`` or dead (``flat``).
Faults are state changes (a ``start`` and an ``end`` transition), debounced, with the
measured value and the expected range. numpy and OpenCV only.

Image features: mean, std (brightness, contrast) and saturated (share of pixels >= 250)
on the frame resized (bilinear) to the model's input size (what the model sees); sharpness =
var(Laplacian) / var(image) (independent of gain) and noise (Immerkaer's fast noise sigma)
on the central 128 x 128 native pixels, where focus and sensor noise live.
Signal features per window (raw samples at the model rate): rms, crest factor, kurtosis,
hum = share of the power within 2 bins of 50/60 Hz and their 2nd/3rd harmonics,
flatness = spectral flatness (white noise -> 1).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

IMAGE_HEALTH_FAULTS = ("dark", "bright", "defocus", "noisy", "flat")
SIGNAL_HEALTH_FAULTS = ("gain_change", "hum", "noisy", "flat")
ENVELOPE_VERSION = 1
NATIVE_CROP = 128
# Immerkaer's kernel [[1, -2, 1], [-2, 4, -2], [1, -2, 1]] is the outer product of
# [1, -2, 1] with itself: two 1-D passes give the same integers at 2/3 of the cost
_NOISE_TAPS = np.array([1, -2, 1], np.float32)
_NOISE_SCALE = float(np.sqrt(np.pi / 2)) / 6.0     # Immerkaer's sigma from the mean |response|


# --------------------------------------------------------------------------- features

def image_features(image: np.ndarray, size: tuple[int, int],
                   resized: np.ndarray | None = None) -> dict[str, float]:
    """Features of one decoded uint8 image (gray or BGR): brightness, contrast and
    saturation at the model's (width, height); sharpness and noise, which are properties
    of the sensor's pixels, on the central ``NATIVE_CROP`` square of native pixels.
    ``resized``: the gray image already resized bilinearly to ``size``, where a camera's
    model makes that very view of the frame, so the frame is resized once.

    The model-sized view is a bilinear resize, as the model's own preprocessing does:
    ~10 us per frame whatever its size, where area averaging cost 70 us at 200x200 and
    0.3 ms thinned at 1800x1000 (the health check was a fifth of a small frame's CPU).
    Area averaging a large tiled frame to the model's size also smoothed each tile's
    texture away, so its contrast was no longer what a tile of it shows the model."""
    if image.ndim == 3:
        image = image[:, :, 0] if image.shape[2] == 1 else cv2.cvtColor(
            image, cv2.COLOR_BGRA2GRAY if image.shape[2] == 4 else cv2.COLOR_BGR2GRAY)
    small = image
    if resized is not None and resized.shape == (size[1], size[0]):
        small = resized
    elif image.shape[1] != size[0] or image.shape[0] != size[1]:
        small = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
    mean, std = cv2.meanStdDev(small)
    mean, std = float(mean[0, 0]), float(std[0, 0])
    saturated = float(np.count_nonzero(small >= 250)) / small.size
    h, w = image.shape
    top, left = max(0, (h - NATIVE_CROP) // 2), max(0, (w - NATIVE_CROP) // 2)
    crop = image[top:top + NATIVE_CROP, left:left + NATIVE_CROP]
    crop_std = float(cv2.meanStdDev(crop)[1][0, 0])
    # Both filters of uint8 pixels give integers (the Laplacian within +/-1020, the noise
    # kernel within +/-4080): int16 is exact, and the Laplacian's variance from its exact
    # sum and sum of squares costs 2 us where meanStdDev of int16 costs 13
    lap = cv2.Laplacian(crop, cv2.CV_16S)
    count = lap.size
    lap_mean = cv2.sumElems(lap)[0] / count
    lap_var = max(cv2.norm(lap, cv2.NORM_L2SQR) / count - lap_mean * lap_mean, 0.0)
    sharpness = lap_var / max(crop_std * crop_std, 1e-6)
    ch, cw = crop.shape
    response = cv2.sepFilter2D(crop, cv2.CV_16S, _NOISE_TAPS, _NOISE_TAPS)[1:-1, 1:-1]
    interior = (cw - 2) * (ch - 2)   # a frame 2 pixels high or wide has no interior
    noise = float(_NOISE_SCALE * cv2.norm(response, cv2.NORM_L1) / interior) if interior else 0.0
    return {"mean": mean, "std": std, "sharpness": sharpness, "noise": noise,
            "saturated": saturated}


def signal_features(window: np.ndarray, sample_rate: float) -> dict[str, float]:
    x = np.asarray(window, dtype=np.float64)
    x = x - x.mean()
    x2 = x * x
    rms = float(np.sqrt(np.mean(x2)))
    if rms <= 1e-12:
        return {"rms": 0.0, "crest": 0.0, "kurtosis": 0.0, "hum": 0.0, "flatness": 0.0}
    crest = float(np.abs(x).max() / rms)
    x2 *= x2                  # x ** 4 by multiplying: a float power costs 10x as much
    kurtosis = float(np.mean(x2) / rms ** 4)
    taper, hum_bins = _spectrum_plan(len(x), float(sample_rate))
    x *= taper
    power = np.abs(np.fft.rfft(x)) ** 2
    power[0] = 0.0
    total = float(power.sum()) + 1e-30
    hum = float(power[hum_bins].sum()) / total
    positive = power[1:]
    positive += total * 1e-12
    flatness = float(np.exp(np.mean(np.log(positive))) / np.mean(positive))
    return {"rms": rms, "crest": crest, "kurtosis": kurtosis, "hum": hum,
            "flatness": flatness}


@lru_cache(maxsize=16)
def _spectrum_plan(length: int, sample_rate: float) -> tuple[np.ndarray, np.ndarray]:
    """The Hann taper of a window and the bins within 2 of 50/60 Hz and their 2nd/3rd
    harmonics (computed once per window length and rate, not per window)."""
    resolution = sample_rate / length
    bins = set()
    for mains in (50.0, 60.0):
        for k in (1, 2, 3):
            centre = int(round(k * mains / resolution))
            bins.update(range(max(1, centre - 2), centre + 3))
    taper = np.hanning(length)
    taper.flags.writeable = False
    index = np.array(sorted(b for b in bins if b < length // 2 + 1), dtype=np.intp)
    index.flags.writeable = False
    return taper, index


# --------------------------------------------------------------------------- envelope

def _ranges(rows: list[dict[str, float]], labels=None) -> dict[str, dict[str, float]]:
    """Per feature: sample min/p01/median/p99/max and the lowest / highest class median
    (what a line running one product type looks like over a few seconds)."""
    out = {}
    labels = np.zeros(len(rows), int) if labels is None else np.asarray(labels)
    for name in rows[0]:
        values = np.array([r[name] for r in rows])
        medians = [float(np.median(values[labels == c])) for c in np.unique(labels)]
        out[name] = {"min": float(values.min()), "p01": float(np.percentile(values, 1)),
                     "median": float(np.median(values)),
                     "p99": float(np.percentile(values, 99)), "max": float(values.max()),
                     "class_median_min": min(medians), "class_median_max": max(medians)}
    return out


def fit_envelope(items, spec, labels=None, features=None) -> dict:
    """The envelope of raw training samples (images or windows) for ``spec`` (InputSpec).

    The run-time checks compare a rolling median over the last few inputs with limits set
    well outside the class medians seen in training, so real products never trip them: a
    fault means the source changed, not that one product is unusual. ``features``: per
    image, its features measured before it was made smaller (None: from the item).
    """
    if spec.kind == "image":
        size = (spec.image.width, spec.image.height)
        given = features if features is not None else [None] * len(items)
        ranges = _ranges([known if known is not None else image_features(item, size)
                          for item, known in zip(items, given)], labels)
        return {"version": ENVELOPE_VERSION, "kind": "image", "size": list(size),
                "samples": len(items), "features": ranges, "limits": image_limits(ranges)}
    rate = spec.signal.sample_rate
    ranges = _ranges([signal_features(item, rate) for item in items], labels)
    return {"version": ENVELOPE_VERSION, "kind": "signal", "sample_rate": rate,
            "samples": len(items), "features": ranges, "limits": signal_limits(ranges)}


def image_limits(ranges: dict) -> dict:
    """Fault limits from the image feature ranges of the training products. A product
    stays in view for several frames, so a limit inside the range of real products would
    trip on the few extreme ones: brightness limits lie beyond the darkest and brightest
    product seen, not at a percentile."""
    m, s, sh, no, sat = (ranges[k] for k in ("mean", "std", "sharpness", "noise",
                                             "saturated"))
    high = m["class_median_max"]
    return {
        "dark": {"feature": "mean", "below": min(0.5 * m["class_median_min"], 0.9 * m["min"])},
        "bright": {"feature": "mean",
                   "above": max(high + 0.6 * (255.0 - high), m["max"] + 0.5 * (255.0 - m["max"]))},
        "defocus": {"feature": "sharpness", "below": min(0.3 * sh["class_median_min"],
                                                         sh["min"])},
        "noisy": {"feature": "noise",
                  "above": max(no["max"], 1.5 * no["class_median_max"]) + 1.0},
        "flat": {"feature": "std", "below": 0.4 * s["min"]},
        # the per-frame faults of deploy/faults.py, now beyond what products show
        "black_level": min(16.0, 0.5 * m["min"]),
        "saturated_fraction": min(0.99, max(0.5, sat["max"] + 0.5 * (1 - sat["max"]))),
        # a live sensor's frames differ by about its noise: "identical" is well below
        "frozen_delta": min(0.1, 0.2 * no["min"]),
    }


def signal_limits(ranges: dict) -> dict:
    """Fault limits from the signal feature ranges of the training windows."""
    rms, hum, flat = ranges["rms"], ranges["hum"], ranges["flatness"]
    return {
        "gain_change": {"feature": "rms", "below": rms["class_median_min"] / 3.0,
                        "above": rms["class_median_max"] * 3.0},
        "hum": {"feature": "hum", "above": max(2.0 * hum["p99"], hum["p99"] + 0.02)},
        "noisy": {"feature": "flatness", "above": max(3.0 * flat["p99"], flat["p99"] + 0.1)},
        "flat": {"feature": "rms", "below": rms["min"] / 100.0},
    }


def fault_config_kwargs(envelope: dict | None) -> dict:
    """FaultConfig thresholds (black, overexposed, frozen) taken from an image envelope."""
    if not envelope or envelope.get("kind") != "image":
        return {}
    limits = envelope["limits"]
    out = {"black_level": float(limits["black_level"]),
           "saturated_fraction": float(limits["saturated_fraction"])}
    if "frozen_delta" in limits:
        out["frozen_delta"] = float(limits["frozen_delta"])
    return out


# --------------------------------------------------------------------------- run time

def _median(values) -> float:
    """np.median of a few floats, without numpy's per-call overhead (~15 us, five
    features per frame): the middle value, or the mean of the two middle ones."""
    ordered = sorted(values)
    mid = len(ordered) // 2
    if len(ordered) % 2:
        return float(ordered[mid])
    return float((ordered[mid - 1] + ordered[mid]) / 2.0)


# A single sample this far beyond a limit (x10 above, /10 below) starts its fault at once
GROSS = 10.0


def _breaks(rule: dict, value: float, factor: float = 1.0) -> bool:
    return ("below" in rule and value < rule["below"] / factor) or \
        ("above" in rule and value > rule["above"] * factor)


def _expected(rule: dict) -> list:
    return [rule.get("below"), rule.get("above")]


@dataclass
class _State:
    active: bool = False
    run: int = 0          # consecutive checks that disagree with ``active``


class HealthMonitor:
    """``check(sample)`` -> list of transitions: ``{"fault", "state": "start"|"end",
    "value", "expected": [low, high], "feature"}``.

    Each feature is the median of the last ``window`` checks (one odd product does not
    count); a fault starts after ``start_after`` consecutive checks with that median outside
    its limit and ends after ``end_after`` consecutive checks inside it. For images,
    ``dark`` / ``bright`` / ``flat`` take precedence over ``defocus`` and ``noisy`` (a dark
    frame is also unsharp and noisy-looking).
    """

    def __init__(self, envelope: dict, window: int = 9, start_after: int = 3,
                 end_after: int = 3):
        self.envelope = envelope
        self.kind = envelope["kind"]
        self.limits = {name: rule for name, rule in envelope["limits"].items()
                       if isinstance(rule, dict)}
        self.start_after, self.end_after = start_after, end_after
        self.states = {name: _State() for name in self.limits}
        self.window = max(1, window)
        self._history: dict[str, deque] = {}
        self.last: dict[str, float] = {}

    @property
    def active(self) -> list[str]:
        return [name for name, state in self.states.items() if state.active]

    def features(self, sample, resized: np.ndarray | None = None) -> dict[str, float]:
        """The sample's features; ``resized`` as ``image_features`` takes it."""
        if self.kind == "image":
            return image_features(sample, tuple(self.envelope["size"]), resized)
        return signal_features(sample, self.envelope["sample_rate"])

    def check(self, sample) -> list[dict]:
        return self.check_features(self.features(sample))

    def check_features(self, sample: dict[str, float]) -> list[dict]:
        """``check`` for features computed elsewhere (the camera's reading thread)."""
        history = self._history      # per feature, its last ``window`` values
        if not history:
            history.update((name, deque(maxlen=self.window)) for name in sample)
        for name, series in history.items():
            series.append(sample[name])
        values = self.last = {name: _median(series) for name, series in history.items()}
        broken, gross = set(), set()
        for name, rule in self.limits.items():
            feature = rule["feature"]
            if _breaks(rule, values[feature]):
                broken.add(name)
            # far beyond any limit in one sample (a sensor gain x1000): no product does
            # that, so it starts at once instead of after ``start_after`` checks, before
            # a window of it is classified
            if _breaks(rule, sample[feature], GROSS):
                gross.add(name)
        if not (broken or gross) and not any(state.active or state.run
                                             for state in self.states.values()):
            return []     # healthy and nothing pending: the common case, kept cheap
        broken = self._allowed(broken | gross)
        out = []
        for name, state in self.states.items():
            if name in gross and name in broken and not state.active:
                state.run = self.start_after      # starts now
            elif (name in broken) == state.active:
                state.run = 0
                continue
            else:
                state.run += 1
            if state.run >= (self.end_after if state.active else self.start_after):
                state.active, state.run = not state.active, 0
                rule = self.limits[name]
                shown = sample if name in gross else values
                out.append({"fault": name, "state": "start" if state.active else "end",
                            "feature": rule["feature"],
                            "value": round(shown[rule["feature"]], 6),
                            "expected": _expected(rule)})
        return out

    def stop(self, detail: str) -> list[dict]:
        """End transitions for the faults still active when the run stops, so every
        start in the log has its end; the monitor is reset."""
        out = []
        for name, state in self.states.items():
            if state.active:
                rule = self.limits[name]
                out.append({"fault": name, "state": "end", "feature": rule["feature"],
                            "value": round(self.last.get(rule["feature"], float("nan")), 6),
                            "expected": _expected(rule), "detail": detail})
        self.reset()
        return out

    def _allowed(self, names: set[str]) -> set[str]:
        """``names`` less those another fault in it explains (as for ``broken``)."""
        names = set(names)
        if self.kind == "image" and names & {"dark", "bright", "flat"}:
            names -= {"defocus", "noisy"}
        if "flat" in names:
            names.discard("gain_change")
        return names

    def reset(self) -> None:
        self._history.clear()
        for state in self.states.values():
            state.active, state.run = False, 0


def monitor_for(bundle, kind: str, **options) -> HealthMonitor | None:
    """The bundle's health monitor, or None for a bundle without a ``health`` envelope
    (made before envelopes existed) or with one for another input kind."""
    manifest = getattr(bundle, "manifest", None) or {}
    envelope = manifest.get("health") if isinstance(manifest, dict) else None
    if not isinstance(envelope, dict) or envelope.get("kind") != kind:
        return None
    return HealthMonitor(envelope, **options)


def fault_event(change: dict) -> dict:
    """The event fields of one health transition (next to time, source, frame/window)."""
    event = {"type": "fault", "fault": change["fault"], "state": change["state"],
             "feature": change["feature"], "value": change["value"],
             "expected": change["expected"]}
    if change.get("detail"):
        event["detail"] = change["detail"]
    return event
