"""Comparing a model's probabilities with a reference's: the numbers behind every verdict.

Export compares each file with the Keras model on the calibration tensors; parity compares
each format with the float reference on labelled data. Both use ``compare`` and
``Thresholds`` so "within 0.5 pp and 99 % agreement" means the same thing everywhere.

Both are judged beyond ties: a flip on a sample where the reference's top two
probabilities lie within ``TIE_MARGIN`` is counted (``tie_flips``) and shown, but is judged
as if it had gone the reference's way (``agreement_beyond_ties``, ``drop_beyond_ties_pp``)
-- the reference's answer there is itself a coin flip, whose expected effect on accuracy
is nil, and on a few hundred samples one or two of them would otherwise decide. The
reported accuracies count every sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgecnn.deploy.errors import InputError
from edgecnn.export.defaults import MAX_DROP_PP, MAX_UNDECIDED, MIN_AGREEMENT, TIE_MARGIN


@dataclass(frozen=True)
class Thresholds:
    """Parity thresholds: accuracy drop in percentage points, top-1 agreement as 0-1."""

    max_drop: float = MAX_DROP_PP
    min_agreement: float = MIN_AGREEMENT
    tie_margin: float = TIE_MARGIN   # 0: every flip counts against int8

    def __post_init__(self) -> None:
        if not 0 <= self.tie_margin <= 0.5:
            raise InputError(f"tie margin must be 0-0.5 (0 counts every flip); found "
                             f"{self.tie_margin}")
        if not 0 <= self.max_drop <= 100:
            raise InputError(f"max drop must be 0-100 percentage points; found {self.max_drop}")
        if not 0 <= self.min_agreement <= 1:
            raise InputError(f"min agreement must be a fraction 0-1 (0.99 = 99 %); "
                             f"found {self.min_agreement}")

    def single_flip(self, samples: int) -> str | None:
        """A note when one sample of ``samples`` weighs more than the allowed drop: a
        single flip then fails parity, so more held-out data should confirm it."""
        if not samples or 100.0 / samples <= self.max_drop:
            return None
        return (f"note: one sample is {100.0 / samples:.2f} pp of {samples}, more than the "
                f"{self.max_drop:g} pp drop allowed: a single flip fails parity; confirm on "
                "more held-out data")

    def failures(self, stats: dict) -> list[str]:
        """Why ``stats`` (from ``compare``) breaks the thresholds; empty when it passes."""
        problems = []
        drop = stats.get("drop_beyond_ties_pp", stats.get("drop_pp"))
        if drop is not None and drop > self.max_drop + 1e-9:
            shown = f"{stats['drop_pp']:.2f} pp"
            if stats.get("tie_flips"):
                shown += f" ({drop:.2f} pp beyond near-ties)"
            problems.append(f"accuracy drop {shown} > {self.max_drop:g} pp")
        judged = stats.get("agreement_beyond_ties", stats["agreement"])
        if judged < self.min_agreement - 1e-12:
            problems.append(f"top-1 agreement {agreement_text(stats)} < "
                            f"{self.min_agreement * 100:g} %")
        if problems and not stats.get("ties_excused", True):
            problems.append(f"near-ties not excused: the float model's top two lie within "
                            f"{stats['tie_margin']:g} on {stats['undecided'] * 100:.0f} % of "
                            f"the samples (more than {MAX_UNDECIDED:.0%}: it is undecided, "
                            "not int8)")
        return problems


def agreement_text(stats: dict) -> str:
    """"99.43 %", or "98.86 % (99.43 % beyond 1 near-tie)" when flips fell on ties."""
    text = f"{stats['agreement'] * 100:.2f} %"
    ties = stats.get("tie_flips") or 0
    if ties:
        text += (f" ({stats['agreement_beyond_ties'] * 100:.2f} % beyond {ties} near-tie"
                 f"{'s' if ties > 1 else ''} of the float model, margin < "
                 f"{stats.get('tie_margin', TIE_MARGIN):g})")
    return text


def compare(reference: np.ndarray, probs: np.ndarray, labels: np.ndarray | None = None,
            tie_margin: float = TIE_MARGIN) -> dict:
    """max/mean |delta probability|, top-1 agreement and (with labels) both accuracies."""
    reference = np.asarray(reference, dtype=np.float64)
    probs = np.asarray(probs, dtype=np.float64)
    if reference.shape != probs.shape:
        raise InputError(f"outputs differ in shape: reference {reference.shape}, "
                         f"model {probs.shape}")
    diff = np.abs(reference - probs)
    ref_top = reference.argmax(axis=1)
    top = probs.argmax(axis=1)
    flips = ref_top != top
    undecided = 0.0
    if reference.shape[1] > 1 and len(reference):
        ordered = np.sort(reference, axis=1)
        close = ordered[:, -1] - ordered[:, -2] < tie_margin
        undecided = float(close.mean())
        # a coin flip of the float model is excused only where it is rare: a model that
        # is undecided on many samples (near uniform, collapsed) is judged on every flip
        ties = flips & close if undecided <= MAX_UNDECIDED else np.zeros(len(top), dtype=bool)
    else:
        ties = np.zeros(len(top), dtype=bool)
    stats = {"samples": int(len(probs)),
             "max_abs_diff": float(diff.max()) if diff.size else 0.0,
             "mean_abs_diff": float(diff.mean()) if diff.size else 0.0,
             "agreement": float((ref_top == top).mean()) if len(top) else 1.0,
             "tie_flips": int(ties.sum()), "tie_margin": tie_margin,
             "undecided": round(undecided, 4), "ties_excused": undecided <= MAX_UNDECIDED,
             "agreement_beyond_ties": float(1.0 - (flips & ~ties).mean()) if len(top) else 1.0,
             "accuracy": None, "reference_accuracy": None, "drop_pp": None}
    if labels is not None and len(labels):
        labels = np.asarray(labels)
        stats["accuracy"] = float((top == labels).mean())
        stats["reference_accuracy"] = float((ref_top == labels).mean())
        stats["drop_pp"] = (stats["reference_accuracy"] - stats["accuracy"]) * 100.0
        right, ref_right = top == labels, ref_top == labels
        net_lost = int((ref_right & ~right & ~ties).sum()) - int((right & ~ref_right & ~ties).sum())
        stats["drop_beyond_ties_pp"] = net_lost / len(labels) * 100.0
    return stats
