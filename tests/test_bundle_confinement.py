"""A bundle is confined to its folder: no '..', no absolute path, no link leading out.

Every hostile bundle here is a copy of a shipped bundle with one thing changed; each is
refused before the outside file is opened, and no message shows anything of it.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path

import pytest

from bundle_helpers import CALIBRATION, assert_clean_refusal, copy_shipped, edit, manifest, run_cli
from edgecnn.deploy import bundle as bundle_module
from edgecnn.deploy.bundle import MANIFEST, Bundle, sha256_file, shipped_bundles
from edgecnn.deploy.engine import open_engine
from edgecnn.deploy.errors import BundleError

PASSWD = "/etc/passwd"


@pytest.fixture()
def cwru(tmp_path):
    return copy_shipped("cwru", tmp_path / "bundle")


def _point(bundle, fmt, name, sha=None):
    def change(data):
        data["files"][fmt]["file"] = name
        if sha:
            data["files"][fmt]["sha256"] = sha
    return edit(bundle, change)


@pytest.mark.parametrize("name, says", [("../../../../etc/passwd", "'..'"),
                                        (PASSWD, "absolute path"),
                                        ("sub/../../model.onnx", "'..'")])
def test_a_name_that_leaves_the_folder_is_refused_at_open(cwru, name, says):
    _point(cwru, "onnx", name)
    with pytest.raises(BundleError, match="files.onnx.file") as exc:
        Bundle.open(cwru)
    assert says in str(exc.value) and "refused" in str(exc.value)


def test_passwd_is_neither_read_nor_shown(cwru, monkeypatch):
    """The old runtime printed the sha256 of any file a manifest named: an oracle."""
    opened = []
    real = bundle_module.sha256_file
    monkeypatch.setattr(bundle_module, "sha256_file", lambda p: opened.append(p) or real(p))
    _point(cwru, "onnx", "../../../../etc/passwd")
    proc = run_cli("eval", cwru, "--format", "onnx", "--data", CALIBRATION / "cwru")
    line = assert_clean_refusal(proc, "files.onnx.file", "leads out of the bundle folder")
    if os.path.isfile(PASSWD):
        secret = hashlib.sha256(open(PASSWD, "rb").read()).hexdigest()
        assert secret not in proc.stderr + proc.stdout
    assert "root:" not in line
    with pytest.raises(BundleError):
        Bundle.open(cwru)
    assert opened == []


def test_a_valid_model_outside_the_bundle_is_refused(tmp_path, cwru):
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(cwru / "model.onnx", outside / "m.onnx")
    _point(cwru, "onnx", "../outside/m.onnx", sha256_file(outside / "m.onnx"))
    proc = run_cli("run", "vibration", cwru, "--format", "onnx", "--source",
                   CALIBRATION / "cwru" / "12k_Drive_End_B007_1_119.mat", "--max-windows", "2")
    assert_clean_refusal(proc, "files.onnx.file", "'../outside/m.onnx'")


def test_a_symlinked_model_file_that_leaves_is_refused_before_it_is_read(tmp_path, cwru,
                                                                         monkeypatch):
    outside = tmp_path / "elsewhere.onnx"
    shutil.move(cwru / "model.onnx", outside)   # same bytes: the hash would match
    (cwru / "model.onnx").symlink_to(outside)
    hashed = []
    real = bundle_module.sha256_file
    monkeypatch.setattr(bundle_module, "sha256_file", lambda p: hashed.append(p) or real(p))
    bundle = Bundle.open(cwru)              # the manifest itself is fine
    with pytest.raises(BundleError, match="link that leads out of the bundle folder"):
        bundle.file("onnx")
    with pytest.raises(BundleError, match="files.onnx.file"):
        open_engine(bundle, "onnx")
    assert hashed == []
    open_engine(bundle, "onnx-int8")        # the other files still open


def test_a_symlink_inside_the_bundle_is_fine(cwru):
    os.rename(cwru / "model.onnx", cwru / "real.onnx")
    (cwru / "model.onnx").symlink_to("real.onnx")
    assert Bundle.open(cwru).file("onnx").name == "real.onnx"


@pytest.mark.parametrize("make, says", [
    (lambda p: p.mkdir(), "is a directory, not a regular file"),
    (lambda p: os.mkfifo(p), "is a FIFO, not a regular file"),
    (lambda p: p.symlink_to("gone.onnx"), "is missing"),
    (lambda p: None, "is missing"),
])
def test_a_model_file_that_is_not_a_regular_file_is_named_for_what_it_is(cwru, make, says):
    (cwru / "model.onnx").unlink()
    make(cwru / "model.onnx")
    with pytest.raises(BundleError, match="model.onnx " + re.escape(says)):
        open_engine(Bundle.open(cwru), "onnx")   # a FIFO is never opened: no hang


def test_a_symlinked_manifest_that_leaves_is_refused(tmp_path, cwru):
    outside = tmp_path / "manifest.json"
    shutil.move(cwru / MANIFEST, outside)
    (cwru / MANIFEST).symlink_to(outside)
    with pytest.raises(BundleError, match="edgecnn.json.*leads out of the bundle folder"):
        Bundle.open(cwru)
    with pytest.raises(BundleError, match="leads out"):
        Bundle.open(cwru / MANIFEST)        # given as the manifest path, too
    proc = run_cli("eval", cwru, "--data", CALIBRATION / "cwru")
    assert_clean_refusal(proc, "leads out of the bundle folder")


def test_a_bundle_folder_reached_through_a_link_still_opens(tmp_path, cwru):
    (tmp_path / "current").symlink_to(cwru)
    bundle = Bundle.open(tmp_path / "current")
    assert bundle.file("onnx").is_file()


def test_a_bare_name_means_the_shipped_bundle_and_a_path_means_the_folder(tmp_path,
                                                                          monkeypatch):
    local = copy_shipped("cwru", tmp_path / "neu")  # a folder named neu in the cwd
    monkeypatch.chdir(tmp_path)
    assert Bundle.open("neu").path == shipped_bundles()["neu"]
    assert Bundle.open("./neu").spec.kind == "signal"
    assert Bundle.open(local).labels == tuple(manifest(local)["labels"])
    proc = run_cli("models", cwd=tmp_path)
    assert proc.returncode == 0 and str(shipped_bundles()["neu"]) in proc.stdout


def test_what_runs_is_what_was_hashed_even_if_the_file_is_swapped_after(cwru, monkeypatch):
    import numpy as np

    bundle = Bundle.open(cwru)
    x = np.random.default_rng(0).normal(size=(4, *bundle.spec.input_shape)).astype(np.float32)
    for fmt, other in (("onnx-int8", "model.onnx"), ("tflite-int8", "model.tflite")):
        expected = open_engine(bundle, fmt).predict(x)
        read = Bundle.model_bytes

        def read_then_swap(self, name=None, fmt=fmt, other=other):
            data = read(self, name)
            shutil.copy(cwru / other, cwru / self.file_entry(fmt).file)  # after the check
            return data
        monkeypatch.setattr(Bundle, "model_bytes", read_then_swap)
        np.testing.assert_array_equal(open_engine(bundle, fmt).predict(x), expected)
        monkeypatch.setattr(Bundle, "model_bytes", read)
        with pytest.raises(BundleError, match="does not match its manifest"):
            open_engine(bundle, fmt)             # the swap itself is caught next time


def test_a_model_file_of_another_size_is_refused_before_it_is_read(cwru, monkeypatch):
    # a sparse 2 GB file in place of the model took 2 GB of memory to hash
    bundle = Bundle.open(cwru)
    path = bundle.path / bundle.file_entry("onnx-int8").file
    with open(path, "r+b") as handle:
        handle.truncate(1 << 31)
    read = []
    monkeypatch.setattr(Path, "read_bytes", lambda self: read.append(self) or b"")
    with pytest.raises(BundleError, match=r"does not match its manifest \(2147483648 bytes"):
        Bundle.open(cwru).model_bytes("onnx-int8")
    assert not read


def test_a_label_that_is_no_unicode_text_is_refused_when_the_bundle_opens(cwru):
    import json

    data = json.loads((cwru / MANIFEST).read_text())
    data["spec"]["labels"][0] = "\ud800"
    (cwru / MANIFEST).write_text(json.dumps(data))               # escaped: \ud800
    with pytest.raises(BundleError, match=r"spec.labels\[0\]: .* lone surrogate"):
        Bundle.open(cwru)


def test_an_onnx_model_with_external_weights_is_refused(cwru, tmp_path):
    # ONNX Runtime reads such weights from the working folder: outside the bundle, its
    # hashes and its signature (a signed bundle ran with swapped weights)
    onnx = pytest.importorskip("onnx")
    from edgecnn.deploy.engine import OnnxEngine, onnx_external_data

    model = onnx.load(str(cwru / "model.onnx"))
    external = tmp_path / "ext.onnx"
    onnx.save_model(model, str(external), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="weights.bin", size_threshold=0)
    assert onnx_external_data(external.read_bytes())
    assert not onnx_external_data((cwru / "model.onnx").read_bytes())
    with pytest.raises(BundleError, match="keeps tensors in external data files"):
        OnnxEngine(external, "onnx")
