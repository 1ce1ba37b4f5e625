"""One validating manifest loader: every malformed manifest is a clean BundleError (exit 2)
naming the key path; the shipped manifests open unchanged and round-trip byte for byte."""

from __future__ import annotations

import json

import pytest

from bundle_helpers import (
    CALIBRATION,
    assert_clean_refusal,
    copy_shipped,
    edit,
    run_cli,
    write_manifest,
)
from edgecnn.deploy.bundle import MANIFEST, Bundle, shipped_bundles
from edgecnn.deploy.engine import engine_for_file, open_engine
from edgecnn.deploy.errors import BundleError
from edgecnn.deploy.formats import FORMATS, PREFERENCE, REFERENCES, model_format, preferred
from edgecnn.deploy.manifest import FileEntry, json_depth, parse_json


@pytest.fixture()
def cwru(tmp_path):
    return copy_shipped("cwru", tmp_path / "cwru copy")


@pytest.fixture()
def neu(tmp_path):
    return copy_shipped("neu", tmp_path / "neu copy")


@pytest.mark.parametrize("name", sorted(shipped_bundles()))
def test_shipped_manifests_open_and_entries_round_trip_byte_for_byte(name):
    bundle = Bundle.open(name)
    for fmt, entry in bundle.files.items():
        assert isinstance(entry, FileEntry) and entry.format == fmt
        assert json.dumps(entry.to_dict(), indent=2) == \
            json.dumps(bundle.manifest["files"][fmt], indent=2)
        assert entry.precision == FORMATS[fmt].precision
        assert entry.classes == len(bundle.labels)
    text = (bundle.path / MANIFEST).read_text(encoding="utf-8")
    assert json.dumps(bundle.manifest, indent=2) + "\n" == text


def test_the_format_table_drives_engine_preference_and_reference():
    assert PREFERENCE[0] == "onnx-int8" and REFERENCES == ("onnx", "tflite")
    assert preferred(["tflite", "tflite-int8", "onnx"]) == ["onnx", "tflite-int8", "tflite"]
    assert {f.reference for f in FORMATS.values()} == {"onnx", "tflite"}
    for row in FORMATS.values():
        assert FORMATS[row.reference].precision == "float32"
        assert FORMATS[row.reference].runtime == row.runtime
    from edgecnn.export.formats import FORMATS as EXPORT

    assert list(EXPORT) == list(FORMATS)
    assert all(EXPORT[n].lean is FORMATS[n] for n in FORMATS)
    with pytest.raises(BundleError, match="unknown model format 'onnx-int4'"):
        model_format("onnx-int4")
    bundle = Bundle.open("cwru")
    with pytest.raises(BundleError, match="unknown model format"):
        engine_for_file(bundle.file("onnx"), "onnx8")


@pytest.mark.parametrize("data, says", [
    ([1, 2], "expected a JSON object at the top level, found a list"),
    (None, "expected a JSON object at the top level, found null"),
    ("\"edgecnn-bundle\"", "found 'edgecnn-bundle'"),
])
def test_a_manifest_that_is_not_an_object(cwru, data, says):
    write_manifest(cwru, json.dumps(data) if not isinstance(data, str) else data)
    with pytest.raises(BundleError, match=says):
        Bundle.open(cwru)


def _entry(fmt, change):
    def apply(data):
        value = change(data["files"][fmt])
        if value is not None:
            data["files"][fmt] = value
    return apply


@pytest.mark.parametrize("change, says", [
    (lambda e: "model.onnx", "files.onnx: expected an object, found 'model.onnx'"),
    (lambda e: e.pop("file") and None, "files.onnx.file: expected a string, found null"),
    (lambda e: e.update(file=7), "files.onnx.file: expected a string, found 7"),
    (lambda e: e.update(sha256=None), "files.onnx.sha256: expected a string, found null"),
    (lambda e: e.update(sha256="abc"), "files.onnx.sha256: expected 64 lowercase hex"),
    (lambda e: e.update(size="big"), "files.onnx.size: expected a whole number"),
    (lambda e: e.update(outputs={"a": 1}), "files.onnx.outputs: expected a list"),
    (lambda e: e["inputs"][0].update(shape=[None, "x", -3]), r"files.onnx.inputs\[0\].shape\[2\]"),
    (lambda e: e.update(format="tflite"), "files.onnx.format: expected 'onnx'"),
    (lambda e: e.update(precision="int8"), "files.onnx.precision: a onnx file is float32"),
    (lambda e: e.update(float_nodes=[1]), r"files.onnx.float_nodes\[0\]: expected a string"),
])
def test_a_malformed_file_entry_names_its_key(cwru, change, says):
    edit(cwru, _entry("onnx", change))
    with pytest.raises(BundleError, match=says):
        Bundle.open(cwru)


def test_file_7_from_the_cli_is_exit_2_without_traceback(cwru):
    edit(cwru, _entry("onnx-int8", lambda e: e.update(file=7)))
    proc = run_cli("eval", cwru, "--data", CALIBRATION / "cwru")
    assert_clean_refusal(proc, "files.onnx-int8.file: expected a string, found 7",
                         str(cwru / MANIFEST))


@pytest.mark.parametrize("change, says", [
    (lambda d: d.update(files=[]), "files: expected an object, found a list"),
    (lambda d: d.update(files={}), "files: lists no model files"),
    (lambda d: d["files"].update({"onnx-int4": d["files"]["onnx"]}),
     "files.onnx-int4: unknown model format"),
    (lambda d: d.update(spec="neu"), "spec: expected an object"),
    (lambda d: d["spec"].update(labels="abc"), "spec.labels: expected a list"),
    (lambda d: d["spec"]["labels"].__setitem__(0, 3), r"spec.labels\[0\]: expected a string"),
    (lambda d: d["spec"]["signal"].update(window_length=10 ** 9),
     "spec.signal.window_length: 1000000000 is out of bounds"),
    (lambda d: d["spec"]["signal"].update(sample_rate="fast"),
     "spec.signal.sample_rate: expected a number"),
    (lambda d: d["spec"]["signal"].update(window=[7]), "spec.signal.window"),
    (lambda d: d.update(labels=list(reversed(d["labels"]))), "labels: .* differs from spec"),
    (lambda d: d.update(source_model=[1]), "source_model: expected an object"),
    (lambda d: d.update(task=5), "task: expected a string"),
    (lambda d: d.update(version=True), "bundle version True is not supported"),
    (lambda d: d.update(version=2), "bundle version 2 is not supported"),
    (lambda d: d.update(version="1"), "bundle version the text '1', not a number"),
    (lambda d: d.update(version=10 ** 20), "a number of more than 12 digits"),
    (lambda d: d["spec"].update(kind=[]), 'spec.kind: expected "image" or "signal", found a list'),
    (lambda d: d["spec"]["signal"].update(std=10 ** 400), "spec.signal.std: expected a finite"),
    (lambda d: d["spec"]["signal"].update(window="x"), "window 'x' is not a SciPy window"),
    (lambda d: d["spec"]["signal"].update(window=["tukey", float("nan")]),
     r"spec.signal.window\[1\]: expected a finite number"),
    (lambda d: d["spec"]["signal"].update(eps=-1), "eps must be a positive number"),
    # what a run reads besides the files: refused as one line, not a crash in the service
    (lambda d: d.update(default_format=["onnx"]), "default_format: expected a string"),
    (lambda d: d.update(default_format="nowhere"), "default_format: 'nowhere' is not one of"),
    (lambda d: d.update(verification={"onnx-int8": 5}),
     "verification.onnx-int8: expected an object, found 5"),
    (lambda d: d.update(verification={"onnx": {"passed": "yes"}}),
     "verification.onnx.passed: expected true or false"),
    (lambda d: d["health"].pop("limits"), "health.limits: expected an object, found null"),
    (lambda d: d["health"].update(limits=[1]), "health.limits: expected an object"),
    (lambda d: d["health"]["limits"]["gain_change"].update(feature="nope"),
     "health.limits.gain_change.feature: 'nope' is not one of rms"),
    (lambda d: d["health"]["limits"]["gain_change"].update(below="x"),
     "health.limits.gain_change.below: expected a number"),
    (lambda d: d["health"]["limits"]["hum"].update(above=float("nan")),
     "health.limits.hum.above: expected a finite number"),
    (lambda d: d["health"].update(kind="image"), "health.kind: expected 'signal'"),
    (lambda d: d["spec"]["labels"].__setitem__(0, "cr\nazing"),
     "labels must be non-empty and free of control characters"),
])
def test_malformed_top_level_keys_name_their_path(cwru, change, says):
    edit(cwru, change)
    with pytest.raises(BundleError, match=says):
        Bundle.open(cwru)


def test_a_huge_health_size_is_refused_not_allocated(neu):
    edit(neu, lambda d: d["health"].update(size=[100000, 100000]))
    with pytest.raises(BundleError, match=r"health.size\[0\]: 100000 is out of bounds"):
        Bundle.open(neu)


def test_a_huge_image_size_is_refused_not_allocated(neu):
    edit(neu, lambda d: d["spec"]["image"].update(height=100_000, width=100_000))
    with pytest.raises(BundleError, match=r"spec.image.height: 100000 is out of bounds "
                                          r"\(1 to 4096\)"):
        Bundle.open(neu)
    proc = run_cli("run", "camera", neu, "--source", CALIBRATION / "neu")
    assert_clean_refusal(proc, "spec.image.height: 100000 is out of bounds")


def test_deep_nesting_and_huge_files_are_refused_before_parsing(cwru):
    deep = "[" * 100_000 + "]" * 100_000
    assert json_depth(deep.encode()) == 100_000
    assert json_depth(b'{"a": "[[[[", "b": [1, {"c": "\\"]]"}]}') == 3
    # an unterminated string of escaped quotes: one linear pass (a search from every quote
    # took 54 s on 130 kB of them and would take hours on these 4 MB)
    assert json_depth(b'"' + b'\\"' * 2_000_000) == 0
    write_manifest(cwru, deep)
    with pytest.raises(BundleError, match="nests 100000 levels deep; at most 32"):
        Bundle.open(cwru)
    proc = run_cli("eval", cwru, "--data", CALIBRATION / "cwru")
    assert_clean_refusal(proc, "nests 100000 levels deep")
    write_manifest(cwru, json.dumps({"format": "edgecnn-bundle", "pad": "x" * (5 << 20)}))
    with pytest.raises(BundleError, match="at most 4194304 are read"):
        Bundle.open(cwru)
    with pytest.raises(BundleError, match="not readable JSON"):
        parse_json(b'{"a": ' + b"9" * 5000 + b"}", "test")   # beyond int digit limits
    write_manifest(cwru, "{not json")
    with pytest.raises(BundleError, match="not readable JSON"):
        Bundle.open(cwru)


def test_a_key_named_twice_is_refused(cwru):
    """Readers differ in which of two equal keys wins (Python's json: the last), so a
    manifest that says one thing twice is refused, naming the key."""
    text = (cwru / MANIFEST).read_text()
    data = json.loads(text)
    write_manifest(cwru, json.dumps(data)[:-1] + ', "labels": ["a", "b"]}')
    with pytest.raises(BundleError, match="names the key 'labels' twice"):
        Bundle.open(cwru)
    assert parse_json(b'{"a": [{"b": 1, "c": 2}], "d": {"b": 3}}', "t") == \
        {"a": [{"b": 1, "c": 2}], "d": {"b": 3}}             # same name, other objects
    with pytest.raises(BundleError, match="names the key 'b' twice"):
        parse_json(b'{"a": [{"b": 1, "b": 2}]}', "t")
    write_manifest(cwru, text)
    assert Bundle.open(cwru).labels


def test_three_labels_for_a_six_class_model(neu):
    """Stated output widths are checked at load; the model's own width when it opens."""
    three = ["crazing", "inclusion", "patches"]

    def relabel(data):
        data["spec"]["labels"] = data["labels"] = three
    edit(neu, relabel)
    with pytest.raises(BundleError, match=r"files.onnx.outputs\[0\].shape: the model has 6 "
                                          "outputs but the manifest lists 3 labels"):
        Bundle.open(neu)

    def drop_outputs(data):
        for entry in data["files"].values():
            entry["outputs"] = []
    edit(neu, drop_outputs)
    bundle = Bundle.open(neu)
    for fmt in ("onnx", "onnx-int8", "tflite-int8"):
        with pytest.raises(BundleError, match="has 6 outputs but bundle .* lists 3 labels"):
            open_engine(bundle, fmt)
    proc = run_cli("eval", neu, "--data", CALIBRATION / "neu")
    assert_clean_refusal(proc, "has 6 outputs", "lists 3 labels")


def test_no_code_tests_a_format_by_its_name():
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    pattern = re.compile(r'startswith\("(onnx|tflite)|"(int8|fp16)" in ')
    hits = [f"{path.relative_to(root)}:{number}"
            for folder in ("edgecnn", "export", "deploy")
            for path in sorted((root / folder).rglob("*.py"))
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
            if pattern.search(line)]
    assert hits == []
