"""Raw-domain augmentation, the robustness report and source health, on real calibration
images and recordings and on generated videos."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from edgecnn.augment import (
    IMAGE_FAMILIES,
    SIGNAL_FAMILIES,
    ImageChange,
    SignalChange,
    apply_image,
    apply_signal,
    augment_batch,
    parse_families,
)
from edgecnn.data import load_dataset
from edgecnn.deploy.bundle import Bundle
from edgecnn.deploy.camera import run_camera
from edgecnn.deploy.errors import InputError
from edgecnn.deploy.faults import FaultConfig, FrameFaultDetector
from edgecnn.deploy.health import (
    HealthMonitor,
    fault_config_kwargs,
    fit_envelope,
    image_features,
    signal_features,
)
from edgecnn.deploy.preprocess import preprocess_image
from edgecnn.deploy.spec import ImageSpec, InputSpec
from edgecnn.robustness import IMAGE_SUITE, SIGNAL_SUITE, suite
from edgecnn.tasks import get_task
from runtime_helpers import CALIBRATION, make_image_bundle, neu_images, write_video

RATE = 12000.0


def run_cli(*args):
    return subprocess.run([sys.executable, "-c", "from edgecnn.cli import main; main()", *args],
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def labelled():
    return neu_images(20)   # in class order, as a folder of products reads


@pytest.fixture(scope="module")
def images(labelled):
    return [img for _, img in labelled]


@pytest.fixture(scope="module")
def recordings():
    spec = get_task("cwru").spec(("a", "b"))
    return load_dataset("cwru", CALIBRATION / "cwru", spec, stride=4096)


@pytest.fixture(scope="module")
def windows(recordings):
    return np.asarray(recordings.items)


def _feature(images, name):
    return np.mean([image_features(img, (128, 128))[name] for img in images])


def _changed(images, change, seed=0):
    rng = np.random.default_rng(seed)
    return [apply_image(img, change, rng) for img in images]


# --------------------------------------------------------------------------- augmentation

@pytest.mark.parametrize("change, feature, direction", [
    (ImageChange(gain=1.4), "mean", +1), (ImageChange(gain=0.6), "mean", -1),
    (ImageChange(offset=25), "mean", +1), (ImageChange(offset=-25), "mean", -1),
    (ImageChange(gamma=1.5), "mean", -1), (ImageChange(gamma=0.6), "mean", +1),
    (ImageChange(contrast=0.6), "std", -1), (ImageChange(noise=10), "noise", +1),
    (ImageChange(defocus=1.5), "sharpness", -1), (ImageChange(motion=9), "sharpness", -1),
    (ImageChange(jpeg=20), "noise", -1),  # JPEG removes fine detail / noise
])
def test_image_families_change_real_images_the_intended_way(images, change, feature,
                                                           direction):
    before = _feature(images[::5], feature)
    after = _feature(_changed(images[::5], change), feature)
    assert (after - before) * direction > 0.02 * abs(before), (feature, before, after)


def test_geometry_families_keep_shape_and_dtype_and_move_pixels(images):
    image = images[0]
    for change in (ImageChange(angle=6), ImageChange(scale=1.2), ImageChange(dx=0.06),
                   ImageChange(flip_h=True), ImageChange(quarter=1)):
        out = apply_image(image, change, np.random.default_rng(0))
        assert out.shape == image.shape and out.dtype == np.uint8
        assert np.mean(np.abs(out.astype(int) - image)) > 1.0
    np.testing.assert_array_equal(apply_image(image, ImageChange(flip_h=True),
                                              np.random.default_rng(0)), image[:, ::-1])


def test_augmentation_is_deterministic_with_a_seed_and_keeps_types(images, windows):
    families = tuple(IMAGE_FAMILIES)
    a = augment_batch(images[:8], "image", families, 1.0, np.random.default_rng(3))
    b = augment_batch(images[:8], "image", families, 1.0, np.random.default_rng(3))
    c = augment_batch(images[:8], "image", families, 1.0, np.random.default_rng(4))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))
    assert all(x.shape == y.shape and x.dtype == y.dtype for x, y in zip(a, images))
    s1 = augment_batch(windows[:8], "signal", tuple(SIGNAL_FAMILIES), 1.0,
                       np.random.default_rng(3), RATE)
    s2 = augment_batch(windows[:8], "signal", tuple(SIGNAL_FAMILIES), 1.0,
                       np.random.default_rng(3), RATE)
    assert all(np.array_equal(x, y) for x, y in zip(s1, s2))
    assert all(x.shape == w.shape and x.dtype == w.dtype for x, w in zip(s1, windows))


def _dominant_hz(window):
    power = np.abs(np.fft.rfft((window - window.mean()) * np.hanning(len(window)))) ** 2
    power[:5] = 0
    return np.argmax(power) * RATE / len(window)


def test_signal_families_change_real_recordings_the_intended_way(windows):
    rng = np.random.default_rng(0)
    w = windows[0]
    rms = signal_features(w, RATE)["rms"]
    assert signal_features(apply_signal(w, SignalChange(gain=2.0), RATE, rng),
                           RATE)["rms"] == pytest.approx(2 * rms, rel=1e-4)
    shifted = apply_signal(w, SignalChange(dc=1.0), RATE, rng)
    assert shifted.mean() - w.mean() == pytest.approx(rms, rel=1e-3)
    noisy = apply_signal(w, SignalChange(snr_db=5), RATE, rng).astype(np.float64)
    noise = noisy - w
    snr = 10 * np.log10(np.var(w) / np.var(noise))
    assert snr == pytest.approx(5, abs=0.5)
    hummed = apply_signal(w, SignalChange(hum=1.0, mains=60), RATE, rng)
    assert signal_features(hummed, RATE)["hum"] > 10 * signal_features(w, RATE)["hum"]
    peak = _dominant_hz(w)
    faster = _dominant_hz(apply_signal(w, SignalChange(speed=1.04), RATE, rng))
    assert faster == pytest.approx(peak * 1.04, rel=0.01)


def _reference_signal_features(x: np.ndarray, rate: float) -> dict[str, float]:
    """The features as README's health section defines them, written out plainly."""
    x = x.astype(np.float64)
    x = x - x.mean()
    rms = np.sqrt(np.mean(x ** 2))
    power = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
    power[0] = 0.0
    hz = np.fft.rfftfreq(len(x), 1.0 / rate)
    resolution = rate / len(x)
    near = np.zeros(len(power), bool)
    for mains in (50.0, 60.0):
        for k in (1, 2, 3):
            centre = round(k * mains / resolution)
            near |= (np.abs(np.arange(len(power)) - centre) <= 2) & (hz > 0)
    positive = power[1:] + power.sum() * 1e-12
    return {"rms": rms, "crest": np.abs(x).max() / rms, "kurtosis": np.mean(x ** 4) / rms ** 4,
            "hum": power[near].sum() / power.sum(),
            "flatness": np.exp(np.mean(np.log(positive))) / np.mean(positive)}


def test_signal_features_match_their_definition_at_any_length_and_rate(windows):
    # the taper and the hum bins are planned once per (length, rate): calls alternating
    # between recordings of other lengths and rates must each get their own
    rng = np.random.default_rng(3)
    cases = [(windows[0], RATE), (windows[1][:1000], 48000.0), (windows[2][:777], 51200.0),
             (rng.standard_normal(4096) + np.sin(np.arange(4096) * 2 * np.pi * 50 / RATE),
              RATE)]
    for _ in range(2):
        for x, rate in cases:
            got, want = signal_features(x, rate), _reference_signal_features(x, rate)
            assert got.keys() == want.keys()
            for name in want:
                assert got[name] == pytest.approx(want[name], rel=1e-9), (name, len(x), rate)
    original = windows[0].copy()
    signal_features(windows[0], RATE)
    np.testing.assert_array_equal(windows[0], original)   # the caller's window is untouched


def test_unknown_augmentation_and_perturbation_names_are_refused(tmp_path):
    with pytest.raises(InputError, match="unknown image augmentation 'blur'.*defocus"):
        parse_families("gain,blur", "image", ())
    with pytest.raises(InputError, match="valid: gain, dc, noise, hum, speed"):
        parse_families("flip", "signal", ())
    assert parse_families("none", "image", ("gain",)) == ()
    assert parse_families(None, "signal", ("gain",)) == ("gain",)
    with pytest.raises(InputError, match="unknown image perturbation 'fog'.*gamma"):
        suite("image", "gamma,fog")
    result = run_cli("train", "--task", "neu", "--data", str(CALIBRATION / "neu"),
                     "--out", str(tmp_path / "m"), "--augment", "gain,blur")
    assert result.returncode == 2 and "unknown image augmentation 'blur'" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "m").exists()
    result = run_cli("train", "--task", "cwru", "--data", str(CALIBRATION / "cwru"),
                     "--out", str(tmp_path / "m"), "--augment-strength", "5")
    assert result.returncode == 2 and "strength must be between 0 and 2" in result.stderr
    result = run_cli("eval", "cwru", "--data", str(CALIBRATION / "cwru"), "--robustness",
                     "--perturbations", "noise,fog")
    assert result.returncode == 2 and "unknown perturbation 'fog'" in result.stderr
    assert "accuracy" not in result.stdout          # refused before the clean evaluation
    result = run_cli("eval", "cwru", "--data", str(CALIBRATION / "cwru"), "--robustness",
                     "--perturbations", "gamma")   # a family, but of the image suite
    assert result.returncode == 2 and "unknown signal perturbation 'gamma'" in result.stderr


def test_the_suites_cover_the_augmented_families():
    assert {c.family for c in IMAGE_SUITE} <= set(IMAGE_FAMILIES)
    assert {c.family for c in SIGNAL_SUITE} <= set(SIGNAL_FAMILIES)


# --------------------------------------------------------------------------- robustness

def test_robustness_report_of_a_bundle_float_and_int8_side_by_side(tmp_path):
    out = tmp_path / "report"
    result = run_cli("eval", "cwru", "--data", str(CALIBRATION / "cwru"), "--robustness",
                     "--perturbations", "gain,noise,dc", "--report", str(out),
                     "--json", str(tmp_path / "r.json"))
    assert result.returncode == 0, result.stderr
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["formats"] == ["onnx", "onnx-int8"] and data["reference"] == "onnx"
    assert [c["family"] for c in data["cells"]] == ["gain"] * 2 + ["dc"] + ["noise"] * 4
    assert data["samples_per_cell"] == 260   # quarter-window steps, as eval and parity cut
    for cell in data["cells"]:
        assert set(cell["accuracy"]) == {"onnx", "onnx-int8"}
        assert 0.0 <= cell["agreement"]["onnx-int8"] <= 1.0
    zero = next(c for c in data["cells"] if c["severity"] == "0 dB")
    assert zero["summary"] is False  # beyond the training range: shown, not counted
    dc = next(c for c in data["cells"] if c["family"] == "dc")
    assert dc["summary"] is False    # the spectrogram's detrend removes it: not counted
    counted = [c["accuracy"]["onnx-int8"] for c in data["cells"] if c["summary"]]
    assert data["mean"]["onnx-int8"] == pytest.approx(np.mean(counted))
    assert data["worst"]["onnx-int8"]["accuracy"] == pytest.approx(min(counted))
    # agreement: the clean row's own, and the smallest over the counted cells only (the
    # 0 dB cell is shown, not counted)
    assert set(data["clean_agreement"]) == {"onnx-int8"}
    assert data["min_agreement"] == pytest.approx(min(
        c["agreement"]["onnx-int8"] for c in data["cells"] if c["summary"]))
    assert data["cells"][-1]["accuracy"]["onnx-int8"] < data["clean"]["onnx-int8"]
    assert (out / "robustness.png").stat().st_size > 5000
    assert isinstance(data["skipped_files"], list)   # the clean evaluation's list
    # a selection of report-only cells has no mean or worst: shown as "-", exit 0
    only = run_cli("eval", "cwru", "--data", str(CALIBRATION / "cwru"), "--perturbations",
                   "dc", "--report", str(tmp_path / "dc"), "--json", str(tmp_path / "dc.json"))
    assert only.returncode == 0 and "Traceback" not in only.stderr, only.stderr
    assert "(no counted cell in this selection)" in only.stdout
    dc_only = json.loads((tmp_path / "dc.json").read_text())
    assert dc_only["mean"] == {"onnx": None, "onnx-int8": None}
    assert dc_only["min_agreement"] is None
    assert (tmp_path / "dc" / "robustness.png").stat().st_size > 5000
    assert (out / "confusion.png").is_file()                 # the clean evaluation too
    assert data["accuracy"] > 0.5 and "per_class" in data and data["n"] == 260
    assert "agreement" in result.stdout and "noise 0 dB" in result.stdout
    # without --report no picture is written anywhere (not into the working folder)
    here = tmp_path / "here"
    here.mkdir()
    result = subprocess.run([sys.executable, "-c", "from edgecnn.cli import main; main()",
                             "eval", "cwru", "--data", str(CALIBRATION / "cwru"),
                             "--robustness", "--perturbations", "gain"], cwd=here,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and list(here.iterdir()) == []


def test_tiny_model_training_report_has_robustness_and_small_data_says_so(tmp_path):
    small = tmp_path / "small"
    for cls in ("crazing", "patches"):
        (small / cls).mkdir(parents=True)
        for f in sorted((CALIBRATION / "neu" / cls).glob("*.jpg"))[:6]:
            (small / cls / f.name).write_bytes(f.read_bytes())
    out = tmp_path / "tiny"
    result = run_cli("train", "--task", "neu", "--data", str(small), "--out", str(out),
                     "--arch", "tiny-test", "--image-size", "32", "--epochs", "2",
                     "--augment", "gain,noise,defocus", "--augment-strength", "0.5")
    assert result.returncode == 0, result.stderr
    manifest = json.loads((out / "edgecnn.json").read_text())
    assert manifest["training"]["augment"] == ["gain", "noise", "defocus"]
    assert manifest["training"]["augment_strength"] == 0.5
    assert manifest["health"]["kind"] == "image" and manifest["health"]["samples"] > 0
    report = json.loads((out / "report" / "robustness.json").read_text())
    assert report["formats"] == ["keras"] and len(report["cells"]) == len(IMAGE_SUITE)
    assert "robustness on validation" in result.stderr
    result = run_cli("eval", str(out), "--data", str(small), "--robustness",
                     "--perturbations", "noise", "--json", str(tmp_path / "r.json"),
                     "--report", str(tmp_path / "rep"))
    assert result.returncode == 0, result.stderr
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["samples_per_cell"] == 12
    assert "only 12 samples" in data["note"] and "only 12 samples" in result.stdout


# --------------------------------------------------------------------------- source health

def _spec(size=64):
    return InputSpec("image", ("a", "b"), image=ImageSpec(size, size))


@pytest.fixture(scope="module")
def envelope(labelled):
    # fitted on half of the calibration products; the other half is "the line"
    half = labelled[::2]
    return fit_envelope([img for _, img in half], _spec(), [cls for cls, _ in half])


def _transitions(envelope, frames):
    monitor = HealthMonitor(envelope)
    return [(i, c) for i, frame in enumerate(frames) for c in monitor.check(frame)]


def test_real_products_never_trip_a_health_or_frame_fault(images, envelope):
    shuffled = [images[i] for i in np.random.default_rng(0).permutation(len(images))]
    for order in (images, images[::-1], shuffled):
        assert _transitions(envelope, order) == []
    detector = FrameFaultDetector(FaultConfig(**fault_config_kwargs(envelope)))
    assert [detector.check(img) for img in images] == [None] * len(images)


def test_shipped_bundle_envelopes_accept_the_calibration_products(images, windows):
    neu = Bundle.open("neu").manifest.get("health")
    assert neu is not None and neu["kind"] == "image", "the neu bundle lost its envelope"
    assert _transitions(neu, images) == [] and _transitions(neu, images[::-1]) == []
    # on a line each product stays in view for several frames: the brightest and the
    # darkest real products, held, are not a source fault either
    held = [image for image in images for _ in range(9)]
    assert _transitions(neu, held) == []
    detector = FrameFaultDetector(FaultConfig(**fault_config_kwargs(neu)))
    assert all(detector.check(img) is None for img in images)
    cwru = Bundle.open("cwru").manifest.get("health")
    assert cwru is not None and cwru["kind"] == "signal", "the cwru bundle lost its envelope"
    assert _transitions(cwru, windows) == []


@pytest.mark.parametrize("change, fault", [
    (ImageChange(defocus=3.0), "defocus"), (ImageChange(gain=0.25), "dark"),
    (ImageChange(noise=25), "noisy"),
])
def test_a_source_change_halfway_is_a_fault_within_frames_and_ends(images, envelope, change,
                                                                   fault):
    line = images[1::2] * 2
    half = len(line) // 2
    frames = line[:half] + _changed(line[half:half + 30], change) + line[half + 30:]
    got = _transitions(envelope, frames)
    assert got, "no fault"
    (start_frame, start), *rest = got
    assert start["fault"] == fault and start["state"] == "start"
    # "within seconds": 20 frames are 2 s at 10 fps (limits lie beyond the most extreme
    # real product, so the rolling median needs most of its window changed)
    assert half <= start_frame <= half + 20
    low, high = start["expected"]
    assert (low is not None and start["value"] < low) or (high is not None and
                                                         start["value"] > high)
    ends = [(i, c) for i, c in rest if c["fault"] == fault and c["state"] == "end"]
    assert ends and half + 30 <= ends[0][0] <= half + 50


def test_camera_run_reports_focus_loss_as_a_fault_not_a_class(tmp_path, images, envelope):
    bundle = make_image_bundle(tmp_path / "bundle", size=64, kind="conv")
    manifest = json.loads((bundle / "edgecnn.json").read_text())
    manifest["health"] = envelope
    (bundle / "edgecnn.json").write_text(json.dumps(manifest))
    line = images[1::2]
    half = len(line) // 2
    frames = line[:half] + [cv2.GaussianBlur(img, (0, 0), 3.0) for img in line[half:]]
    video = write_video(tmp_path / "focus.avi", frames, fps=10.0)
    got = []
    summary = run_camera(bundle, str(video), min_frames=1, threshold=0.0, on_event=got.append)
    faults = [e for e in got if e["type"] == "fault"]
    assert faults and faults[0]["fault"] == "defocus" and faults[0]["state"] == "start"
    assert half <= faults[0]["frame"] <= half + 20      # 2 s at 10 fps
    assert "expected" in faults[0] and faults[0]["feature"] == "sharpness"
    defects_after = [e for e in got if e["type"] == "defect" and e["frame"] >
                     faults[0]["frame"]]
    assert defects_after == []                          # blurred frames are not classified
    assert summary.faults["defocus"] == 1
    # it lasts to the end of the video: its end (at the run's end) says since when and
    # for how many frames, and the summary counts them
    (end,) = [e for e in faults if e["fault"] == "defocus" and e["state"] == "end"]
    assert end["since"] == faults[0]["time"] and end["duration_s"] >= 0
    assert end["frames"] == end["frame"] - faults[0]["frame"] > 0
    assert summary.extra["fault_frames"]["defocus"] == end["frames"]
    spec = Bundle.open(bundle).spec
    assert preprocess_image(frames[0], spec).shape == spec.input_shape


def test_signal_health_hum_and_gain_change(windows, recordings):
    spec = get_task("cwru").spec(("a", "b"))
    envelope = fit_envelope(windows[::2], spec, recordings.labels[::2])
    line = list(windows[1::2])
    assert _transitions(envelope, line) == []
    rng = np.random.default_rng(0)
    for change, fault in ((SignalChange(hum=1.0, mains=50), "hum"),
                          (SignalChange(gain=20.0), "gain_change"),
                          (SignalChange(gain=0.05), "gain_change"),
                          (SignalChange(gain=1e-5), "flat")):
        frames = line[:20] + [apply_signal(w, change, RATE, rng) for w in line[20:]]
        got = _transitions(envelope, frames)
        assert got and got[0][1]["fault"] == fault and 20 <= got[0][0] <= 35, got[:2]
    # far beyond every limit (a gain x1000): the very first such window starts it, so no
    # window of it is classified, and it stays on without flapping while it lasts
    frames = line[:20] + [apply_signal(w, SignalChange(gain=1000.0), RATE, rng)
                          for w in line[20:26]] + line[26:] + line[:10]
    got = _transitions(envelope, frames)
    assert [(i, t["fault"], t["state"]) for i, t in got] == [
        (20, "gain_change", "start"), (got[-1][0], "gain_change", "end")], got
    assert got[-1][0] >= 26


def test_large_frame_features_are_what_its_tiles_show_the_model(images):
    """A 1800x1000-class tiled frame's brightness and contrast are those of its tiles as
    the model sees them (each resized to the model's size), not those of the frame area-
    averaged to the model's size, which smooths every tile's texture away (6 % less
    contrast on these NEU tiles); and the features cost microseconds, not a ms."""
    tiles = images[:45]
    frame = np.vstack([np.hstack(tiles[r * 9:(r + 1) * 9]) for r in range(5)])
    assert frame.shape[0] >= 6 * 128
    got = image_features(frame, (128, 128))
    seen = np.concatenate([cv2.resize(t if t.ndim == 2 else cv2.cvtColor(
        t, cv2.COLOR_BGR2GRAY), (128, 128), interpolation=cv2.INTER_LINEAR).ravel()
        for t in tiles])
    assert abs(got["mean"] - seen.mean()) < 0.5
    assert abs(got["std"] - seen.std()) < 0.02 * seen.std(), (got["std"], seen.std())


def test_sharpness_and_noise_are_their_definitions_on_real_images(images):
    """The fast arithmetic (int16 filters, the Laplacian's variance from its sums) gives
    var(Laplacian) / var(crop) and Immerkaer's sigma exactly as written out in float64."""
    from scipy.ndimage import convolve

    rng = np.random.default_rng(3)
    board = (np.indices((160, 160)).sum(axis=0) % 2 * 255).astype(np.uint8)
    extremes = [board, 255 - board, rng.choice([0, 255], (150, 170)).astype(np.uint8),
                rng.integers(0, 256, (140, 200), dtype=np.uint8)]    # the int16 range's ends
    for image in images[:12] + extremes:
        gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        got = image_features(gray, (64, 64))
        h, w = gray.shape
        top, left = max(0, (h - 128) // 2), max(0, (w - 128) // 2)
        crop = gray[top:top + 128, left:left + 128].astype(np.float64)
        padded = np.pad(crop, 1, mode="reflect")      # OpenCV's default border (101)
        laplacian = convolve(padded, np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]]))[1:-1, 1:-1]
        assert got["sharpness"] == pytest.approx(laplacian.var() / crop.var(), rel=1e-9)
        response = convolve(crop, np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]]))[1:-1, 1:-1]
        sigma = np.sqrt(np.pi / 2) * np.abs(response).sum() / (6 * response.size)
        assert got["noise"] == pytest.approx(sigma, rel=1e-9)


def test_frames_two_pixels_high_or_wide_have_features():
    """A crop without an interior (a 2-pixel side) has no noise to measure: 0, not a
    division by zero that ends the run."""
    for shape in [(2, 200), (200, 2), (2, 2), (2, 2, 3)]:
        frame = np.full(shape, 90, np.uint8)
        got = image_features(frame, (64, 64))
        assert got["noise"] == 0.0 and all(np.isfinite(v) for v in got.values()), shape
