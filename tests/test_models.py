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
