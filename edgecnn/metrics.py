"""Classification metrics in the one JSON shape every command writes.

Keys: ``accuracy`` (0-1), ``n`` (samples evaluated), ``skipped`` (unreadable inputs),
``labels``, ``per_class`` ({label: precision, recall, f1, support}) and ``confusion``
(rows = true class, columns = predicted, in ``labels`` order). On imbalanced data accuracy
hides a class that is never found, so there are also ``balanced_accuracy`` and
``macro_recall`` (both the mean recall over the classes present in the data), ``macro_f1``
and ``per_class_recall`` ({label: recall}). A class without samples here has recall
``None`` (null in JSON): it was not measured, which is not the same as never found; a
class the model never answered has precision ``None`` for the same reason.
``majority_class`` / ``majority_baseline`` say what always answering the most frequent
true class would score on the same data: the floor a model must beat on imbalanced data.
"""

from __future__ import annotations

import numpy as np


def confusion_matrix(y_true, y_pred, num_classes: int) -> np.ndarray:
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return matrix


def classification_metrics(y_true, y_pred, labels, skipped: int = 0) -> dict:
    labels = list(labels)
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    matrix = confusion_matrix(y_true, y_pred, len(labels))
    per_class = {}
    for i, label in enumerate(labels):
        tp = int(matrix[i, i])
        predicted = int(matrix[:, i].sum())
        support = int(matrix[i].sum())
        precision = tp / predicted if predicted else None   # never answered: unmeasured
        recall = tp / support if support else None
        if not support and not predicted:   # neither in the data nor answered: unmeasured
            f1 = None
        elif precision is not None and recall is not None and precision + recall:
            f1 = 2 * precision * recall / (precision + recall)
        else:                                 # missed every sample, or only false alarms
            f1 = 0.0
        per_class[label] = {"precision": None if precision is None else round(precision, 6),
                            "recall": None if recall is None else round(recall, 6),
                            "f1": None if f1 is None else round(f1, 6), "support": support}
    n = int(len(y_true))
    supports = matrix.sum(axis=1)
    majority = int(np.argmax(supports)) if n else 0
    # Macro averages run over the classes the data holds (a held-out folder of some of the
    # model's classes is not scored 0 on the others); F1 also over classes only predicted.
    present = [row["recall"] for row in per_class.values() if row["support"]]
    scored = [row["f1"] for i, row in enumerate(per_class.values())
              if row["support"] or matrix[:, i].sum()]
    return {
        "accuracy": float((y_true == y_pred).mean()) if n else 0.0,
        "balanced_accuracy": round(float(np.mean(present)), 6) if present else 0.0,
        "macro_recall": round(float(np.mean(present)), 6) if present else 0.0,
        "macro_f1": round(float(np.mean(scored)), 6) if scored else 0.0,
        "majority_class": labels[majority] if labels else None,
        "majority_baseline": round(float(supports[majority]) / n, 6) if n else 0.0,
        "n": n,
        "skipped": int(skipped),
        "labels": labels,
        "per_class": per_class,
        "per_class_recall": {label: row["recall"] for label, row in per_class.items()},
        "confusion": matrix.tolist(),
    }


def balanced_accuracy(y_true, y_pred, num_classes: int) -> float:
    """Mean recall over the classes present in ``y_true`` (early stopping, fallback checks)."""
    matrix = confusion_matrix(y_true, y_pred, num_classes)
    support = matrix.sum(axis=1)
    present = support > 0
    if not present.any():
        return 0.0
    return float((np.diag(matrix)[present] / support[present]).mean())


def baseline_line(metrics: dict) -> str | None:
    """What always answering the majority class scores, and a warning when the model does
    not beat it (None for metrics without the baseline or with one class)."""
    baseline, majority = metrics.get("majority_baseline"), metrics.get("majority_class")
    present = sum(1 for row in metrics.get("per_class", {}).values() if row["support"])
    if baseline is None or majority is None or present < 2:
        return None
    line = (f"majority baseline {baseline * 100:.2f} % (always '{majority}'; balanced "
            f"{100 / present:.2f} %)")
    if round(metrics["accuracy"], 6) <= baseline:     # the baseline is stored rounded
        line += ("; the accuracy does not beat it"
                 + (" (the balanced accuracy does: the model trades plain accuracy for "
                    "the small classes)" if metrics.get("balanced_accuracy", 0)
                    > 1 / present + 0.05 else ""))
    return line


def format_metrics(metrics: dict) -> str:
    """A short human-readable table of accuracy and per-class precision/recall."""
    skipped = metrics["skipped"]
    lines = [f"accuracy {metrics['accuracy'] * 100:.2f} % on {metrics['n']} samples"
             + (f" ({skipped} file(s) of the data skipped: unreadable, too short ...; "
                "each named above)" if skipped else "")]
    if "balanced_accuracy" in metrics:
        lines.append(f"balanced accuracy {metrics['balanced_accuracy'] * 100:.2f} %, "
                     f"macro recall {metrics['macro_recall']:.3f}")
    baseline = baseline_line(metrics)
    if baseline is not None:
        lines.append(baseline)
    absent = [label for label, row in metrics["per_class"].items() if not row["support"]]
    if absent and len(absent) < len(metrics["per_class"]):
        lines.append(f"{len(absent)} of the model's classes "
                     f"{'has' if len(absent) == 1 else 'have'} no samples here: "
                     f"{', '.join(absent)} (left out of the macro averages)")
    width = max(len("class"), *(len(label) for label in metrics["per_class"]))
    lines.append(f"  {'class':<{width}}  precision  recall  support")
    for label, row in metrics["per_class"].items():
        recall = "    -" if row["recall"] is None else f"{row['recall'] * 100:5.1f}%"
        precision = "        -" if row["precision"] is None \
            else f"{row['precision'] * 100:8.2f}%"
        lines.append(f"  {label:<{width}}  {precision}  {recall}  {row['support']:7d}")
    return "\n".join(lines)
