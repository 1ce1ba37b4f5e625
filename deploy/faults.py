"""Source faults: frames that show the camera, not the product.

A black frame (lens cap, lost signal, lamp off), an overexposed one (flash, open shutter),
a frozen stream (the same picture over and over) or a tiny frame (a few pixels: a broken
stream or a misconfigured camera) would otherwise be classified as some product class.
These checks run on a small gray thumbnail before inference; a frame with a fault is
reported and not classified.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .errors import InputError

# "resolution": the camera's frame size changed and the regions asked for (--roi, --tiles,
# --grid) no longer fit it (camera.FramePreparer); reported, not classified, until they do.
FAULTS = ("black", "overexposed", "frozen", "tiny", "resolution")


@dataclass(frozen=True)
class FaultConfig:
    """Thresholds on the 0-255 gray thumbnail. ``frozen_frames=0`` turns frozen checks off."""

    black_level: float = 16.0        # mean below this with little texture -> black
    bright_level: float = 240.0      # mean above this with little texture -> overexposed
    flat_std: float = 6.0            # "little texture": standard deviation below this
    saturated_fraction: float = 0.5  # or at least this share of pixels at >= 250
    frozen_frames: int = 30          # this many identical consecutive frames -> frozen
    frozen_delta: float = 0.1        # mean absolute change that still counts as identical
    thumbnail: int = 64
    min_side: int = 8                # a frame narrower or lower than this -> tiny

    def __post_init__(self) -> None:
        if self.frozen_frames < 0:
            raise InputError(f"--frozen-frames must be >= 0 (0: no frozen check); found "
                             f"{self.frozen_frames}")
        if self.thumbnail < 4:
            raise InputError(f"the fault thumbnail must be >= 4 pixels; found {self.thumbnail}")


class FrameFaultDetector:
    """``check(image)`` -> "black" | "overexposed" | "frozen" | "tiny" | None, per frame.

    Works on reused thumbnail buffers (a few microseconds, no allocation per frame); the
    camera pipeline calls it in the source's reading thread.
    """

    def __init__(self, config: FaultConfig = FaultConfig()):
        self.config = config
        n = config.thumbnail
        self._color: dict[int, np.ndarray] = {}     # channels -> thumbnail of the frame
        self._gray = [np.zeros((n, n), np.uint8), np.zeros((n, n), np.uint8)]  # cur, prev
        self._have_prev = False
        self._same = 0

    def _thumbnail(self, image: np.ndarray, out: np.ndarray) -> np.ndarray:
        # nearest sampling: a 64x64 sample of the frame is plenty for these checks and costs
        # microseconds, where area averaging of a large frame costs a good part of a ms
        size = (self.config.thumbnail, self.config.thumbnail)
        if image.ndim == 2 or image.shape[2] == 1:
            return cv2.resize(image, size, dst=out, interpolation=cv2.INTER_NEAREST)
        channels = image.shape[2]
        color = self._color.get(channels)
        if color is None:
            color = self._color[channels] = np.zeros((*size, channels), np.uint8)
        color = cv2.resize(image, size, dst=color, interpolation=cv2.INTER_NEAREST)
        return cv2.cvtColor(color, cv2.COLOR_BGRA2GRAY if channels == 4
                            else cv2.COLOR_BGR2GRAY, dst=out)

    def check(self, image: np.ndarray) -> str | None:
        cfg = self.config
        if min(image.shape[:2]) < cfg.min_side:
            return "tiny"
        cur, prev = self._gray
        small = self._thumbnail(image, cur)
        mean, std = cv2.meanStdDev(small)
        mean, std = float(mean[0, 0]), float(std[0, 0])
        frozen = False
        if cfg.frozen_frames:
            if self._have_prev and \
                    cv2.norm(small, prev, cv2.NORM_L1) / small.size <= cfg.frozen_delta:
                self._same += 1
            else:
                self._same = 0
            frozen = self._same + 1 >= cfg.frozen_frames
        self._gray = [prev, small]
        self._have_prev = True
        if mean < cfg.black_level and std < cfg.flat_std:
            return "black"
        if mean > cfg.bright_level and std < cfg.flat_std:
            return "overexposed"
        # a share f of the pixels at >= 250 needs a mean of at least 250 f: count only then
        if mean >= 250.0 * cfg.saturated_fraction - 1e-6 and \
                np.count_nonzero(small >= 250) >= cfg.saturated_fraction * small.size:
            return "overexposed"
        return "frozen" if frozen else None
