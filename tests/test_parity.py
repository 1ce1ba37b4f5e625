"""``edgecnn parity``: float vs quantized on the same real images, exit codes, layer blame,
and refusal of a tampered bundle."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgecnn.cli import main
from edgecnn.deploy.errors import BundleError, InputError
from edgecnn.export.defaults import TIE_MARGIN

CALIB = Path(__file__).resolve().parents[1] / "calibration_data"
METRIC_KEYS = {"accuracy", "n", "skipped", "labels", "per_class", "confusion"}
PARITY_KEYS = {"delta_accuracy_pp", "agreement", "worst_class", "worst_class_delta_recall_pp",
               "mean_abs_delta_prob", "max_abs_delta_prob", "failures", "passed"}


def cli(*args) -> int:
    with pytest.raises(SystemExit) as stop:
        main([str(a) for a in args])
    return stop.value.code


def test_int8_matches_float_on_real_images(exported_bundle, tmp_path, capsys):
    """The shipped-style architecture, int8 vs float32 on the 120 real NEU images.

    On 120 images one flipped prediction is 0.83 pp and 0.83 % agreement, so the
    thresholds here allow one net flip (1 pp) and two disagreements (98 %); the default
    0.5 pp / 99 % are for validation sets of a few hundred images and up.
    """
    out, _, _ = exported_bundle
    report = tmp_path / "parity.json"
    assert cli("parity", out, "--data", CALIB / "neu", "--max-drop", "1",
               "--min-agreement", "0.98", "--json", report) == 0
    table = capsys.readouterr().out
    data = json.loads(report.read_text())
    assert data["passed"] and data["reference"] == "onnx"
    assert data["thresholds"] == {"max_drop_pp": 1.0, "min_agreement": 0.98,
                                  "tie_margin": TIE_MARGIN}
    assert set(data["formats"]) == {"onnx", "onnx-int8", "tflite", "tflite-fp16",
                                    "tflite-int8"}
    reference = data["formats"]["onnx"]
    assert reference["n"] == 120 and reference["accuracy"] > 0.8  # the model classifies
    for name, row in data["formats"].items():
        assert METRIC_KEYS | PARITY_KEYS <= set(row), name
        assert row["n"] == 120 and len(row["confusion"]) == 6
        assert row["passed"] and row["agreement"] >= 0.98, (name, row["agreement"])
        assert row["delta_accuracy_pp"] >= -1.0, (name, row["delta_accuracy_pp"])
    for name in ("onnx", "tflite", "tflite-fp16"):  # float formats agree exactly
        assert data["formats"][name]["agreement"] == 1.0
    for name in ("onnx-int8", "tflite-int8"):
        assert 0 < data["formats"][name]["mean_abs_delta_prob"] < 0.05
        assert f"\n{name} " in table
    assert "reference" in table and "FAIL" not in table and data["blame"] == {}
    assert not any("one sample is" in note for note in data["notes"])   # 0.83 pp <= 1 pp


def test_parity_notes_when_a_single_flip_would_fail_it():
    from edgecnn.export.verify import Thresholds

    assert Thresholds(max_drop=0.5).single_flip(120).startswith(
        "note: one sample is 0.83 pp of 120, more than the 0.5 pp drop allowed")
    assert Thresholds(max_drop=0.5).single_flip(200) is None
    assert Thresholds(max_drop=1.0).single_flip(120) is None


@pytest.fixture(scope="module")
def black_calibrated_bundle(trained_image_model_dir, tmp_path_factory):
    """The same model calibrated on all-black images: the int8 ranges cannot hold a real
    picture, so int8 collapses although export-time checks on the (black) calibration
    samples look fine."""
    root = tmp_path_factory.mktemp("bad") / "black calib"
    for label in ("crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale",
                  "scratches"):
        (root / label).mkdir(parents=True)
        for i in range(10):
            cv2.imwrite(str(root / label / f"{label}_{i}.png"), np.zeros((200, 200), np.uint8))
    out = root.parent / "bad bundle"
    with pytest.raises(SystemExit) as stop:
        main(["export", str(trained_image_model_dir), "--out", str(out), "--calib", str(root),
              "--formats", "onnx,onnx-int8,tflite,tflite-int8"])
    assert stop.value.code == 0
    return out


def test_bad_calibration_is_caught_with_layer_blame(black_calibrated_bundle, tmp_path, capsys):
    report = tmp_path / "bad.json"
    assert cli("parity", black_calibrated_bundle, "--data", CALIB / "neu",
               "--json", report) == 1
    captured = capsys.readouterr()
    assert "error: parity failed for onnx-int8, tflite-int8" in captured.err
    data = json.loads(report.read_text())
    assert not data["passed"]
    for name in ("onnx-int8", "tflite-int8"):
        row = data["formats"][name]
        assert not row["passed"] and row["agreement"] < 0.6 and row["delta_accuracy_pp"] < -20
        assert any("top-1 agreement" in f for f in row["failures"])
        blame = data["blame"][name]
        assert len(blame) >= 5 and blame[0]["label"].startswith("conv2d"), blame[:2]
        assert all({"label", "op", "sqnr_db", "rmse"} <= set(e) for e in blame)
        assert f"{name}: layers with the largest quantization error" in captured.out
    for name in ("onnx", "tflite"):
        assert data["formats"][name]["passed"]
    assert "conv2d_" in captured.out and "FAIL:" in captured.out
    # At the strictest thresholds the float32 TFLite file still passes: the gate measures
    # quantization, not float noise.
    assert cli("parity", black_calibrated_bundle, "--data", CALIB / "neu", "--formats",
               "tflite", "--max-drop", "0", "--min-agreement", "1") == 0


def test_tampered_bundle_is_refused(exported_bundle, tmp_path, capsys):
    from edgecnn.deploy.engine import open_engine

    out, _, _ = exported_bundle
    tampered = tmp_path / "tampered bundle"
    shutil.copytree(out, tampered)
    target = tampered / "model.int8.onnx"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    assert cli("parity", tampered, "--data", CALIB / "neu") == 2
    err = capsys.readouterr().err
    assert "model.int8.onnx does not match its manifest" in err and "refusing" in err
    with pytest.raises(BundleError, match="does not match its manifest"):
        open_engine(tampered, "onnx-int8")
    open_engine(tampered, "onnx")  # the untouched files still open


def test_parity_refuses_bad_thresholds_and_missing_reference(exported_bundle, tmp_path,
                                                             capsys):
    out, _, _ = exported_bundle
    assert cli("parity", out, "--data", CALIB / "neu", "--min-agreement", "99") == 2
    assert "fraction 0-1" in capsys.readouterr().err
    assert cli("parity", out, "--data", CALIB / "neu", "--formats", " , ") == 2
    assert "--formats names no format" in capsys.readouterr().err
    no_float = tmp_path / "int8 only"
    shutil.copytree(out, no_float)
    manifest = json.loads((no_float / "edgecnn.json").read_text())
    for name in ("onnx", "tflite", "tflite-fp16"):
        manifest["files"].pop(name)
    (no_float / "edgecnn.json").write_text(json.dumps(manifest))
    assert cli("parity", no_float, "--data", CALIB / "neu") == 2
    assert "has no float32 model" in capsys.readouterr().err


def _generic_recordings(folder: Path) -> None:
    """Real CWRU calibration signals saved as plain .npy files named ``<class>_<n>.npy``
    (no rate inside, no CWRU names): only --label-pattern and --sample-rate can read them."""
    from edgecnn.deploy.recordings import read_recording

    folder.mkdir(parents=True)
    names = {"normal": "normal_0_97.mat", "IR007": "12k_Drive_End_IR007_0_105.mat"}
    for label, name in names.items():
        samples = read_recording(CALIB / "cwru" / name).samples[:12000]
        np.save(folder / f"{label}_1.npy", samples.astype(np.float32))


def test_parity_reads_generic_recordings_with_loader_options(tmp_path, capsys):
    from runtime_helpers import make_signal_bundle

    bundle = make_signal_bundle(tmp_path / "signal bundle", labels=("normal", "IR007"))
    _generic_recordings(tmp_path / "my recordings")
    report = tmp_path / "parity.json"
    pattern = r"^(?P<label>[A-Za-z0-9]+)_\d+\.npy$"
    assert cli("parity", bundle, "--data", tmp_path / "my recordings", "--task", "vibration",
               "--label-pattern", pattern, "--sample-rate", "12000", "--json", report) == 0
    row = json.loads(report.read_text())["formats"]["onnx"]
    # windows of the spec's length at the default stride (a quarter window)
    assert row["n"] == 2 * ((12000 - 2048) // 512 + 1)
    capsys.readouterr()
    # without the options the generic files cannot be labelled: a usage error, no traceback
    assert cli("parity", bundle, "--data", tmp_path / "my recordings",
               "--task", "vibration") == 2
    assert "error:" in capsys.readouterr().err


def test_flips_on_near_ties_of_the_float_model_do_not_fail_agreement_but_are_shown():
    """100 samples, two int8 flips that lose two right answers: on samples where float
    itself is split 0.50 / 0.49 they are coin flips (agreement 98 %, drop 2 pp; beyond them
    100 % and 0 pp: passes); on confident samples they fail both thresholds."""
    from edgecnn.export.verify import Thresholds, agreement_text, compare

    reference = np.tile([[0.9, 0.05, 0.05]], (100, 1))
    labels = np.zeros(100, dtype=int)
    reference[:2] = [0.50, 0.49, 0.01]
    tied = reference.copy()
    tied[:2] = [0.49, 0.50, 0.01]
    stats = compare(reference, tied, labels)
    assert stats["agreement"] == pytest.approx(0.98) and stats["tie_flips"] == 2
    assert stats["agreement_beyond_ties"] == 1.0
    assert stats["drop_pp"] == pytest.approx(2.0) and stats["drop_beyond_ties_pp"] == 0.0
    assert Thresholds().failures(stats) == []
    assert agreement_text(stats) == ("98.00 % (100.00 % beyond 2 near-ties of the float "
                                     "model, margin < 0.02)")
    # --tie-margin 0: the user asks for every flip to count
    strict = Thresholds(tie_margin=0.0)
    assert strict.failures(compare(reference, tied, labels, strict.tie_margin)) == [
        "accuracy drop 2.00 pp > 0.5 pp", "top-1 agreement 98.00 % < 99 %"]
    with pytest.raises(InputError, match="tie margin must be 0-0.5"):
        Thresholds(tie_margin=-1)
    mixed = tied.copy()
    mixed[2] = [0.05, 0.9, 0.05]    # one confident flip besides the two ties
    assert Thresholds().failures(compare(reference, mixed, labels)) == [
        "accuracy drop 3.00 pp (1.00 pp beyond near-ties) > 0.5 pp"]
    confident = reference.copy()
    confident[2:4] = [0.05, 0.9, 0.05]
    stats = compare(reference, confident, labels)
    assert stats["tie_flips"] == 0 and stats["agreement_beyond_ties"] == pytest.approx(0.98)
    assert Thresholds().failures(stats) == ["accuracy drop 2.00 pp > 0.5 pp",
                                            "top-1 agreement 98.00 % < 99 %"]


def test_near_ties_are_not_excused_for_a_float_model_undecided_on_most_samples():
    from edgecnn.export.verify import Thresholds, compare

    rng = np.random.default_rng(0)
    flat = np.full((48, 6), 1 / 6) + rng.normal(0, 1e-3, (48, 6))   # a collapsed model
    flat /= flat.sum(axis=1, keepdims=True)
    stats = compare(flat, np.roll(flat, 1, axis=1), np.zeros(48, int))
    assert stats["agreement"] == 0.0 and stats["undecided"] == 1.0
    assert stats["agreement_beyond_ties"] == 0.0 and not stats["ties_excused"]
    failures = Thresholds().failures(stats)
    assert any("near-ties not excused" in f for f in failures)
    # one coin flip among decided samples is still excused
    sure = np.eye(6)[np.arange(48) % 6] * 0.9 + 0.1 / 6
    sure[0] = [0.41, 0.40, 0.05, 0.05, 0.05, 0.04]
    flipped = sure.copy()
    flipped[0] = [0.40, 0.41, 0.05, 0.05, 0.05, 0.04]
    stats = compare(sure, flipped, np.arange(48) % 6)
    assert stats["tie_flips"] == 1 and stats["ties_excused"] and not Thresholds().failures(stats)


def test_an_int8_file_that_fails_even_with_layers_float_lists_them_in_the_manifest(tmp_path):
    from types import SimpleNamespace

    from edgecnn.export.blame import LayerError, settle
    from edgecnn.export.manifest import Written

    errors = [LayerError(f"n{i}", f"layer {i}", "Conv", 20.0, 0.1, 1.0, 1.0 - i / 10)
              for i in range(3)]
    said = []
    context = SimpleNamespace(check=lambda work, fmt: ({"agreement": 0.9, "drop_pp": 3.0},
                                                       ["agreement 90 % < 99 %"]),
                              judged_on="the validation split", log=said.append)
    written = Written(tmp_path / "model.int8.onnx")
    settle(context, "onnx-int8", tmp_path, True, lambda nodes: tmp_path, lambda: errors,
           written)
    assert written.float_nodes == ["n0", "n1", "n2"]       # what the file keeps float
    limited = Written(tmp_path / "model.int8.onnx")
    settle(context, "onnx-int8", tmp_path, "limited", lambda nodes: tmp_path, lambda: errors,
           limited)
    assert limited.float_nodes == ["n0", "n1"]             # two kept float, then the limit


@pytest.mark.parametrize("flags", [{"avx2", "fma"}, {"avx2", "avx512_vnni"}])
def test_full_8_bit_int8_is_judged_as_written_where_the_cpu_saturates_it(
        exported_bundle, flags, monkeypatch):
    """On x86 without VNNI ONNX Runtime's fused int8 kernels saturate 8-bit weights: export
    and parity judge such a file with the reference kernels (what VNNI and ARM compute) and
    parity notes what --format would give here; with VNNI the fused kernels are judged."""
    from edgecnn.deploy import hosts
    from edgecnn.export.exporter import _reference_kernels
    from edgecnn.export.parity import run_parity

    monkeypatch.setattr(hosts.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(hosts, "cpu_flags", lambda: frozenset(flags))
    out, _, _ = exported_bundle
    saturates = "avx512_vnni" not in flags
    lines: list[str] = []
    chosen = _reference_kernels({"onnx-int8": {"reduce_range": False}}, lines.append)
    assert chosen == (("onnx-int8",) if saturates else ()) and bool(lines) == saturates
    assert _reference_kernels({"onnx-int8": {"reduce_range": True}}, lines.append) == ()
    assert _reference_kernels({"tflite-int8": {}}, lines.append) == ()

    result = run_parity(out, CALIB / "neu", formats="onnx-int8", blame=False,
                        log=lambda line: None)
    row = result.rows["onnx-int8"]
    notes = [n for n in result.notes if "reference int8 kernels" in n]
    if saturates:
        assert row["kernels"] == "reference" and len(notes) == 1
        assert "--format onnx-int8 gives top-1 agreement" in notes[0]
        assert "--reduce-range" in notes[0]
        assert row["agreement"] >= 0.99    # the test model's file holds parity as written
    else:
        assert "kernels" not in row and not notes
