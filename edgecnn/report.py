"""Pictures and JSON a person reads after training or evaluation."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_confusion(metrics: dict, path: Path, title: str = "Confusion matrix") -> Path:
    """Row-normalised confusion matrix (each row is the share of a true class, so a small
    class is as visible as a big one) with the counts and percentages in the cells."""
    plt = _pyplot()
    labels = metrics["labels"]
    matrix = np.asarray(metrics["confusion"])
    support = matrix.sum(axis=1, keepdims=True) if matrix.size else matrix
    shares = np.divide(matrix, support, out=np.zeros(matrix.shape, dtype=float),
                       where=support > 0)
    size = max(4.0, 0.8 * len(labels) + 2.5)
    fig, ax = plt.subplots(figsize=(size, size))
    image = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)),
                  [f"{label} ({int(n)})" for label, n in zip(labels, support.ravel())])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true (samples)")
    balanced = metrics.get("balanced_accuracy")
    subtitle = f"accuracy {metrics['accuracy'] * 100:.2f} % (n={metrics['n']})"
    if balanced is not None:
        subtitle += f", balanced {balanced * 100:.2f} %"
    if metrics.get("majority_class") is not None and len(labels) > 1:
        subtitle += (f"; always '{metrics['majority_class']}': "
                     f"{metrics['majority_baseline'] * 100:.2f} %")
    ax.set_title(f"{title}\n{subtitle}")
    for (i, j), value in np.ndenumerate(matrix):
        if value == 0 and i != j:
            continue
        # a class without samples here: not measured (a dash, as in the table), not 0 %
        text = "-" if not support[i, 0] else f"{value}\n{shares[i, j] * 100:.0f}%"
        ax.text(j, i, text, ha="center", va="center",
                color="white" if shares[i, j] > 0.5 else "black", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_curves(history: dict, path: Path) -> Path:
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    epochs = np.arange(1, len(history.get("loss", [])) + 1)
    for key, axis in (("loss", left), ("accuracy", right)):
        if key in history:
            axis.plot(epochs, history[key], label=f"train {key}")
        if f"val_{key}" in history:
            axis.plot(epochs, history[f"val_{key}"], label=f"validation {key}")
        axis.set_xlabel("epoch")
        axis.set_title(key)
        axis.grid(alpha=0.3)
        axis.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_json(data: dict, path: str | Path) -> Path:
    from edgecnn.deploy.options import refuse_replacing_events

    path = Path(path)
    refuse_replacing_events(path, "--json")
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(data, indent=2, sort_keys=False) + "\n"
    if path.exists() and not path.is_file():   # /dev/stdout, a FIFO: written as it is
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
        return path
    # written beside and renamed: a full disk leaves the old file (or none), never half
    temporary = path.with_name(f".{path.name}.partial")
    try:
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def write_report(report_dir: Path, metrics: dict, history: dict | None = None,
                 title: str = "Validation") -> dict[str, str]:
    """confusion.png, curves.png (if a history is given), metrics.json in ``report_dir``."""
    report_dir.mkdir(parents=True, exist_ok=True)
    files = {"metrics": str(write_json(metrics, report_dir / "metrics.json")),
             "confusion": str(plot_confusion(metrics, report_dir / "confusion.png",
                                             f"{title} confusion matrix"))}
    if history:
        write_json(history, report_dir / "history.json")
        files["curves"] = str(plot_curves(history, report_dir / "curves.png"))
    return files
