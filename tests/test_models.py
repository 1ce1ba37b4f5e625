"""Every registered architecture builds for its input kind and returns probabilities."""

import numpy as np
import pytest

from edgecnn.deploy.errors import InputError
from edgecnn.deploy.spec import ImageSpec, InputSpec, SignalSpec
from edgecnn.models import create_model, list_models

IMAGE = InputSpec("image", ("a", "b", "c"), image=ImageSpec(48, 48))
SIGNAL = InputSpec("signal", ("a", "b", "c"),
                   signal=SignalSpec(window_length=2048, nperseg=128, noverlap=16))


@pytest.mark.parametrize("entry", list_models(), ids=lambda e: e.name)
def test_every_registered_model_builds_and_outputs_probabilities(entry):
    spec = IMAGE if "image" in entry.kinds else SIGNAL
    model = create_model(entry.name, spec)
    batch = np.random.default_rng(0).normal(size=(2, *spec.input_shape)).astype(np.float32)
    out = np.asarray(model(batch, training=False))
    assert out.shape == (2, 3)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)


def test_lecture_seeds_and_our_architectures_are_registered():
    names = {entry.name for entry in list_models()}
    assert {"seed-mnist", "seed-neu", "seed-stft"} <= names
    assert {"edge-image", "edge-digits", "edge-spectro"} <= names


def test_unknown_model_lists_valid_names_and_close_matches():
    with pytest.raises(InputError) as info:
        create_model("edge-imag", IMAGE)
    message = str(info.value)
    assert "did you mean edge-image" in message
    assert "seed-neu" in message and "edge-spectro" in message


def test_model_refuses_the_wrong_input_kind():
    with pytest.raises(InputError, match="takes signal input"):
        create_model("seed-stft", IMAGE)


def test_edge_models_are_much_smaller_than_the_seeds():
    neu = InputSpec("image", tuple("abcdef"), image=ImageSpec(128, 128))
    assert create_model("edge-image", neu).count_params() * 20 < \
        create_model("seed-neu", neu.replace(image=ImageSpec(200, 200))).count_params()


def _layers(model):
    """(layer class, filters or units, padding) of every layer, as the lecture lists them."""
    return [(type(layer).__name__, getattr(layer, "filters", getattr(layer, "units", None)),
             getattr(layer, "padding", None)) for layer in model.layers]


def test_seed_neu_is_the_lecture_network_layer_for_layer():
    model = create_model("seed-neu", InputSpec("image", tuple("abcdef"),
                                               image=ImageSpec(200, 200)))
    assert _layers(model) == [
        ("Conv2D", 32, "same"), ("MaxPooling2D", None, "valid"),
        ("Conv2D", 64, "same"), ("MaxPooling2D", None, "valid"),
        ("Conv2D", 128, "same"), ("MaxPooling2D", None, "valid"),
        ("Flatten", None, None), ("Dense", 128, None), ("Dense", 6, None)]
    assert model.count_params() == 10_333_574  # the lecture's figure at 200x200x1


def test_seed_stft_is_the_lecture_network_layer_for_layer():
    model = create_model("seed-stft", SIGNAL)
    assert _layers(model) == [
        ("Conv2D", 16, "same"), ("Conv2D", 16, "same"), ("MaxPooling2D", None, "valid"),
        ("Flatten", None, None), ("Dense", 128, None), ("Dense", 3, None)]
    height, width, _ = SIGNAL.input_shape
    flat = (height // 2) * (width // 2) * 16  # 'same' convolutions keep the spectrogram size
    expected = (9 * 16 + 16) + (9 * 16 * 16 + 16) + (flat * 128 + 128) + (128 * 3 + 3)
    assert model.count_params() == expected
