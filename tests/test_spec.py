"""InputSpec: JSON round trip, validation messages, shapes the models are built from."""

import json

import numpy as np
import pytest

from edgecnn.deploy.errors import SpecError
from edgecnn.deploy.preprocess import magnitude_spectrogram, preprocess_image, preprocess_windows
from edgecnn.deploy.spec import ImageSpec, InputSpec, SignalSpec

NEU = ("crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches")


def test_image_spec_round_trips_through_json():
    spec = InputSpec("image", NEU, image=ImageSpec(96, 128, color="rgb", mean=(0.5, 0.4, 0.3),
                                                   std=(0.2, 0.2, 0.25)))
    again = InputSpec.from_json(spec.to_json())
    assert again == spec
    assert again.input_shape == (96, 128, 3)
    assert json.loads(spec.to_json())["image"]["mean"] == [0.5, 0.4, 0.3]


def test_signal_spec_round_trips_and_has_the_lecture_shape():
    spec = InputSpec("signal", ("normal", "IR007"), signal=SignalSpec(mean=-3.5, std=2.0,
                                                                     transform="log"))
    again = InputSpec.from_json(spec.to_json())
    assert again == spec
    # The lecture's recipe: 10 000 samples, nperseg 256, noverlap 32 -> 129 x 44.
    assert InputSpec("signal", ("a", "b"), signal=SignalSpec()).input_shape == (129, 44, 1)
    sxx = magnitude_spectrogram(np.random.default_rng(0).normal(size=10000), SignalSpec())
    assert sxx.shape == (129, 44)


@pytest.mark.parametrize("change, message", [
    ({"labels": ["only"]}, "at least 2 labels"),
    ({"labels": ["a", "a"]}, "unique"),
    ({"kind": "audio"}, "spec kind must be one of"),
    ({"image": {"height": 0, "width": 4}}, "image height must be a positive number"),
    ({"image": {"height": 4, "width": 4, "color": "cmyk"}}, "image color must be one of"),
    ({"image": {"height": 4, "width": 4, "gamma": 2}}, "unknown ImageSpec keys ['gamma']"),
    ({"version": 99}, "version 99 is not supported"),
])
def test_invalid_specs_name_what_is_wrong(change, message):
    data = {"kind": "image", "labels": ["a", "b"], "image": {"height": 4, "width": 4}}
    data.update(change)
    with pytest.raises(SpecError, match=None) as info:
        InputSpec.from_dict(data)
    assert message in str(info.value)


def test_signal_spec_rejects_overlap_not_below_segment():
    with pytest.raises(SpecError, match="noverlap"):
        SignalSpec(nperseg=64, noverlap=64)


def test_image_preprocessing_resizes_converts_and_scales():
    spec = ImageSpec(8, 6, color="gray", mean=(0.5,), std=(0.25,))
    bgr = np.zeros((20, 30, 3), dtype=np.uint8)
    bgr[..., 2] = 255  # pure red in BGR
    out = preprocess_image(bgr, spec)
    assert out.shape == (8, 6, 1) and out.dtype == np.float32
    red_as_gray = round(0.299 * 255) / 255.0
    np.testing.assert_allclose(out, (red_as_gray - 0.5) / 0.25, atol=2e-2)
    buffer = np.empty((8, 6, 1), dtype=np.float32)
    assert preprocess_image(bgr, spec, out=buffer) is buffer


def test_signal_tensor_applies_transform_and_normalisation():
    spec = SignalSpec(window_length=1024, nperseg=128, noverlap=16, transform="log",
                      mean=-4.0, std=2.0)
    window = np.sin(np.arange(1024) * 0.3)
    tensor = preprocess_windows(window, spec)
    expected = (np.log(magnitude_spectrogram(window, spec) + spec.eps) + 4.0) / 2.0
    assert tensor.shape == (*spec.shape[:2], 1)
    np.testing.assert_allclose(tensor[..., 0], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("field,value", [("scale", float("nan")), ("scale", 0.0),
                                         ("scale", float("inf")), ("scale", -1.0),
                                         ("mean", [1e30]), ("std", [float("nan")])])
def test_normalisation_numbers_that_would_make_every_input_one_class_are_refused(field, value):
    data = {"kind": "image", "labels": ["a", "b"],
            "image": {"height": 8, "width": 8, field: value}}
    with pytest.raises(SpecError, match=f"image {field} must be"):
        InputSpec.from_dict(data)
