"""Balanced metrics and the row-normalised confusion picture on an imbalanced result."""

import numpy as np
import pytest

from edgecnn.metrics import balanced_accuracy, classification_metrics, format_metrics
from edgecnn.report import write_report


def _imbalanced():
    # 90 "free" all right, 10 "crack" all called "free": 90 % accuracy, half the classes found.
    y_true = np.array([0] * 90 + [1] * 10)
    y_pred = np.zeros(100, dtype=int)
    return classification_metrics(y_true, y_pred, ["free", "crack"]), y_true, y_pred


def test_balanced_accuracy_and_macro_recall_expose_a_missed_minority_class():
    metrics, y_true, y_pred = _imbalanced()
    assert metrics["accuracy"] == pytest.approx(0.9)
    assert metrics["balanced_accuracy"] == pytest.approx(0.5)
    assert metrics["macro_recall"] == pytest.approx(0.5)
    assert metrics["per_class_recall"] == {"free": 1.0, "crack": 0.0}
    assert balanced_accuracy(y_true, y_pred, 2) == pytest.approx(0.5)
    for key in ("accuracy", "n", "skipped", "per_class", "confusion"):
        assert key in metrics
    assert "balanced accuracy 50.00 %" in format_metrics(metrics)


def test_a_label_without_samples_counts_in_macro_recall_not_in_balanced_accuracy():
    metrics = classification_metrics([0, 0, 1], [0, 0, 1], ["a", "b", "c"])
    assert metrics["balanced_accuracy"] == pytest.approx(1.0)
    assert metrics["macro_recall"] == pytest.approx(2 / 3)


def test_confusion_png_is_written_with_counts(tmp_path):
    cv2 = pytest.importorskip("cv2")
    metrics, _, _ = _imbalanced()
    files = write_report(tmp_path / "report", metrics)
    picture = cv2.imread(files["confusion"])
    assert picture is not None and picture.shape[0] > 200
    assert (tmp_path / "report" / "metrics.json").read_text().count("balanced_accuracy") == 1
