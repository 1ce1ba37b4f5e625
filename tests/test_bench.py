"""edgecnn bench: MAC counting, timing every format of real tiny bundles, accuracy on data,
the CLI's exit codes, and the run_all helpers that turn bench results into the tables."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgecnn.bench import bench
from edgecnn.cli import main
from edgecnn.console import ProgressBar
from edgecnn.deploy.bundle import MANIFEST, sha256_file
from edgecnn.deploy.errors import BundleError, DataError, InputError
from edgecnn.machine import time_calls
from edgecnn.macs import count_macs
from edgecnn.tasks import recipe_arguments
from runtime_helpers import (
    CALIBRATION,
    NEU_CLASSES,
    conv_model,
    image_spec,
    level_for_class,
    make_image_bundle,
    write_bundle,
)

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import results_tables  # noqa: E402
import training_recipes  # noqa: E402

ROW_KEYS = {"name", "kind", "file", "size_bytes", "precision", "threads", "accuracy", "n",
            "latency_ms", "throughput", "macs", "gmacs", "gmacs_batch", "ceiling",
            "ceiling_fraction"}
RESULT_KEYS = {"bundle", "task", "input_shape", "labels", "source_model", "machine",
               "settings", "data", "macs", "ceilings", "rows"}
FAST = dict(warmup=1, iterations=5, max_seconds=0.2, ceiling_seconds=0.1, progress=False,
            keras=False)


# ----------------------------------------------------------------------------- MACs

def _hand_model(batch="N"):
    """NCHW 3x32x32 -> conv 3->8 k3 s2 -> depthwise 3x3 (group 8) -> pointwise 8->16
    -> global pool -> Gemm 16->10 (transB) -> MatMul 10->4."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)

    def weight(name, shape):
        return numpy_helper.from_array(rng.normal(size=shape).astype(np.float32), name)

    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], kernel_shape=[3, 3], strides=[2, 2],
                         pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "dw"], ["c2"], kernel_shape=[3, 3], group=8,
                         pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["c2", "pw", "pb"], ["c3"], kernel_shape=[1, 1]),
        helper.make_node("GlobalAveragePool", ["c3"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "fc", "fb"], ["logits"], transB=1),
        helper.make_node("MatMul", ["logits", "proj"], ["out"]),
    ]
    inits = [weight("w1", (8, 3, 3, 3)), weight("dw", (8, 1, 3, 3)), weight("pw", (16, 8, 1, 1)),
             weight("pb", (16,)), weight("fc", (10, 16)), weight("fb", (10,)),
             weight("proj", (10, 4))]
    graph = helper.make_graph(
        nodes, "hand",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 32, 32])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [batch, 4])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_macs_of_conv_depthwise_and_dense_layers_by_hand(tmp_path):
    import onnx

    conv = 16 * 16 * 8 * (3 * 3 * 3)        # stride 2, pad 1: 16x16 outputs, 8 filters
    depthwise = 16 * 16 * 8 * (1 * 3 * 3)   # one 3x3 filter per channel
    pointwise = 16 * 16 * 16 * 8            # 1x1, 8 -> 16
    gemm = 16 * 10
    matmul = 10 * 4
    path = tmp_path / "hand model.onnx"
    onnx.save(_hand_model(), str(path))
    count = count_macs(path)
    assert count.total == conv + depthwise + pointwise + gemm + matmul == 106_696
    assert count.by_op == {"Conv": conv + depthwise + pointwise, "Gemm": gemm,
                           "MatMul": matmul}
    assert [m for _, _, m in count.nodes] == [conv, depthwise, pointwise, gemm, matmul]
    assert count.unknown == []
    # A fixed batch of 1 counts the same; the symbolic batch axis is read as 1.
    assert count_macs(_hand_model(batch=1)).total == count.total


def test_macs_of_a_file_that_is_not_onnx(tmp_path):
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"this is not a protobuf \xff\xfe")
    with pytest.raises(BundleError, match="cannot read ONNX model"):
        count_macs(bad)


# ----------------------------------------------------------------------------- bundles

def _quantize(float_path: Path, int8_path: Path, spec) -> None:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self):
            rng = np.random.default_rng(0)
            self.items = iter([{"input": rng.uniform(0, 1, (1, *spec.input_shape))
                                .astype(np.float32)} for _ in range(4)])

        def get_next(self):
            return next(self.items, None)

    quantize_static(str(float_path), str(int8_path), Reader(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    per_channel=True, reduce_range=True)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("bench run")   # a space in the path


@pytest.fixture(scope="module")
def conv_bundle(workdir):
    """A conv CNN bundle with a float ONNX and a real static-QDQ int8 ONNX file."""
    spec = image_spec(64)
    directory = write_bundle(workdir / "conv bundle", spec, conv_model(spec))
    _quantize(directory / "model.onnx", directory / "model.int8.onnx", spec)
    manifest = json.loads((directory / MANIFEST).read_text())
    entry = dict(manifest["files"]["onnx"])
    entry.update(file="model.int8.onnx", format="onnx-int8",
                 sha256=sha256_file(directory / "model.int8.onnx"),
                 size=(directory / "model.int8.onnx").stat().st_size)
    manifest["files"]["onnx-int8"] = entry
    manifest["task"] = "neu"
    (directory / MANIFEST).write_text(json.dumps(manifest))
    return directory


CONV_MACS = 64 * 64 * 16 * 9 * 1 + 32 * 32 * 32 * 9 * 16 + 16 * 16 * 64 * 9 * 32 + 64 * 6


@pytest.fixture(scope="module")
def conv_result(conv_bundle):
    return bench(conv_bundle, **FAST)


def test_bench_times_every_format(conv_bundle, conv_result):
    result = conv_result
    assert RESULT_KEYS <= set(result.to_dict())
    assert [row["name"] for row in result.rows] == ["onnx", "onnx-int8"]
    assert result.macs["total"] == CONV_MACS and result.macs["source_format"] == "onnx"
    for row in result.rows:
        assert ROW_KEYS <= set(row)
        latency = row["latency_ms"]
        assert 0 < latency["min"] <= latency["p50"] <= latency["p99"]
        assert latency["mean"] > 0 and 1 <= latency["iterations"] <= 5
        assert row["throughput"]["batch"] == 32 and row["throughput"]["images_per_s"] > 0
        assert row["threads"] == 1 and row["macs"] == CONV_MACS
        assert row["size_bytes"] == (conv_bundle / Path(row["file"]).name).stat().st_size
        assert row["gmacs"] == pytest.approx(CONV_MACS / (latency["p50"] * 1e-3) / 1e9,
                                             rel=1e-2)
        assert row["ceiling_fraction"] > 0
        assert row["accuracy"] is None and row["n"] is None
    by_name = {row["name"]: row for row in result.rows}
    assert by_name["onnx"]["precision"] == "float32" and by_name["onnx"]["ceiling"] == "float32"
    assert by_name["onnx-int8"]["ceiling"] == "int8"
    assert by_name["onnx-int8"]["size_bytes"] < by_name["onnx"]["size_bytes"] / 2
    for precision in ("float32", "int8"):
        ceiling = result.ceilings[precision]
        assert ceiling["gmacs"] >= ceiling["gmacs_p50"] > 0
        assert "ONNX Runtime" in ceiling["method"]
    assert "MatMulInteger uint8 x int8" in result.ceilings["int8"]["method"]
    machine = result.machine
    assert machine["cores"] >= 1 and machine["cpu"]
    assert machine["versions"]["onnxruntime"] and machine["versions"]["numpy"]
    table = result.format()
    assert "onnx-int8" in table and "ceiling int8" in table and "MatMulInteger" in table


def test_bench_formats_and_threads_options(conv_bundle):
    result = bench(conv_bundle, formats="onnx-int8", threads=2, batch=4, **FAST)
    assert [row["name"] for row in result.rows] == ["onnx-int8"]
    assert result.rows[0]["threads"] == 2 and result.ceilings["threads"] == 2
    assert result.rows[0]["throughput"]["batch"] == 4
    with pytest.raises(BundleError, match="has no tflite model"):
        bench(conv_bundle, formats="tflite", **FAST)


def _gray_level_folder(root: Path, per_class: int = 2) -> Path:
    """<class>/<n>.png flat gray images; the brightness model's class of each is known."""
    for index, label in enumerate(NEU_CLASSES):
        (root / label).mkdir(parents=True)
        for n in range(per_class):
            image = np.full((40, 48), level_for_class(index), np.uint8)
            cv2.imwrite(str(root / label / f"{n}.png"), image)
    return root


def test_bench_data_gives_accuracy_and_n(workdir):
    bundle = make_image_bundle(workdir / "bright bundle", size=32)
    data = _gray_level_folder(workdir / "gray levels")
    (data / NEU_CLASSES[0] / "broken.png").write_bytes(b"not a png")
    result = bench(bundle, data, task="images", **FAST)
    assert result.data == {"source": str(data), "n": 12, "skipped": 1}
    row = result.rows[0]
    assert row["accuracy"] == 1.0 and row["n"] == 12
    # Real NEU photos are not flat gray: the same model gets most of them wrong.
    neu = bench(bundle, CALIBRATION / "neu", task="images", **FAST)
    assert neu.rows[0]["n"] == 120 and neu.rows[0]["accuracy"] < 0.5


def test_bench_without_task_and_data_names_the_fix(workdir):
    bundle = make_image_bundle(workdir / "no task bundle", size=32)
    with pytest.raises(InputError, match="pass --task"):
        bench(bundle, CALIBRATION / "neu", **FAST)


def test_source_model_that_changed_is_left_out(workdir):
    """A manifest's source model whose sha256 no longer matches gives no Keras rows (and
    no TensorFlow import), with a note saying why."""
    spec = image_spec(32)
    model_dir = workdir / "changed model"
    model_dir.mkdir()
    (model_dir / "model.keras").write_bytes(b"retrained since")
    (model_dir / "edgecnn.json").write_text(json.dumps(
        {"format": "edgecnn-model", "version": 1, "spec": spec.to_dict()}))
    bundle = make_image_bundle(workdir / "stale bundle", size=32)
    manifest = json.loads((bundle / MANIFEST).read_text())
    manifest["source_model"] = {"path": str(model_dir), "sha256": "0" * 64}
    (bundle / MANIFEST).write_text(json.dumps(manifest))
    notes = []
    result = bench(bundle, **{**FAST, "keras": True}, log=notes.append)
    assert [row["name"] for row in result.rows] == ["onnx"]
    assert result.source_model is None
    assert any("sha256 differs" in note for note in notes)


@pytest.mark.slow
def test_keras_source_model_rows(conv_bundle, workdir, monkeypatch):
    """The manifest's source model is found and benched twice: the ``model(x)`` call and the
    lecture's ``model.predict(x)``; a model of another input shape is refused."""
    from edgecnn.modeldir import write_model_dir
    from edgecnn.models import create_model

    spec = image_spec(64)
    model_dir = write_model_dir(workdir / "keras model", create_model("tiny-test", spec), spec,
                                architecture="tiny-test", training={"task": "neu"}, data={},
                                metrics={})
    bundle = workdir / "bundle with source"
    bundle.mkdir()
    for item in conv_bundle.iterdir():
        (bundle / item.name).write_bytes(item.read_bytes())
    manifest = json.loads((bundle / MANIFEST).read_text())
    manifest["source_model"] = {"path": str(model_dir.path), "sha256": model_dir.model_sha256()}
    (bundle / MANIFEST).write_text(json.dumps(manifest))

    data = _gray_level_folder(workdir / "keras gray levels", per_class=1)
    result = bench(bundle, data, formats="onnx", batch=4, **{**FAST, "keras": True})
    rows = {row["name"]: row for row in result.rows}
    assert list(rows) == ["keras", "keras-predict", "onnx"]
    assert result.source_model == str(model_dir.path)
    for name in ("keras", "keras-predict"):
        row = rows[name]
        assert row["kind"] == "keras" and row["precision"] == "float32"
        assert row["size_bytes"] == model_dir.model_file.stat().st_size
        assert row["latency_ms"]["p50"] > 0 and row["threads"] >= 1
        assert row["n"] == 6 and 0 <= row["accuracy"] <= 1
    assert rows["keras-predict"]["accuracy"] == rows["keras"]["accuracy"]

    other = image_spec(32)
    small = write_model_dir(workdir / "small keras model", create_model("tiny-test", other),
                            other, architecture="tiny-test", training={}, data={}, metrics={})
    measured = []
    monkeypatch.setattr("edgecnn.bench.measure_ceilings",
                        lambda *a, **k: measured.append(1) or {})
    with pytest.raises(BundleError, match="not the bundle's source model"):
        bench(bundle, keras_model_dir=small.path, **{**FAST, "keras": True})
    assert not measured    # refused before any timing


# ----------------------------------------------------------------------------- CLI

def _cli(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def test_cli_writes_table_and_json(conv_bundle, tmp_path, capsys):
    target = tmp_path / "bench out" / "bench.json"
    code, out, err = _cli(["bench", str(conv_bundle), "--iterations", "3", "--warmup", "1",
                           "--max-seconds", "0.2", "--no-keras", "--json", str(target)], capsys)
    assert code == 0, err
    assert "onnx-int8" in out and "% ceil" in out and f"results written to {target}" in out
    data = json.loads(target.read_text())
    assert RESULT_KEYS <= set(data)
    assert {row["name"] for row in data["rows"]} == {"onnx", "onnx-int8"}
    assert all(ROW_KEYS <= set(row) for row in data["rows"])
    assert data["settings"]["iterations"] == 3
    # Progress went to stderr, one plain start and result line per item (not a TTY).
    assert "onnx-int8: p50" in err and "\r" not in err


@pytest.mark.parametrize("problem", ["missing", "tampered", "not a bundle"])
def test_cli_bad_bundle_exits_2(problem, conv_bundle, tmp_path, capsys):
    if problem == "missing":
        target = tmp_path / "no such bundle"
    elif problem == "tampered":
        target = tmp_path / "tampered bundle"
        target.mkdir()
        for item in conv_bundle.iterdir():
            (target / item.name).write_bytes(item.read_bytes())
        with open(target / "model.int8.onnx", "ab") as handle:
            handle.write(b"\0")
    else:
        target = tmp_path / "plain folder"
        target.mkdir()
        (target / "model.onnx").write_bytes((conv_bundle / "model.onnx").read_bytes())
    code, out, err = _cli(["bench", str(target), "--iterations", "2", "--no-keras"], capsys)
    assert code == 2
    assert err.strip().splitlines()[-1].startswith("error: ")
    assert "Traceback" not in err
    expected = {"missing": "no bundle at", "tampered": "does not match its manifest",
                "not a bundle": "is not a bundle"}[problem]
    assert expected in err


# ----------------------------------------------------------------------------- helpers

def test_progress_bar_plain_and_terminal():
    plain = io.StringIO()
    bar = ProgressBar(stream=plain)
    bar.start("onnx")
    bar.update(0.5, "half")
    bar.done("p50 1.000 ms")
    assert plain.getvalue() == "onnx ...\nonnx: p50 1.000 ms\n"

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    bar = ProgressBar(stream=terminal, width=10)
    bar.start("onnx")
    bar.done("p50 1.000 ms")
    text = terminal.getvalue()
    assert text.startswith("\ronnx") and "[----------]" in text and "[##########]" in text
    assert text.endswith("\n") and text.count("\n") == 1
    silent = io.StringIO()
    ProgressBar(stream=silent, enabled=False).start("x")
    assert silent.getvalue() == ""


def test_time_calls_stops_at_iterations_or_time_budget():
    calls = []
    times = time_calls(lambda: calls.append(1), warmup=3, iterations=7, max_seconds=60)
    assert len(times) == 7 and len(calls) == 10 and (times >= 0).all()
    calls.clear()
    import time as clock

    times = time_calls(lambda: clock.sleep(0.02), warmup=0, iterations=1000, max_seconds=0.05)
    assert 5 <= len(times) < 20  # budget spent, but never fewer than a few calls


def test_task_data_folders_and_recipes(tmp_path):
    assert training_recipes.task_data(CALIBRATION, "neu") == CALIBRATION / "neu"
    assert training_recipes.task_data(CALIBRATION, "cwru") == CALIBRATION / "cwru"
    (tmp_path / "neu" / "train").mkdir(parents=True)
    assert training_recipes.task_data(tmp_path, "neu") == tmp_path / "neu" / "train"
    with pytest.raises(DataError, match="no mnist data under"):
        training_recipes.task_data(tmp_path, "mnist")
    with pytest.raises(DataError, match="unknown task"):
        training_recipes.parse_tasks("neu,imagenet")
    edge, seed = training_recipes.recipes("neu")
    assert (edge.architecture, seed.architecture) == ("edge-image", "seed-neu")
    options = seed.train_options()
    assert options["image_size"] == 200 and options["epochs"] == 10
    assert options["augment"] is False and "image_size" not in edge.train_options()
    assert seed.scaled(0.0).epochs == 1 and edge.scaled(0.5).epochs == edge.epochs // 2
    assert training_recipes.recipes("cwru")[1].transform == "none"
    # the benchmark exports our NEU model as `make bundle-neu` exports the shipped one:
    # both read the recipe of the task table, the Makefile through `edgecnn recipe`
    makefile = (CALIBRATION.parent / "Makefile").read_text()
    line = next(l for l in makefile.splitlines() if "export runs/$*" in l)
    assert "recipe $* --step export" in line and "--float-first" not in line
    words = recipe_arguments("neu", "export").split()
    shipped_float_first = int(words[words.index("--float-first") + 1])
    assert dict(edge.export) == {"float_first": shipped_float_first}
    assert seed.export == () and training_recipes.recipes("cwru")[0].export == ()


def test_ratios_and_markdown_from_real_bench_results(conv_result, workdir):
    """Ratios are quotients of the numbers measured in the run, and every row shows up."""
    edge_result = bench(make_image_bundle(workdir / "edge like", size=32), **FAST)
    seed_result = json.loads(json.dumps(conv_result.to_dict()))
    baseline = dict(seed_result["rows"][0], name="keras-predict", kind="keras")
    seed_result["rows"].insert(0, baseline)
    edge = {"bench": edge_result.to_dict(), "train_seconds": 10.0, "architecture": "edge-image",
            "input_shape": [32, 32, 1]}
    seed = {"bench": seed_result, "train_seconds": 40.0, "architecture": "seed-neu",
            "input_shape": [64, 64, 1]}
    ratios = results_tables.task_ratios(edge, seed)
    ours = edge_result.rows[0]
    assert ratios["ours_format"] == "onnx"
    assert ratios["latency_vs_lecture_predict"] == round(
        baseline["latency_ms"]["p50"] / ours["latency_ms"]["p50"], 1)
    assert ratios["size_vs_seed_onnx"] == round(
        seed_result["rows"][1]["size_bytes"] / ours["size_bytes"], 1)
    assert ratios["train_time_vs_seed"] == 0.25
    results = {"created": "now", "datasets": "somewhere", "machine": edge_result.machine,
               "settings": {"threads": 1}, "tasks": {"neu": {
                   "data": "somewhere/neu", "val_samples": 0,
                   "models": {"edge": edge, "seed": seed}, "ratios": ratios}}}
    text = results_tables.results_markdown(results)
    assert "keras-predict (lecture baseline)" in text
    assert f"{ratios['latency_vs_lecture_predict']:g}x faster than the lecture's" in text
    assert text.count("| seed | ") == 3 and text.count("| edge | ") == 1
    assert "MatMulInteger" in text


def test_ratio_lines_say_slower_and_larger_when_ours_is_behind():
    """A ratio below 1 is stated the other way round, never as '0.6x faster'."""
    lines = results_tables._ratio_lines({
        "ours_format": "onnx-int8", "latency_vs_lecture_predict": 368.6,
        "latency_vs_seed_onnx": 0.6, "size_vs_seed_onnx": 18.5, "macs_vs_seed": 0.4,
        "train_time_vs_seed": 4.93, "accuracy_delta_pp": 0.31})
    text = "\n".join(lines)
    assert "- 368.6x faster than the lecture's seed" in text
    assert "- 1.7x slower than the seed model as float32 ONNX" in text
    assert "- 2.5x more MACs than the seed model" in text
    assert "- 4.93x the seed model's training time" in text
    assert "0.6x" not in text and "0.4x" not in text


def test_a_source_model_path_without_its_hash_is_not_loaded(tmp_path):
    from types import SimpleNamespace

    from edgecnn.bench import find_keras_model_dir

    said = []
    bundle = SimpleNamespace(manifest={"source_model": {"path": str(tmp_path)}}, path=tmp_path)
    assert find_keras_model_dir(bundle, log=said.append) is None
    assert said and "records no sha256 of its source model" in said[0]


def test_a_source_model_that_is_not_there_leaves_the_keras_rows_out_with_a_note(tmp_path):
    # a shipped bundle names runs/neu, which a line PC or a fresh checkout does not have
    from types import SimpleNamespace

    from edgecnn.bench import find_keras_model_dir

    said = []
    bundle = SimpleNamespace(manifest={"source_model": {"path": "runs/nowhere",
                                                        "sha256": "0" * 64}},
                             path=tmp_path / "bundle")
    assert find_keras_model_dir(bundle, log=said.append) is None
    assert said and "source model runs/nowhere is not here" in said[0]
    assert "--keras DIR" in said[0]
