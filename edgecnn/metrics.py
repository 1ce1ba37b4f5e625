"""Classification metrics in the one JSON shape every command writes.

Keys: ``accuracy`` (0-1), ``n`` (samples evaluated), ``skipped`` (unreadable inputs),
``labels``, ``per_class`` ({label: precision, recall, f1, support}) and ``confusion``
(rows = true class, columns = predicted, in ``labels`` order).
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
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[label] = {"precision": round(precision, 6), "recall": round(recall, 6),
                            "f1": round(f1, 6), "support": support}
    n = int(len(y_true))
    return {
        "accuracy": float((y_true == y_pred).mean()) if n else 0.0,
        "n": n,
        "skipped": int(skipped),
        "labels": labels,
        "per_class": per_class,
        "confusion": matrix.tolist(),
    }


def format_metrics(metrics: dict) -> str:
    """A short human-readable table of accuracy and per-class precision/recall."""
    lines = [f"accuracy {metrics['accuracy'] * 100:.2f} % on {metrics['n']} samples"
             f" ({metrics['skipped']} skipped)"]
    width = max(len(label) for label in metrics["per_class"])
    lines.append(f"  {'class':<{width}}  precision  recall  support")
    for label, row in metrics["per_class"].items():
        lines.append(f"  {label:<{width}}  {row['precision'] * 100:8.2f}%  "
                     f"{row['recall'] * 100:5.1f}%  {row['support']:7d}")
    return "\n".join(lines)
