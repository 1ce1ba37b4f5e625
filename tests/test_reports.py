"""Balanced metrics and the row-normalised confusion picture on an imbalanced result."""

import json

import numpy as np
import pytest

from edgecnn.metrics import balanced_accuracy, baseline_line, classification_metrics, format_metrics
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


def test_the_majority_baseline_is_stated_and_a_model_that_does_not_beat_it_is_told():
    metrics, _, _ = _imbalanced()   # always "free": exactly the baseline
    assert metrics["majority_class"] == "free"
    assert metrics["majority_baseline"] == pytest.approx(0.9)
    text = format_metrics(metrics)
    assert "majority baseline 90.00 % (always 'free'; balanced 50.00 %)" in text
    assert "does not beat it" in text and "trades plain accuracy" not in text
    # a class-balanced model: below the baseline, but it finds the small class
    y_true = [0] * 90 + [1] * 10
    y_pred = [0] * 75 + [1] * 15 + [1] * 9 + [0]
    traded = classification_metrics(y_true, y_pred, ["free", "crack"])
    assert traded["accuracy"] == pytest.approx(0.84)
    assert "trades plain accuracy for the small classes" in baseline_line(traded)
    beaten = classification_metrics(y_true, [0] * 90 + [1] * 9 + [0], ["free", "crack"])
    assert baseline_line(beaten) == "majority baseline 90.00 % (always 'free'; balanced 50.00 %)"
    assert baseline_line(classification_metrics([0, 0], [0, 0], ["a", "b"])) is None
    # a third each, always answering one class: the baseline is stored rounded (0.333333)
    thirds = classification_metrics([0, 1, 2] * 5, [0] * 15, ["a", "b", "c"])
    assert "does not beat it" in baseline_line(thirds)


def test_a_label_without_samples_counts_in_no_macro_average():
    # a held-out folder of some of the model's classes, all answered right
    metrics = classification_metrics([0, 0, 1], [0, 0, 1], ["a", "b", "c"])
    assert metrics["balanced_accuracy"] == pytest.approx(1.0)
    assert metrics["macro_recall"] == pytest.approx(1.0)
    assert metrics["macro_f1"] == pytest.approx(1.0)
    # a class only predicted still costs F1 (its precision is 0)
    wrong = classification_metrics([0, 0, 1], [0, 2, 1], ["a", "b", "c"])
    assert wrong["macro_recall"] == pytest.approx(0.75)
    assert wrong["macro_f1"] == pytest.approx((2 * 0.5 / 1.5 + 1 + 0) / 3)
    assert "no samples here: c" in format_metrics(metrics)
    # its recall was not measured: null in the JSON, a dash in the table, not 0 %
    assert metrics["per_class"]["c"]["recall"] is None
    assert metrics["per_class_recall"] == {"a": 1.0, "b": 1.0, "c": None}
    assert json.loads(json.dumps(metrics))["per_class_recall"]["c"] is None
    row_c = [line for line in format_metrics(metrics).splitlines() if line.strip().startswith("c ")]
    assert "0.0%" not in row_c[0] and "-" in row_c[0]
    # never answered and never present: its precision was not measured either
    assert metrics["per_class"]["c"]["precision"] is None and "0.00%" not in row_c[0]
    assert wrong["per_class"]["c"]["precision"] == 0.0           # answered, never right
    assert metrics["per_class"]["c"]["f1"] is None and wrong["per_class"]["c"]["f1"] == 0.0
    assert "skipped" not in format_metrics(metrics)
    assert "(2 file(s) of the data skipped: unreadable, too short ...; each named above)" \
        in format_metrics(classification_metrics([0, 1], [0, 1], ["a", "b"], skipped=2))


def test_confusion_png_is_written_with_counts(tmp_path):
    cv2 = pytest.importorskip("cv2")
    metrics, _, _ = _imbalanced()
    files = write_report(tmp_path / "report", metrics)
    picture = cv2.imread(files["confusion"])
    assert picture is not None and picture.shape[0] > 200
    assert (tmp_path / "report" / "metrics.json").read_text().count("balanced_accuracy") == 1


def test_an_output_path_that_cannot_be_written_is_one_line_exit_2(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    calib = Path(__file__).resolve().parents[1] / "calibration_data" / "neu"
    blocker = tmp_path / "a file"
    blocker.write_text("not a folder")
    for option in ("--json", "--report"):
        result = subprocess.run(
            [sys.executable, "-c", "from edgecnn.cli import main; main()", "eval", "neu",
             "--data", str(calib), option, str(blocker / "out")],
            capture_output=True, text=True, timeout=300)
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
        # --json is checked before the evaluation runs; --report when it is written
        assert (f"error: cannot write --json {blocker / 'out'}" if option == "--json" else
                f"error: cannot write or read {blocker}") in result.stderr
