"""From per-frame probabilities to events: thresholds, ignored classes, debounce.

One noisy frame is not a defect. A class becomes an event when it is the top class with at
least its confidence threshold for ``min_count`` consecutive frames (or windows) of the
same region; it fires once per such run. Frames under the threshold, faulty frames and
other classes break the run. Ignored classes (the "good"/"normal" ones) never fire.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import InputError


@dataclass(frozen=True)
class Persisted:
    label: str
    index: int
    confidence: float        # of the frame that completed the run
    mean_confidence: float   # over the run
    count: int

    def fields(self, unit: str) -> dict:
        """The run behind an event: confidence now and over the run, its length in
        ``unit`` (frames or windows)."""
        return {"confidence": round(self.confidence, 6),
                "mean_confidence": round(self.mean_confidence, 6), unit: self.count}


def parse_class_threshold(text: str) -> tuple[str, float]:
    name, sep, value = str(text).rpartition("=")
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not sep or not name or not 0.0 <= number <= 1.0:
        raise InputError(f"--class-threshold must look like CLASS=0.9 (a value in [0, 1]); "
                         f"found {text!r}")
    return name, number


class Debouncer:
    def __init__(self, labels, min_count: int = 3, threshold: float = 0.6,
                 class_thresholds: dict[str, float] | None = None, ignore=(),
                 regions: int = 1):
        self.labels = tuple(labels)
        if not isinstance(min_count, int) or min_count < 1:
            raise InputError(f"the persistence count must be a whole number >= 1; "
                             f"found {min_count!r}")
        class_thresholds = dict(class_thresholds or {})
        for value in [threshold, *class_thresholds.values()]:
            if not 0.0 <= value <= 1.0:
                raise InputError(f"confidence thresholds must be in [0, 1]; found {value}")
        unknown = sorted((set(class_thresholds) | set(ignore)) - set(self.labels))
        if unknown:
            raise InputError(f"unknown class name(s) {unknown}; this model's classes are: "
                             f"{', '.join(self.labels)}")
        self.min_count = min_count
        # plain lists: this runs once per frame and region, where numpy scalars cost more
        # than the arithmetic
        self.thresholds = [float(class_thresholds.get(l, threshold)) for l in self.labels]
        self.ignored = [l in set(ignore) for l in self.labels]
        self.resize(regions)

    def resize(self, regions: int) -> None:
        self._cls = [-1] * regions
        self._count = [0] * regions
        self._sum = [0.0] * regions

    def reset(self) -> None:
        self.resize(len(self._cls))

    def top(self, probs: np.ndarray) -> tuple[int, float]:
        """Top class and its confidence; class -1 when under its threshold."""
        index = int(probs.argmax())
        confidence = float(probs[index])
        return (index if confidence >= self.thresholds[index] else -1), confidence

    def update(self, region: int, probs: np.ndarray) -> Persisted | None:
        index, confidence = self.top(probs)
        if index != self._cls[region] or index < 0:
            self._cls[region] = index
            self._count[region] = 0
            self._sum[region] = 0.0
        if index < 0:
            return None
        count = self._count[region] = self._count[region] + 1
        self._sum[region] += confidence
        if count != self.min_count or self.ignored[index]:
            return None
        return Persisted(self.labels[index], index, confidence,
                         self._sum[region] / count, count)
