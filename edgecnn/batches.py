"""Training batches: raw samples, augmented per epoch in the raw domain, then preprocessed
with the model's InputSpec (``edgecnn.deploy.preprocess``, the one implementation).

Deterministic: the order of epoch e and the draws of batch b come from (seed, e, b), so the
result does not depend on which worker thread builds which batch.
"""

from __future__ import annotations

import numpy as np

from edgecnn.augment import augment_batch
from edgecnn.deploy.preprocess import preprocess_images, preprocess_windows
from edgecnn.deploy.spec import InputSpec


def preprocess_items(items, spec: InputSpec) -> np.ndarray:
    """Raw images or windows -> one float32 batch, through ``edgecnn.deploy.preprocess``."""
    if spec.kind == "image":
        return preprocess_images(items, spec)
    return preprocess_windows(np.asarray(items), spec)


def training_batches(items, labels: np.ndarray, spec: InputSpec, *, batch_size: int,
                     families: tuple[str, ...], strength: float, seed: int,
                     tensors: np.ndarray | None = None, workers: int = 2):
    """A ``keras.utils.PyDataset`` of (x, y) batches over ``items`` (raw training samples).

    Without families the precomputed ``tensors`` (if given) are only shuffled per epoch.
    """
    import keras

    labels = np.asarray(labels)
    sample_rate = spec.signal.sample_rate if spec.kind == "signal" else 1.0

    class Batches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__(workers=workers if families else 1, use_multiprocessing=False)
            self.epoch = 0
            self._order()

        def _order(self):
            self.order = np.random.default_rng([seed, self.epoch]).permutation(len(labels))

        def __len__(self):
            return int(np.ceil(len(labels) / batch_size))

        def __getitem__(self, index):
            chosen = self.order[index * batch_size:(index + 1) * batch_size]
            if not families and tensors is not None:
                return tensors[chosen], labels[chosen]
            raw = [items[i] for i in chosen]
            if families:
                rng = np.random.default_rng([seed, self.epoch, index])
                raw = augment_batch(raw, spec.kind, families, strength, rng, sample_rate)
            return preprocess_items(raw, spec), labels[chosen]

        def on_epoch_end(self):
            self.epoch += 1
            self._order()

    return Batches()
