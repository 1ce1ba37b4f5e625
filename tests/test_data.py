"""Dataset loaders and recording reader on the shipped real samples and on broken copies."""

from __future__ import annotations

import gzip
import logging
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from scipy.io import wavfile

from edgecnn.data import (
    CWRU_CLASSES,
    cwru_label,
    load_dataset,
    load_image_folder,
    load_lecture_npz,
    load_mnist,
    load_recordings,
)
from edgecnn.data.images import flat_class_name
from edgecnn.deploy.errors import DataError, InputError, SourceError
from edgecnn.deploy.preprocess import resample
from edgecnn.deploy.recordings import read_recording
from edgecnn.deploy.spec import SignalSpec
from edgecnn.tasks import TASKS

CALIB = Path(__file__).resolve().parents[1] / "calibration_data"
NEU = CALIB / "neu"
CWRU = CALIB / "cwru"
MNIST = CALIB / "mnist"
NEU_CLASSES = ("crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale",
               "scratches")
SPEC = SignalSpec(sample_rate=12000.0, window_length=10000)
NORMAL = "normal_0_97.mat"
B007 = "12k_Drive_End_B007_1_119.mat"
IR021 = "12k_Drive_End_IR021_2_211.mat"


@pytest.fixture
def data_dir(tmp_path):
    """A fresh folder whose path holds a space."""
    path = tmp_path / "data dir"
    path.mkdir()
    return path


def copy_neu(target: Path, classes, per_class: int, flat: bool = False) -> list[Path]:
    copied = []
    for name in classes:
        for src in sorted((NEU / name).glob("*.jpg"))[:per_class]:
            dst = target / src.name if flat else target / name / src.name
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
            copied.append(dst)
    return copied


def de_samples(name: str) -> np.ndarray:
    data = scipy.io.loadmat(str(CWRU / name))
    return next(v for k, v in data.items() if k.endswith("_DE_time")).ravel()


# ----------------------------------------------------------------------------- images

def test_neu_class_folders_load_with_folder_labels():
    samples = load_image_folder(NEU)
    assert samples.kind == "image"
    assert samples.class_names == NEU_CLASSES
    assert samples.counts() == {name: 20 for name in NEU_CLASSES}
    assert all(img.dtype == np.uint8 and img.shape == (200, 200) for img in samples.items)
    for source, label in zip(samples.sources, samples.labels):
        assert source.split("/")[0] == NEU_CLASSES[label]
    assert samples.skipped == [] and len(samples.fingerprint) == 64
    assert (samples.positions == 0).all()


def test_neu_flat_names_give_the_same_labels(data_dir):
    copy_neu(data_dir, NEU_CLASSES, 3, flat=True)
    samples = load_image_folder(data_dir, color="bgr")
    assert samples.class_names == NEU_CLASSES
    assert samples.counts() == {name: 3 for name in NEU_CLASSES}
    for source, label in zip(samples.sources, samples.labels):
        assert "/" not in source and source.startswith(NEU_CLASSES[label] + "_")
    assert samples.items[0].shape == (200, 200, 3)
    assert flat_class_name("rolled-in_scale_12.jpg") == "rolled-in_scale"
    assert flat_class_name("pitted_surface_3.JPG") == "pitted_surface"
    assert flat_class_name("scratches.jpg") is None


def test_broken_images_are_skipped_and_counted(data_dir, caplog):
    copy_neu(data_dir, ("crazing", "patches"), 4)
    good = (data_dir / "crazing" / "crazing_1.jpg").read_bytes()
    (data_dir / "crazing" / "crazing_900.jpg").write_bytes(good[: len(good) // 2])
    (data_dir / "patches" / "patches_901.JPG").write_text("not an image at all\n")
    (data_dir / "patches" / "notes.txt").write_text("ignored: not an image suffix")
    (data_dir / "stray.png").write_bytes(good)  # flat file without <class>_<n> name
    with caplog.at_level(logging.WARNING, logger="edgecnn.data"):
        samples = load_image_folder(data_dir)
    assert len(samples) == 8
    assert sorted(s.path for s in samples.skipped) == [
        "crazing/crazing_900.jpg", "patches/patches_901.JPG", "stray.png"]
    assert "truncated" in next(s.reason for s in samples.skipped if "900" in s.path)
    warned = [r.getMessage() for r in caplog.records if r.name == "edgecnn.data"]
    assert len(warned) == 3 and any("patches_901.JPG" in m for m in warned)


def test_empty_or_single_class_image_folder_is_refused(data_dir):
    with pytest.raises(DataError, match="no usable samples"):
        load_image_folder(data_dir)
    copy_neu(data_dir, ("scratches",), 3)
    with pytest.raises(DataError, match="only one class"):
        load_image_folder(data_dir)
    # Evaluating a model on a held-out folder of one class is fine.
    samples = load_image_folder(data_dir, labels=NEU_CLASSES)
    assert set(samples.labels) == {NEU_CLASSES.index("scratches")}


def test_model_label_order_is_followed_and_unknown_classes_refused(data_dir):
    copy_neu(data_dir, ("inclusion", "scratches"), 2)
    order = tuple(reversed(NEU_CLASSES))
    samples = load_image_folder(data_dir, labels=order)
    assert samples.class_names == order
    for source, label in zip(samples.sources, samples.labels):
        assert order[label] == source.split("/")[0]
    with pytest.raises(DataError) as err:
        load_image_folder(data_dir, labels=("crazing", "inclusion"))
    assert "scratches" in str(err.value) and "'crazing', 'inclusion'" in str(err.value)


# ----------------------------------------------------------------------------- MNIST

def test_mnist_calibration_pair_loads():
    samples = load_mnist(MNIST)
    assert samples.items.shape == (500, 28, 28) and samples.items.dtype == np.uint8
    assert samples.class_names == tuple(str(d) for d in range(10))
    assert samples.counts() == {str(d): 50 for d in range(10)}
    assert samples.items.max() == 255 and len(set(samples.sources)) == 500
    by_file = load_mnist(MNIST / "calib-images-idx3-ubyte.gz", labels=tuple("9876543210"))
    assert np.array_equal(by_file.labels, 9 - samples.labels)


def test_mnist_raw_copy_with_other_prefix_loads(data_dir):
    for kind in ("images-idx3", "labels-idx1"):
        raw = gzip.decompress((MNIST / f"calib-{kind}-ubyte.gz").read_bytes())
        (data_dir / f"t10k-{kind}-ubyte").write_bytes(raw)
    samples = load_mnist(data_dir)
    reference = load_mnist(MNIST)
    assert np.array_equal(samples.items, reference.items)
    assert np.array_equal(samples.labels, reference.labels)


def _raw_pair(folder: Path) -> tuple[Path, Path]:
    images = folder / "x-images-idx3-ubyte"
    labels = folder / "x-labels-idx1-ubyte"
    images.write_bytes(gzip.decompress((MNIST / "calib-images-idx3-ubyte.gz").read_bytes()))
    labels.write_bytes(gzip.decompress((MNIST / "calib-labels-idx1-ubyte.gz").read_bytes()))
    return images, labels


def test_truncated_idx_is_refused_with_sizes(data_dir):
    images, _ = _raw_pair(data_dir)
    images.write_bytes(images.read_bytes()[:-100])
    with pytest.raises(DataError) as err:
        load_mnist(data_dir)
    message = str(err.value)
    assert "x-images-idx3-ubyte" in message and "truncated" in message
    assert str(16 + 500 * 28 * 28) in message and str(16 + 500 * 28 * 28 - 100) in message


def test_bad_magic_and_damaged_gzip_are_refused(data_dir):
    _, labels = _raw_pair(data_dir)
    labels.write_bytes((2051).to_bytes(4, "big") + labels.read_bytes()[4:])
    with pytest.raises(DataError, match="expected magic number 2049; found 2051"):
        load_mnist(data_dir)
    gz = data_dir / "gz"
    gz.mkdir()
    shutil.copyfile(MNIST / "calib-labels-idx1-ubyte.gz", gz / "calib-labels-idx1-ubyte.gz")
    blob = (MNIST / "calib-images-idx3-ubyte.gz").read_bytes()
    (gz / "calib-images-idx3-ubyte.gz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError, match="damaged gzip"):
        load_mnist(gz)


def test_mnist_folder_with_two_pairs_is_ambiguous(data_dir):
    _raw_pair(data_dir)
    shutil.copytree(MNIST, data_dir, dirs_exist_ok=True)
    with pytest.raises(DataError, match="exactly one IDX images/labels pair"):
        load_mnist(data_dir)


# ----------------------------------------------------------------------------- CWRU

def test_cwru_clips_give_ten_classes_of_windows():
    samples = load_recordings(CWRU, SPEC, stride=2500)
    assert samples.kind == "signal" and samples.sample_rate == 12000.0
    assert samples.class_names == CWRU_CLASSES
    # Every clip is 30 000 samples at 12 kHz (normal: 120 000 at 48 kHz, resampled).
    assert samples.items.shape == (90, 10000) and samples.items.dtype == np.float32
    assert samples.counts() == {name: 9 for name in CWRU_CLASSES}
    assert sorted(set(samples.sources)) == sorted(p.name for p in CWRU.glob("*.mat"))
    for source in set(samples.sources):
        rows = [i for i, s in enumerate(samples.sources) if s == source]
        assert list(samples.positions[rows]) == list(range(0, 20001, 2500))
        assert CWRU_CLASSES[samples.labels[rows[0]]] == cwru_label(source)
    # A 12 kHz window is the raw samples; the normal clip went through resampling.
    row = samples.sources.index(B007) + 1
    assert np.array_equal(samples.items[row], de_samples(B007)[2500:12500].astype(np.float32))
    normal = read_recording(CWRU / NORMAL)
    assert normal.sample_rate == 48000.0 and len(normal.samples) == 120000
    assert normal.rpm == 1796.0 and normal.channel == "DE"
    down = resample(normal.samples, 48000.0, 12000.0)
    assert len(down) == 30000
    row = samples.sources.index(NORMAL)
    assert np.allclose(samples.items[row], down[:10000], atol=1e-6)


def test_cwru_with_model_labels():
    order = tuple(reversed(CWRU_CLASSES))
    samples = load_recordings(CWRU, SPEC, stride=10000, labels=order)
    assert samples.class_names == order
    assert CWRU_CLASSES[::-1][samples.labels[samples.sources.index(NORMAL)]] == "normal"
    with pytest.raises(DataError, match="does not know: 'B007', 'B014'"):
        load_recordings(CWRU, SPEC, stride=10000, labels=CWRU_CLASSES[:3])


def test_cwru_names():
    assert cwru_label("12k_Drive_End_OR021@6_3_237.mat") == "OR021@6"
    assert cwru_label("48k_Drive_End_B014_0_189.mat") == "B014"
    assert cwru_label("sub/normal_3_100.mat") == "normal"
    assert cwru_label("12k_Drive_End_IR028_0_3001.mat") is None
    assert cwru_label("12k_Drive_End_OR007@3_0_144.mat") is None


def test_bad_cwru_files_are_skipped_and_counted(data_dir, caplog):
    for name in (B007, IR021, NORMAL):
        shutil.copyfile(CWRU / name, data_dir / name)
    scipy.io.savemat(str(data_dir / "12k_Drive_End_IR007_1_999.mat"),
                     {"X999_FE_time": np.zeros((20000, 1)), "X999RPM": np.array([[1772]])})
    blob = (CWRU / IR021).read_bytes()
    (data_dir / "12k_Drive_End_B014_0_998.mat").write_bytes(blob[: len(blob) // 3])
    (data_dir / "mystery.mat").write_bytes(blob)
    with caplog.at_level(logging.WARNING, logger="edgecnn.data"):
        samples = load_recordings(data_dir, SPEC, stride=5000, label_rule="cwru")
    assert samples.class_names == ("normal", "IR021", "B007")
    assert len(samples) == 3 * 5
    reasons = {s.path: s.reason for s in samples.skipped}
    assert set(reasons) == {"12k_Drive_End_IR007_1_999.mat", "12k_Drive_End_B014_0_998.mat",
                            "mystery.mat"}
    assert "_DE_time" in reasons["12k_Drive_End_IR007_1_999.mat"]
    assert "cannot read recording" in reasons["12k_Drive_End_B014_0_998.mat"]
    assert "cannot tell its class" in reasons["mystery.mat"]
    assert sum("skipping" in r.getMessage() for r in caplog.records) == 3


# ----------------------------------------------------------------------------- generic recordings

def _write_generic_recordings(root: Path) -> dict[str, np.ndarray]:
    """The same two real signals stored in every supported format, 12 kHz unless noted."""
    healthy = resample(de_samples(NORMAL), 48000.0, 12000.0)
    faulty = de_samples(B007)
    np.save(root / "healthy_a.npy", healthy)  # no rate inside: the manifest gives it
    with open(root / "faulty_b.csv", "w") as handle:
        handle.write("# sample_rate=12000\ntime,DE\n")
        handle.writelines(f"{i / 12000:.6f},{v!r}\n" for i, v in enumerate(faulty.tolist()))
    np.savez(root / "faulty_c.npz", signal=faulty, fs=np.float64(12000))
    pcm = np.round(resample(healthy, 12000.0, 24000.0) / 8 * 32767).astype(np.int16)
    wavfile.write(str(root / "healthy_d.wav"), 24000, pcm)
    (root / "labels.csv").write_text("file,label,sample_rate\nhealthy_a.npy,ok,12000\n"
                                     "faulty_b.csv,worn,\nfaulty_c.npz,worn,\n"
                                     "healthy_d.wav,ok,\nmissing_e.npy,ok,12000\n")
    return {"healthy": healthy, "faulty": faulty, "pcm": pcm}


def test_recordings_of_every_format_with_a_manifest(data_dir):
    signals = _write_generic_recordings(data_dir)
    samples = load_dataset("vibration", data_dir, SPEC, stride=5000)
    assert samples.class_names == ("ok", "worn")
    assert sorted(set(samples.sources)) == ["faulty_b.csv", "faulty_c.npz", "healthy_a.npy",
                                            "healthy_d.wav"]
    assert [s.path for s in samples.skipped] == ["missing_e.npy"]
    per_file = {s: samples.sources.count(s) for s in set(samples.sources)}
    assert per_file == {"faulty_b.csv": 5, "faulty_c.npz": 5, "healthy_a.npy": 5,
                        "healthy_d.wav": 5}
    first = {s: samples.items[samples.sources.index(s)] for s in per_file}
    assert np.allclose(first["faulty_b.csv"], signals["faulty"][:10000], atol=1e-6)
    assert np.array_equal(first["faulty_c.npz"], signals["faulty"][:10000].astype(np.float32))
    assert np.array_equal(first["healthy_a.npy"], signals["healthy"][:10000].astype(np.float32))
    wav = resample(signals["pcm"] / 32768.0, 24000.0, 12000.0)[:10000]
    assert np.allclose(first["healthy_d.wav"], wav, atol=1e-6)
    assert samples.labels[samples.sources.index("healthy_d.wav")] == 0


def test_recordings_labelled_by_pattern_and_without_rate(data_dir):
    _write_generic_recordings(data_dir)
    samples = load_dataset("vibration", data_dir, SPEC, stride=5000,
                           label_pattern=r"^(?P<label>[a-z]+)_[a-z]\.(csv|npz|wav)$")
    assert samples.counts() == {"faulty": 10, "healthy": 5}
    assert [s.path for s in samples.skipped] == ["healthy_a.npy"]  # no match for .npy
    # a file without a rate is that file's problem: skipped, saying how to give it
    with pytest.raises(DataError, match="the reasons the files were skipped are above"):
        load_dataset("vibration", data_dir, SPEC, stride=5000, label_pattern=r"(?P<label>\w+)_a")
    with pytest.raises(InputError, match="does not state its sample rate; give it with "
                                         "--sample-rate HZ"):
        read_recording(data_dir / "healthy_a.npy")


def test_read_recording_refuses_conflicts_and_corrupt_files(data_dir):
    with pytest.raises(InputError, match="48000 Hz but --sample-rate says 12000 Hz"):
        read_recording(CWRU / NORMAL, sample_rate=12000)
    assert read_recording(CWRU / NORMAL, sample_rate=48000).sample_rate == 48000.0
    np.save(data_dir / "two.npy", np.stack([np.arange(50.0), -np.arange(50.0)], axis=1))
    with pytest.raises(SourceError, match="--channel INDEX, 0..1"):
        read_recording(data_dir / "two.npy", sample_rate=100)
    assert read_recording(data_dir / "two.npy", 1, sample_rate=100).samples[3] == -3.0
    (data_dir / "cut.wav").write_bytes(b"RIFF\x00\x01")
    (data_dir / "empty.csv").write_text("")
    for name in ("cut.wav", "empty.csv", "absent.npz"):
        with pytest.raises(SourceError, match=name.replace(".", r"\.")):
            read_recording(data_dir / name, sample_rate=100)


# ----------------------------------------------------------------------------- lecture layout

def _lecture_arrays() -> dict[str, np.ndarray]:
    rows = np.stack([de_samples(name)[:20000] for name in (B007, IR021, B007)])
    label = np.array([[1, 0], [0, 1], [1, 0]], dtype=np.float32)
    return {"signal": rows, "label": label, "time": np.arange(20000) / 12000.0}


def test_lecture_npz_rows_become_windows(data_dir):
    arrays = _lecture_arrays()
    np.savez(data_dir / "lecture.npz", **arrays)
    samples = load_lecture_npz(data_dir / "lecture.npz", SPEC)
    assert samples.class_names == ("0", "1") and samples.sample_rate == 12000.0
    assert samples.items.shape == (6, 10000)
    assert samples.sources == ["lecture.npz#0"] * 2 + ["lecture.npz#1"] * 2 + ["lecture.npz#2"] * 2
    assert list(samples.labels) == [0, 0, 1, 1, 0, 0]
    assert np.array_equal(samples.items[3], arrays["signal"][1, 10000:].astype(np.float32))
    exact = {**arrays, "signal": arrays["signal"][:, :10000], "time": arrays["time"][:10000],
             "labels": np.array(["ball", "inner"])}
    np.savez(data_dir / "exact.npz", **exact)
    one_each = load_dataset("lecture-npz", data_dir / "exact.npz", SPEC)
    assert one_each.items.shape == (3, 10000) and one_each.class_names == ("ball", "inner")


def test_lecture_pickle_needs_allow_pickle(data_dir):
    path = data_dir / "lecture.pkl"
    with open(path, "wb") as handle:
        pickle.dump(_lecture_arrays(), handle)
    with pytest.raises(DataError, match="--allow-pickle"):
        load_lecture_npz(path, SPEC)
    assert len(load_lecture_npz(path, SPEC, allow_pickle=True)) == 6
    np.savez(data_dir / "objects.npz", data=np.array([_lecture_arrays()], dtype=object))
    with pytest.raises(DataError, match="arbitrary code"):
        load_lecture_npz(data_dir / "objects.npz", SPEC, allow_pickle=True)


# ----------------------------------------------------------------------------- load_dataset

def test_task_table_and_dispatch_errors(data_dir):
    assert {"images", "neu", "mnist", "cwru", "vibration", "lecture-npz"} <= set(TASKS)
    assert TASKS["neu"] is TASKS["images"]
    with pytest.raises(DataError, match="did you mean cwru.*valid tasks"):
        load_dataset("cwr", CWRU)
    with pytest.raises(DataError, match="does not exist"):
        load_dataset("images", data_dir / "nothing here")
    with pytest.raises(InputError, match="does not take stride"):
        load_dataset("images", NEU, stride=4)
    with pytest.raises(DataError, match="labels.csv"):
        load_dataset("vibration", CWRU, SPEC)
    assert len(load_dataset("neu", NEU)) == 120
    assert load_dataset("cwru", CWRU, SPEC).items.shape == (90, 10000)  # stride 2500
