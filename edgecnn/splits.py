"""Validation splits that do not leak.

Images: stratified by class. Recordings: split by time inside each recording (the last part
of every recording is validation) so that overlapping windows never straddle the two sets;
a recording whose last fifth holds no whole window validates on its last window, and
recordings too short for even that are assigned whole, stratified by class.
"""

from __future__ import annotations

import numpy as np

from edgecnn.data.samples import LabelledSamples
from edgecnn.deploy.errors import DataError


def stratified_split(labels: np.ndarray, fraction: float, seed: int):
    rng = np.random.default_rng(seed)
    train, val = [], []
    for cls in np.unique(labels):
        index = np.flatnonzero(labels == cls)
        rng.shuffle(index)
        n_val = int(round(len(index) * fraction))
        if len(index) >= 2:
            n_val = min(max(n_val, 1), len(index) - 1)
        else:
            n_val = 0
        val.extend(index[:n_val])
        train.extend(index[n_val:])
    return np.sort(np.asarray(train, dtype=np.int64)), np.sort(np.asarray(val, dtype=np.int64))


def time_split(samples: LabelledSamples, window_length: int, fraction: float, seed: int):
    """Per recording: windows ending before the cut train, windows starting after it
    validate; windows across the cut are dropped."""
    sources = np.asarray(samples.sources)
    train, val = [], []
    whole = []
    for source in np.unique(sources):
        index = np.flatnonzero(sources == source)
        starts = samples.positions[index]
        length = int(starts.max()) + window_length
        cut = int(round(length * (1.0 - fraction)))
        in_train = index[starts + window_length <= cut]
        in_val = index[starts >= cut]
        if len(in_val) == 0:
            # a short recording (a few windows): its last window validates, so a class
            # recorded once, briefly, is still validated
            cut = int(starts.max())
            in_train = index[starts + window_length <= cut]
            in_val = index[starts >= cut]
        if len(in_train) == 0 or len(in_val) == 0:
            whole.append(source)
            continue
        train.extend(in_train)
        val.extend(in_val)
    if whole:  # short recordings: assign whole recordings, stratified by their class
        first = {s: np.flatnonzero(sources == s) for s in whole}
        rec_labels = np.asarray([samples.labels[first[s][0]] for s in whole])
        rec_train, rec_val = stratified_split(rec_labels, fraction, seed)
        for i in rec_train:
            train.extend(first[whole[i]])
        for i in rec_val:
            val.extend(first[whole[i]])
    return np.sort(np.asarray(train, dtype=np.int64)), np.sort(np.asarray(val, dtype=np.int64))


def validation_split(samples: LabelledSamples, fraction: float, seed: int,
                     window_length: int | None = None):
    if not 0.0 < fraction < 1.0:
        raise DataError(f"validation fraction must be between 0 and 1; found {fraction}")
    if samples.kind == "signal":
        train, val = time_split(samples, window_length, fraction, seed)
    else:
        train, val = stratified_split(samples.labels, fraction, seed)
    if len(val) == 0 or len(train) == 0:
        raise DataError(f"too few samples ({len(samples)}) to hold out a validation split")
    return train, val
