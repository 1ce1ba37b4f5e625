"""The one thing every loader returns: labelled raw samples plus what was skipped.

Images stay uint8 at their native size (the InputSpec's preprocessing turns them into
tensors); signals are windows of raw samples already resampled to the task's sample rate.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgecnn.deploy.errors import DataError


@dataclass
class Skipped:
    """A file a loader could not use, and why."""

    path: str
    reason: str


@dataclass
class LabelledSamples:
    """``items[i]`` has class ``labels[i]`` (index into ``class_names``).

    kind      -- "image" or "signal"
    items     -- list of uint8 images (H x W or H x W x 3, spec colour) or a float32
                 (N, window_length) array of signal windows
    sources   -- the file each sample came from (relative to the dataset root)
    positions -- for signals, the start sample of each window in its recording (at the
                 task rate); 0 for images. Training splits recordings by time with it.
    skipped   -- unreadable files, each with the reason (already warned about)
    fingerprint -- sha256 over the files used (path, size, content hash)
    bit_depth -- for images, the bits of data 16-bit files were read as (None: all 8-bit)
    native_features -- for images kept as working copies (``images.working_copy``), their
                 source-health features at native size (None where an item is native)
    """

    kind: str
    items: list | np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    sources: list[str]
    positions: np.ndarray
    skipped: list[Skipped] = field(default_factory=list)
    fingerprint: str = ""
    sample_rate: float | None = None
    bit_depth: int | None = None
    native_features: list | None = None

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        self.positions = np.asarray(self.positions, dtype=np.int64)
        n = len(self.labels)
        if len(self.items) != n or len(self.sources) != n or len(self.positions) != n:
            raise ValueError("items, labels, sources and positions must have one entry per sample")

    def __len__(self) -> int:
        return len(self.labels)

    def counts(self) -> dict[str, int]:
        return {name: int((self.labels == i).sum()) for i, name in enumerate(self.class_names)}

    def require_trainable(self, root: str | Path) -> None:
        """An empty dataset or a single class cannot train a classifier."""
        if len(self) == 0:
            raise DataError(no_samples_message(root, len(self.skipped), self.kind))
        present = [name for name, count in self.counts().items() if count > 0]
        if len(present) < 2:
            raise DataError(f"{root} holds only one class ({', '.join(present)}); "
                            "a classifier needs at least two")

    def subset(self, index) -> "LabelledSamples":
        index = np.asarray(index, dtype=np.int64)
        items = (self.items[index] if isinstance(self.items, np.ndarray)
                 else [self.items[i] for i in index])
        return LabelledSamples(self.kind, items, self.labels[index], self.class_names,
                               [self.sources[i] for i in index], self.positions[index],
                               list(self.skipped), self.fingerprint, self.sample_rate,
                               self.bit_depth, None if self.native_features is None else
                               [self.native_features[i] for i in index])


def fingerprint_files(root: Path, files) -> str:
    """sha256 over (relative path, size, content sha256) of every file, in sorted order."""
    digest = hashlib.sha256()
    for path in sorted(Path(f) for f in files):
        rel = path.relative_to(root).as_posix() if path.is_relative_to(root) else path.name
        content = hashlib.sha256(path.read_bytes()).hexdigest()
        # a name that is not UTF-8 (from a Windows share or a zip) hashes as its bytes
        digest.update(f"{rel}\0{path.stat().st_size}\0{content}\n".encode(
            "utf-8", "surrogateescape"))
    return digest.hexdigest()


def no_samples_message(root, skipped: int, kind: str | None = None) -> str:
    """"No usable samples", with what the folder does hold: images given to a recordings
    task (or the reverse; ``kind``: what the task reads) say so, so the fix (--task) is in
    the message; files of the right kind that were all skipped point at the reasons."""
    from collections import Counter
    from itertools import islice

    from edgecnn.deploy.preprocess import IMAGE_SUFFIXES
    from edgecnn.deploy.recordings import RECORDING_SUFFIXES

    text = f"no usable samples found in {root} ({skipped} files skipped)"
    base = Path(root)
    files = [base] if base.is_file() else \
        [p for p in islice(base.rglob("*"), 20000) if p.is_file()
         and p.name.lower() != "labels.csv"] if base.is_dir() else []
    found = Counter(p.suffix.lower() or "(no suffix)" for p in files)
    if not found:
        return text + ": it holds no files"
    images = sum(n for s, n in found.items() if s in IMAGE_SUFFIXES)
    recordings = sum(n for s, n in found.items() if s in RECORDING_SUFFIXES)
    shown = ", ".join(f"{n} {s}" for s, n in found.most_common(4))
    wrong_kind = (kind == "signal" and images and not recordings) or \
        (kind == "image" and recordings and not images) or \
        (kind is None and (images or recordings))
    if wrong_kind:
        hint = ("; image tasks (images, neu, mnist) read pictures, cwru/vibration read "
                "recordings: is --task right? (the layouts: edgecnn train --help)")
    elif skipped:
        hint = "; the reasons the files were skipped are above"
    else:
        hint = ""
    return f"{text}; it holds {shown} files{hint}"
