"""Export: the format table, calibration, the bundle manifest, round trips, auto-fallback."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgecnn.cli import main
from edgecnn.deploy.bundle import Bundle, sha256_file
from edgecnn.deploy.errors import DataError, InputError
from edgecnn.deploy.spec import ImageSpec, InputSpec
from edgecnn.export.calibration import load_calibration
from edgecnn.export.formats import FORMATS, resolve_options, select_formats

CALIB = Path(__file__).resolve().parents[1] / "calibration_data"
NEU = ("crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches")


def cli(*args) -> int:
    with pytest.raises(SystemExit) as stop:
        main([str(a) for a in args])
    return stop.value.code


def neu_spec(size: int = 64) -> InputSpec:
    return InputSpec("image", NEU, image=ImageSpec(size, size))


# ----------------------------------------------------------------------------- table

def test_unknown_format_is_an_error_with_close_matches(tmp_path, capsys):
    with pytest.raises(InputError, match=r"unknown export format 'onnx-int9'; did you mean "
                                         r"onnx-int8"):
        select_formats("onnx,onnx-int9")
    assert [f.name for f in select_formats(None)] == list(FORMATS)
    assert [f.name for f in select_formats("tflite-int8, onnx")] == ["tflite-int8", "onnx"]
    assert cli("export", tmp_path, "--out", tmp_path / "b", "--formats", "tflite_int8") == 2
    err = capsys.readouterr().err
    assert "unknown export format 'tflite_int8'" in err and "tflite-int8" in err


def test_unsupported_option_is_refused_never_silently_changed(tmp_path, capsys):
    onnx_int8, tflite_int8, onnx = FORMATS["onnx-int8"], FORMATS["tflite-int8"], FORMATS["onnx"]
    with pytest.raises(InputError, match=r"--calib-method entropy is not one tflite-int8 "
                                         r"takes \(it takes: minmax\); export tflite-int8 "
                                         r"separately with --formats"):
        resolve_options([onnx_int8, tflite_int8], {"calib_method": "entropy"})
    chosen = resolve_options([onnx, onnx_int8], {"calib_method": "entropy", "per_channel": None})
    assert chosen["onnx-int8"]["calib_method"] == "entropy"
    assert chosen["onnx-int8"]["per_channel"] is True and chosen["onnx"] == {}
    with pytest.raises(InputError, match="--auto-fallback applies to onnx-int8, tflite-int8; "
                                         r"none of the selected formats \(onnx\) uses it"):
        resolve_options([onnx], {"auto_fallback": True})
    with pytest.raises(InputError, match=r"--calib-method kl is not one onnx-int8 takes") as info:
        resolve_options([onnx_int8], {"calib_method": "kl"})
    assert "separately" not in str(info.value)   # no advice that cannot help
    assert cli("export", tmp_path, "--out", tmp_path / "b", "--formats", "tflite-int8",
               "--calib-method", "percentile") == 2
    assert "--calib-method percentile is not one tflite-int8 takes" in capsys.readouterr().err


# ----------------------------------------------------------------------------- calibration

def _copy_images(target: Path, per_class: int) -> None:
    for label in NEU:
        (target / label).mkdir(parents=True)
        for source in sorted((CALIB / "neu" / label).glob("*.jpg"))[:per_class]:
            shutil.copy(source, target / label / source.name)


def test_calibration_is_balanced_and_counted():
    messages = []
    calib = load_calibration(neu_spec(32), "neu", max_samples=12, log=messages.append)
    assert calib.counts() == {label: 2 for label in NEU}
    assert calib.tensors.shape == (12, 32, 32, 1) and calib.tensors.dtype == np.float32
    assert 0.0 <= calib.tensors.min() and calib.tensors.max() <= 1.0
    assert calib.available == 120 and calib.source.endswith("neu")
    assert "only 12 calibration samples" in " ".join(messages)
    again = load_calibration(neu_spec(32), "neu", max_samples=12)
    assert again.fingerprint == calib.fingerprint and len(calib.fingerprint) == 64
    assert load_calibration(neu_spec(32), "neu", max_samples=18).fingerprint != calib.fingerprint


def test_calibration_from_user_folders(tmp_path, caplog):
    labelled = tmp_path / "my calib"
    _copy_images(labelled, 3)
    messages = []
    calib = load_calibration(neu_spec(32), "neu", labelled, log=messages.append)
    assert len(calib) == 18 and calib.counts()["scratches"] == 3
    assert any("only 18 calibration samples" in m for m in messages)

    flat = tmp_path / "flat"
    flat.mkdir()
    for i, source in enumerate(sorted((CALIB / "neu" / "patches").glob("*.jpg"))[:6]):
        shutil.copy(source, flat / f"f{i:04d}.jpg")   # frames, no class in the name
    caplog.clear()
    unlabelled = load_calibration(neu_spec(32), "neu", flat)
    assert unlabelled.labels is None and len(unlabelled) == 6
    assert any("no class labels" in w for w in unlabelled.warnings)
    assert "cannot tell its class" not in caplog.text      # one note, not one per frame

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError):
        load_calibration(neu_spec(32), "neu", empty)
    foreign = InputSpec("image", ("ok", "scratch"), image=ImageSpec(32, 32))
    with pytest.raises(DataError, match="no shipped calibration set .* matches the model's "
                                        "classes"):
        load_calibration(foreign, "images")


# ----------------------------------------------------------------------------- bundle

def test_export_round_trip_every_format(exported_bundle, trained_image_model_dir):
    from edgecnn.deploy.engine import open_engine
    from edgecnn.modeldir import ModelDir

    out, result, lines = exported_bundle
    manifest = json.loads((out / "edgecnn.json").read_text())
    source = ModelDir.open(trained_image_model_dir)
    assert manifest["format"] == "edgecnn-bundle" and manifest["version"] == 1
    assert manifest["task"] == "neu" and manifest["labels"] == list(NEU)
    assert InputSpec.from_dict(manifest["spec"]) == source.spec
    assert set(manifest["files"]) == set(FORMATS)
    for name, entry in manifest["files"].items():
        path = out / entry["file"]
        assert entry["file"] == FORMATS[name].file_name
        assert entry["sha256"] == sha256_file(path) and entry["size"] == path.stat().st_size
        assert entry["precision"] == FORMATS[name].precision
        assert entry["inputs"][0]["shape"] == [None, 64, 64, 1]
        assert entry["outputs"][0]["shape"] == [None, 6]
    tfl = manifest["files"]["tflite-int8"]
    assert tfl["inputs"][0]["dtype"] == "int8" and tfl["outputs"][0]["dtype"] == "int8"
    assert tfl["inputs"][0]["scale"] == pytest.approx(1 / 255) and \
        tfl["inputs"][0]["zero_point"] == -128
    assert manifest["files"]["onnx"]["inputs"][0] == {"name": "input", "dtype": "float32",
                                                      "shape": [None, 64, 64, 1]}
    quant = manifest["files"]["onnx-int8"]["quantization"]
    assert quant["weights"] == "int8" and quant["per_channel"] is True
    assert quant["input"]["scale"] == pytest.approx(1 / 255, rel=1e-3)
    calib = manifest["calibration"]
    assert calib["samples"] == 120 and calib["per_class"] == {label: 20 for label in NEU}
    assert len(calib["fingerprint"]) == 64 and calib["source"].endswith("neu")
    assert manifest["source_model"]["sha256"] == source.model_sha256()
    assert manifest["source_model"]["architecture"] == "edge-image"
    assert all(manifest["tools"][k] for k in ("tensorflow", "tf2onnx", "onnxruntime", "onnx"))
    check = manifest["verification"]
    for name in ("onnx", "tflite"):
        assert check[name]["passed"] and check[name]["max_abs_diff"] <= 1e-4
    for name in ("onnx-int8", "tflite-int8"):
        assert check[name]["tolerance"] is None and check[name]["samples"] == 120
        assert check[name]["ratio_of_float"] < 0.6

    # Every file loads in the runtime engine and classifies like the Keras model.
    model = source.load_keras()
    tensors = load_calibration(source.spec, "neu").tensors
    keras_probs = np.asarray(model(tensors, training=False))
    for name in FORMATS:
        probs = open_engine(out, name).predict(tensors)
        assert probs.shape == (120, 6)
        if FORMATS[name].tolerance is not None:
            assert np.abs(probs - keras_probs).max() <= 1e-4, name
        else:
            agree = (probs.argmax(1) == keras_probs.argmax(1)).mean()
            assert agree >= 0.95, (name, agree)

    # Progress: one timed, sized line per format, then its verification.
    for name in FORMATS:
        assert any(line.startswith(f"{name} ") and " kB " in line and " s " in line
                   for line in lines), name
        assert any(line.strip().startswith(f"verify {name}:") for line in lines), name
    assert "calibration: 120 samples" in lines[0]
    assert result.bundle == out and "onnx-int8" in result.format()


def test_onnx_files_carry_spec_labels_and_real_int8(exported_bundle):
    import onnx

    out, _, _ = exported_bundle
    bundle = Bundle.open(out)
    for name in ("onnx", "onnx-int8"):
        model = onnx.load(str(out / FORMATS[name].file_name))
        props = {p.key: p.value for p in model.metadata_props}
        assert InputSpec.from_json(props["edgecnn.spec"]) == bundle.spec
        assert json.loads(props["edgecnn.labels"]) == list(NEU)
        assert props["edgecnn.format"] == name and props["edgecnn.task"] == "neu"
    int8 = onnx.load(str(out / "model.int8.onnx"))
    ops = {n.op_type for n in int8.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    stored = {t.name: t.data_type for t in int8.graph.initializer}
    dequantized = {n.output[0]: n.input[0] for n in int8.graph.node
                   if n.op_type == "DequantizeLinear"}
    convs = [n for n in int8.graph.node if n.op_type == "Conv"]
    assert len(convs) >= 5
    for conv in convs:  # every conv weight is stored as int8 and dequantized in the graph
        assert stored[dequantized[conv.input[1]]] == onnx.TensorProto.INT8, conv.name


def test_calibration_methods_give_their_own_ranges(exported_bundle, trained_image_model_dir,
                                                  tmp_path):
    """ONNX Runtime's Entropy defaults (128 histogram bins) reduce to min/max; ours do not."""
    from edgecnn.export import export_model

    minmax = exported_bundle[0] / "model.int8.onnx"
    entropy = export_model(trained_image_model_dir, tmp_path / "entropy", formats="onnx-int8",
                           calib_method="entropy", log=lambda m: None)
    entry = entropy.manifest["files"]["onnx-int8"]
    assert entry["quantization"]["calibration_method"] == "entropy"
    # No onnx file was asked for, but the float model made for quantizing gives the ratio.
    assert 0.1 < entropy.manifest["verification"]["onnx-int8"]["ratio_of_float"] < 0.6
    assert entry["sha256"] != sha256_file(minmax)
    assert entropy.manifest["verification"]["onnx-int8"]["agreement"] >= 0.9


def test_export_cli_json_reexport_and_refusals(trained_image_model_dir, tmp_path, capsys):
    out = tmp_path / "cli bundle"
    summary = tmp_path / "export.json"
    assert cli("export", trained_image_model_dir, "--out", out, "--formats", "onnx",
               "--json", summary) == 0
    data = json.loads(summary.read_text())
    assert list(data["files"]) == ["onnx"] and data["task"] == "neu"
    assert data["files"]["onnx"]["sha256"] == sha256_file(out / "model.onnx")
    assert data["verification"]["onnx"]["max_abs_diff"] <= 1e-4
    assert data["steps"][0]["format"] == "onnx" and data["steps"][0]["size"] > 10_000
    assert "model.onnx" in capsys.readouterr().out

    assert Path(data["source_model"]["path"]).is_absolute()   # bench finds it from anywhere

    # Re-export into the same bundle replaces it: the old file goes with the old manifest,
    # and the log says which format went (and that the bundle was of another model).
    old = json.loads((out / "edgecnn.json").read_text())
    old["source_model"]["sha256"] = "0" * 64
    (out / "edgecnn.json").write_text(json.dumps(old))
    assert cli("export", trained_image_model_dir, "--out", out, "--formats", "onnx-int8") == 0
    assert sorted(p.name for p in out.iterdir()) == ["edgecnn.json", "model.int8.onnx"]
    err = capsys.readouterr().err
    assert "its onnx file is not in this export and removed" in err
    assert "held a bundle of another model (task neu, 6 classes: crazing" in err
    assert Bundle.open(out).formats == ["onnx-int8"]

    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    assert cli("export", trained_image_model_dir, "--out", busy) == 2
    assert "not empty and not an edgecnn bundle" in capsys.readouterr().err
    assert (busy / "notes.txt").read_text() == "mine"

    changed = tmp_path / "changed model"
    shutil.copytree(trained_image_model_dir, changed)
    with open(changed / "model.keras", "ab") as handle:
        handle.write(b"\0")
    assert cli("export", changed, "--out", tmp_path / "never") == 2
    assert "does not match its manifest" in capsys.readouterr().err
    assert not (tmp_path / "never").exists()


def test_float_file_that_differs_from_keras_stops_the_export(trained_image_model_dir,
                                                             tmp_path, monkeypatch, capsys):
    from dataclasses import replace

    # A tolerance no float32 conversion can meet stands in for a broken converter.
    monkeypatch.setitem(FORMATS, "onnx", replace(FORMATS["onnx"], tolerance=1e-12))
    out = tmp_path / "strict"
    assert cli("export", trained_image_model_dir, "--out", out, "--formats", "onnx") == 1
    assert "onnx does not reproduce the Keras model: max |delta softmax|" in \
        capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())  # nothing half-written is left
    assert not list(tmp_path.glob(".strict.partial-*"))


# ----------------------------------------------------------------------------- fallback

@pytest.fixture(scope="module")
def outlier_model_dir(tmp_path_factory) -> Path:
    """A model with one outlier activation channel (x1000, undone by the next layer): the
    classic int8 failure, where one channel sets the tensor's range and the small channels
    quantize to zero. Float it is exact; int8 disagrees with it on most images."""
    from edgecnn.tfquiet import import_tensorflow

    import_tensorflow("the tests")
    import keras
    from keras import layers

    from edgecnn.modeldir import write_model_dir

    spec = neu_spec(32)
    keras.utils.set_random_seed(3)
    inputs = keras.Input(spec.input_shape)
    x = layers.Conv2D(6, 3, padding="same", activation="relu", name="spread")(inputs)
    x = layers.Conv2D(6, 1, activation="relu", name="outlier")(x)
    x = layers.Conv2D(6, 1, name="mix")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    model = keras.Model(inputs, layers.Dense(6, activation="softmax", name="head")(x))
    gain = np.diag([1000.0, 1, 1, 1, 1, 1]).astype("float32").reshape(1, 1, 6, 6)
    undo = np.diag([0.001, 1, 1, 1, 1, 1]).astype("float32").reshape(1, 1, 6, 6)
    model.get_layer("outlier").set_weights([gain, np.zeros(6, "float32")])
    model.get_layer("mix").set_weights([undo, np.zeros(6, "float32")])
    weights, bias = model.get_layer("head").get_weights()
    model.get_layer("head").set_weights([weights * 20, bias])
    out = tmp_path_factory.mktemp("outlier") / "outlier model"
    write_model_dir(out, model, spec, architecture="outlier-test",
                    training={"task": "neu"}, data={}, metrics={})
    return out


def test_int8_failure_on_calibration_data_names_layers(outlier_model_dir, tmp_path):
    from edgecnn.export import export_model

    lines = []
    result = export_model(outlier_model_dir, tmp_path / "plain",
                          formats="onnx,onnx-int8,tflite,tflite-int8", auto_fallback=False,
                          log=lines.append)
    text = "\n".join(lines)
    for name in ("onnx-int8", "tflite-int8"):
        check = result.manifest["verification"][name]
        assert check["agreement"] < 0.9 and not check["passed"], (name, check["agreement"])
        assert f"warning: {name} breaks the parity thresholds" in text
        assert result.manifest["files"][name]["float_nodes"] == []
        worst = check["blame"][0]
        assert worst["label"].startswith("mix"), check["blame"][:3]
        assert any(e["label"].startswith("outlier") for e in check["blame"])
    # int8 cannot hold parity: the bundle runs the float model unless told otherwise
    assert result.manifest["default_format"] == "onnx"
    assert "the bundle's default format is onnx" in text
    from edgecnn.deploy.bundle import Bundle

    assert Bundle.open(tmp_path / "plain").default_format() == "onnx"


def test_default_fallback_keeps_a_few_layers_float_and_no_more(outlier_model_dir, tmp_path,
                                                              monkeypatch):
    """Without an option, int8 layers that break parity stay float up to a share of the
    model's layers (this model needs 2 of its 4); past that limit the bundle defaults to
    float and the log says how to lift it."""
    from edgecnn.export import blame, export_model

    lines = []
    result = export_model(outlier_model_dir, tmp_path / "default",
                          formats="onnx,onnx-int8,tflite-int8", log=lines.append)
    for name in ("onnx-int8", "tflite-int8"):
        check = result.manifest["verification"][name]
        kept = result.manifest["files"][name]["float_nodes"]
        assert check["passed"] and check["fallback"][-1]["passed"], (name, check)
        assert 0 < len(kept) <= blame.fallback_limit("limited", len(check["blame"])), kept
    assert result.manifest["default_format"] == "onnx-int8"
    assert result.manifest["options"]["onnx-int8"]["auto_fallback"] == "limited"

    monkeypatch.setattr(blame, "DEFAULT_FALLBACK_MIN", 1)
    monkeypatch.setattr(blame, "DEFAULT_FALLBACK_SHARE", 0.0)
    lines = []
    result = export_model(outlier_model_dir, tmp_path / "limited",
                          formats="onnx,onnx-int8", log=lines.append)
    check = result.manifest["verification"]["onnx-int8"]
    assert not check["passed"] and len(check.get("fallback", [])) <= 1
    assert any("the default fallback may keep float" in line and "--auto-fallback" in line
               for line in lines), lines
    assert result.manifest["default_format"] == "onnx"


def test_auto_fallback_keeps_the_worst_layers_float(outlier_model_dir, tmp_path, capsys):
    import onnx

    from edgecnn.export import export_model, run_parity

    lines = []
    out = tmp_path / "fallback bundle"
    result = export_model(outlier_model_dir, out, formats="onnx,onnx-int8,tflite,tflite-int8",
                          auto_fallback=True, log=lines.append)
    for name in ("onnx-int8", "tflite-int8"):
        entry = result.manifest["files"][name]
        check = result.manifest["verification"][name]
        assert check["passed"] and check["agreement"] >= 0.99, (name, check["agreement"])
        layers = " ".join(entry["float_nodes"])
        assert "mix" in layers and "outlier" in layers and "spread" not in layers, layers
        steps = check["fallback"]
        assert steps[-1]["passed"] and not any(step["passed"] for step in steps[:-1])
        assert any(f"{name}: auto-fallback keeps" in line for line in lines)
    assert result.manifest["files"]["tflite-int8"]["inputs"][0]["dtype"] == "int8"
    assert result.manifest["default_format"] == "onnx-int8"

    # The excluded convolutions really run in float; the others stay int8.
    model = onnx.load(str(out / "model.int8.onnx"))
    weight_source = {}
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear":
            weight_source[node.output[0]] = node
    convs = {n.name: n for n in model.graph.node if n.op_type == "Conv"}
    assert not any(n.input[1] in weight_source for name, n in convs.items()
                   if name.startswith(("mix", "outlier")))
    assert any(n.input[1] in weight_source for name, n in convs.items()
               if name.startswith("spread"))
    props = {p.key: p.value for p in model.metadata_props}
    assert json.loads(props["edgecnn.float_nodes"]) == \
        result.manifest["files"]["onnx-int8"]["float_nodes"]

    parity = run_parity(out, CALIB / "neu", log=lambda m: None)
    assert parity.passed and parity.rows["tflite-int8"]["agreement"] >= 0.99


def test_float_first_keeps_the_leading_convolutions_float(trained_image_model_dir, tmp_path):
    import onnx

    from edgecnn.deploy.bundle import Bundle
    from edgecnn.export import export_model

    out = tmp_path / "float first"
    export_model(trained_image_model_dir, out, formats="onnx,onnx-int8", float_first=1,
                 log=lambda line: None)
    bundle = Bundle.open(out)
    kept = bundle.entry("onnx-int8")["float_nodes"]
    float_graph = onnx.load(str(bundle.file("onnx"))).graph
    first_conv = next(n.name for n in float_graph.node if n.op_type == "Conv")
    assert kept == [first_conv]
    int8_graph = onnx.load(str(bundle.file("onnx-int8"))).graph
    producers = {o: n.op_type for n in int8_graph.node for o in n.output}
    convs = [n for n in int8_graph.node if n.op_type == "Conv"]
    # The first convolution reads float weights; the next one dequantized int8 weights.
    assert producers.get(convs[0].input[1]) is None
    assert producers[convs[1].input[1]] == "DequantizeLinear"


def test_float_first_is_an_onnx_int8_option_only(trained_image_model_dir, tmp_path):
    from edgecnn.deploy.errors import InputError
    from edgecnn.export import export_model

    with pytest.raises(InputError, match="--float-first applies to onnx-int8"):
        export_model(trained_image_model_dir, tmp_path / "b", formats="tflite-int8",
                     float_first=2, log=lambda line: None)


def test_calibration_recordings_read_with_loader_options(tmp_path):
    """``export --calib DIR --label-pattern ... --sample-rate ...`` on plain .npy recordings."""
    from edgecnn.deploy.recordings import read_recording
    from edgecnn.deploy.spec import SignalSpec

    folder = tmp_path / "my recordings"
    folder.mkdir()
    for label, name in (("normal", "normal_0_97.mat"),
                        ("IR007", "12k_Drive_End_IR007_0_105.mat")):
        samples = read_recording(CALIB / "cwru" / name).samples[:20000]
        np.save(folder / f"{label}_1.npy", samples.astype(np.float32))
    spec = InputSpec("signal", ("normal", "IR007"), signal=SignalSpec(window_length=2048))
    options = {"label_pattern": r"^(?P<label>[A-Za-z0-9]+)_\d+\.npy$", "sample_rate": 12000.0}
    calib = load_calibration(spec, "vibration", folder, loader_options=options)
    assert calib.counts() == {"normal": len(calib) // 2, "IR007": len(calib) // 2}
    assert len(calib) >= 20
    with pytest.raises(DataError):   # the same files without the options
        load_calibration(spec, "vibration", folder)
    with pytest.raises(InputError, match="no --calib was given"):
        load_calibration(spec, "vibration", None, loader_options=options)


def test_staging_folders_left_by_a_killed_export_are_removed(tmp_path):
    import os
    import time

    from edgecnn.export.exporter import STALE_STAGE_S, _remove_stale_stages

    old = tmp_path / ".bundle.partial-abc"
    young = tmp_path / ".bundle.partial-def"      # another export writing right now
    other = tmp_path / ".other.partial-abc"
    for folder in (old, young, other):
        folder.mkdir()
        (folder / "model.onnx").write_bytes(b"x")
    then = time.time() - STALE_STAGE_S - 10
    os.utime(old, (then, then))
    os.utime(other, (then, then))
    lines = []
    _remove_stale_stages(tmp_path / "bundle", lines.append)
    assert not old.exists() and young.exists() and other.exists()
    assert lines == [f"removed {old.name}, left by an interrupted export"]


def test_a_bundle_whose_every_format_fails_parity_is_a_failed_check(tmp_path):
    from edgecnn.export.exporter import ExportResult, default_format

    failing = {"onnx-int8": {"passed": False, "failures": ["agreement 90 % < 99 %"]}}
    said = []
    assert default_format(failing, said.append) == "onnx-int8"
    assert said == ["warning: no format of this bundle holds parity; its default is "
                    "onnx-int8, which fails it"]
    result = ExportResult(tmp_path / "b", {"verification": failing,
                                           "default_format": "onnx-int8"})
    assert "no format of" in result.unverified() and "--formats onnx,onnx-int8" in \
        result.unverified()
    held = {**failing, "onnx": {"passed": True}}
    said.clear()
    assert default_format(held, said.append) == "onnx"
    assert ExportResult(tmp_path / "b", {"verification": held}).unverified() is None


def test_more_calibration_samples_than_training_kept_says_where_more_come_from():
    from types import SimpleNamespace

    from edgecnn.export.calibration import _kept_sample
    from runtime_helpers import image_spec

    spec = image_spec(size=16, labels=("a", "b"))
    kept = (np.zeros((40, 16, 16, 1), np.float32), np.array([0, 1] * 20))
    said = []
    calib = _kept_sample(kept, spec, SimpleNamespace(path="m"), "images", 1000, said.append)
    assert len(calib.tensors) == 40
    assert any("--max-calib-samples 1000: the model directory keeps 40" in line and
               "--calib DIR" in line for line in said), said
    said.clear()
    _kept_sample(kept, spec, SimpleNamespace(path="m"), "images", 300, said.append)
    assert not any("--max-calib-samples" in line for line in said)    # the default: quiet
