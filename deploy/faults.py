"""Source faults: frames that show the camera, not the product.

A black frame (lens cap, lost signal, lamp off), an overexposed one (flash, open shutter)
or a frozen stream (the same picture over and over) would otherwise be classified as
some product class. These checks run on a small gray thumbnail before inference; a frame
with a fault is reported and not classified.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .errors import InputError

FAULTS = ("black", "overexposed", "frozen")


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

    def __post_init__(self) -> None:
        if self.frozen_frames < 0 or self.thumbnail < 4:
            raise InputError(f"frozen_frames must be >= 0 and thumbnail >= 4; found "
                             f"{self.frozen_frames} and {self.thumbnail}")


class FrameFaultDetector:
    """``check(image)`` -> "black" | "overexposed" | "frozen" | None, one call per frame."""

    def __init__(self, config: FaultConfig = FaultConfig()):
        self.config = config
        n = config.thumbnail
        self._thumb = np.zeros((n, n), np.uint8)
        self._prev = np.zeros((n, n), np.float32)
        self._cur = np.zeros((n, n), np.float32)
        self._have_prev = False
        self._same = 0

    def reset(self) -> None:
        self._have_prev = False
        self._same = 0

    def check(self, image: np.ndarray) -> str | None:
        cfg = self.config
        # nearest sampling: a 64x64 sample of the frame is plenty for these checks and costs
        # microseconds, where area averaging of a large frame costs a good part of a ms
        small = cv2.resize(image, (cfg.thumbnail, cfg.thumbnail),
                           interpolation=cv2.INTER_NEAREST)
        if small.ndim == 3:
            small = cv2.cvtColor(small, cv2.COLOR_BGRA2GRAY if small.shape[2] == 4
                                 else cv2.COLOR_BGR2GRAY, dst=self._thumb)
        mean, std = cv2.meanStdDev(small)
        mean, std = float(mean[0, 0]), float(std[0, 0])
        self._cur[...] = small
        frozen = False
        if cfg.frozen_frames:
            if self._have_prev and float(cv2.norm(self._cur, self._prev, cv2.NORM_L1)) \
                    / self._cur.size <= cfg.frozen_delta:
                self._same += 1
            else:
                self._same = 0
            frozen = self._same + 1 >= cfg.frozen_frames
        self._prev, self._cur = self._cur, self._prev
        self._have_prev = True
        if mean < cfg.black_level and std < cfg.flat_std:
            return "black"
        if (mean > cfg.bright_level and std < cfg.flat_std) or \
                np.count_nonzero(small >= 250) >= cfg.saturated_fraction * small.size:
            return "overexposed"
        return "frozen" if frozen else None
