"""Training defaults that scale with the data (edgecnn.schedule, edgecnn.models.capacity)."""

import numpy as np
import pytest

from edgecnn.deploy.errors import InputError
from edgecnn.models.capacity import fit_capacity
from edgecnn.schedule import (
    balance_power,
    balanced_early_stopping,
    class_weights,
    describe_weights,
    epoch_budget,
    patience_for,
)


def test_epoch_budget_reaches_the_step_budget_within_limits():
    assert epoch_budget(60, 872, 32) == 143        # X-SDD: 28 steps an epoch
    assert epoch_budget(60, 1200, 32) == 106       # NEU: 38 steps
    assert epoch_budget(15, 48000, 128) == 15      # MNIST keeps the task's epochs
    assert epoch_budget(30, 100, 64) == 120        # at most 4x the task's
    assert patience_for(143, 8) == 28 and patience_for(15, 4) == 4


def test_class_weights_make_every_class_weigh_the_same():
    labels = np.array([0] * 80 + [1] * 20)
    weights = class_weights(labels, 2)
    assert weights[0] * 80 == pytest.approx(weights[1] * 20)
    assert "class-balanced loss" in describe_weights(weights, ("free", "crack"))
    assert "crack weighs most" in describe_weights(weights, ("free", "crack"))
    assert "balanced in the data" in describe_weights(class_weights(np.array([0, 1]), 2),
                                                     ("a", "b"))


def test_sqrt_balance_weighs_classes_by_the_root_of_their_inverse_share():
    labels = np.array([0] * 80 + [1] * 20)
    full, root = class_weights(labels, 2), class_weights(labels, 2, balance_power("sqrt"))
    assert root[1] / root[0] == pytest.approx(2.0) and full[1] / full[0] == pytest.approx(4.0)
    assert balance_power("full") == 1.0 and balance_power("none") is None
    text = describe_weights(root, ("free", "crack"), "sqrt")
    assert text == ("class-balanced loss (the square root of n / (k * n_class), --balance "
                    "sqrt): weights 0.79-1.58 (crack weighs most)")
    assert "--balance none" in describe_weights(None, ("free", "crack"), "none")
    with pytest.raises(InputError, match="class balance must be one of sqrt, full, none"):
        balance_power("weights")


def test_capacity_rule_and_explicit_architectures():
    assert fit_capacity("edge-image", 300) == ("edge-image-s", "300 training samples < 500")
    assert fit_capacity("edge-image", 1200) == ("edge-image", None)
    assert fit_capacity("edge-image", 25000)[0] == "edge-image-l"
    assert fit_capacity("edge-spectro", 10) == ("edge-spectro", None)


def test_capacity_siblings_are_registered_and_sized_by_width():
    from edgecnn.deploy.spec import ImageSpec, InputSpec
    from edgecnn.models import create_model

    spec = InputSpec("image", ("a", "b"), image=ImageSpec(64, 64))
    sizes = [create_model(name, spec).count_params()
             for name in ("edge-image-s", "edge-image", "edge-image-l")]
    assert sizes[0] * 3 < sizes[1] < sizes[2] / 1.8


def test_early_stopping_keeps_the_weights_with_the_best_balanced_accuracy():
    """A model whose validation accuracy stays high by answering the majority class is not
    kept over the epoch that found the minority class."""
    import keras

    x_val = np.array([[0.0], [0.0], [0.0], [1.0]], dtype=np.float32)
    y_val = np.array([0, 0, 0, 1])
    inputs = keras.Input((1,))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(inputs))
    good = [np.array([[-5.0, 5.0]], np.float32), np.array([0.5, -0.5], np.float32)]
    majority = [np.zeros((1, 2), np.float32), np.array([1.0, 0.0], np.float32)]
    lines = []
    callback = balanced_early_stopping(x_val, y_val, 2, patience=1, start_epoch=0,
                                       log=lines.append)
    callback.set_model(model)
    model.stop_training = False
    for epoch, weights in enumerate([majority, good, majority, majority]):
        model.set_weights(weights)
        logs = {"val_loss": 0.1 if weights is majority else 0.5}
        callback.on_epoch_end(epoch, logs)
        assert 0.0 <= logs["val_balanced_accuracy"] <= 1.0
        if model.stop_training:
            break
    callback.on_train_end()
    assert model.stop_training and epoch == 2
    np.testing.assert_allclose(model.get_weights()[1], good[1])
    assert "kept the weights of epoch 2" in lines[0]


def test_without_balance_the_weights_with_the_best_plain_accuracy_are_kept():
    """--balance none: the majority answer (5 of 6 right) beats the model that finds the
    small class (4 of 6 right, balanced 0.8); the default keeps the latter."""
    import keras

    x_val = np.array([[0.0], [0.0], [0.0], [1.0], [1.0], [1.0]], dtype=np.float32)
    y_val = np.array([0, 0, 0, 1, 0, 0])
    inputs = keras.Input((1,))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(inputs))
    finder = [np.array([[-5.0, 5.0]], np.float32), np.array([0.5, -0.5], np.float32)]
    majority = [np.zeros((1, 2), np.float32), np.array([1.0, 0.0], np.float32)]
    kept = {}
    for balanced in (True, False):
        lines = []
        callback = balanced_early_stopping(x_val, y_val, 2, patience=5, start_epoch=0,
                                           log=lines.append, balanced=balanced)
        callback.set_model(model)
        for epoch, weights in enumerate([finder, majority]):
            model.set_weights(weights)
            callback.on_epoch_end(epoch, {"val_loss": 0.5})
        callback.on_train_end()
        kept[balanced] = (model.get_weights()[1].tolist(), lines[0])
    assert kept[True][0] == finder[1].tolist()
    assert "(validation balanced accuracy 80.00 %)" in kept[True][1]
    assert kept[False][0] == majority[1].tolist()
    assert "(validation accuracy 83.33 %)" in kept[False][1]


def test_weight_average_is_what_gets_validated_and_kept():
    """With ``average`` the callback validates and keeps an exponential average of the
    weights over the steps, not the last step's weights."""
    import keras

    from edgecnn.schedule import average_steps

    assert average_steps(182, 22) == 100        # X-SDD: 2.5 % of ~4000 steps
    assert average_steps(15, 375) == 375        # at least one epoch
    x_val = np.array([[0.0], [1.0]], dtype=np.float32)
    y_val = np.array([0, 1])
    inputs = keras.Input((1,))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(inputs))
    lines = []
    callback = balanced_early_stopping(x_val, y_val, 2, patience=5, start_epoch=1,
                                       log=lines.append, average=4)
    callback.set_model(model)
    model.stop_training = False
    # steps alternate between two weight sets: the average lies between them
    a = [np.array([[-4.0, 4.0]], np.float32), np.zeros(2, np.float32)]
    b = [np.array([[-2.0, 2.0]], np.float32), np.zeros(2, np.float32)]
    model.set_weights([np.array([[4.0, -4.0]], np.float32), np.zeros(2, np.float32)])
    callback.on_epoch_begin(0)
    callback.on_train_batch_end(0)
    callback.on_epoch_end(0, {"val_loss": 99.0})  # warm-up epoch: a wrong model, not kept
    callback.on_epoch_begin(1)
    for step in range(40):
        model.set_weights(a if step % 2 else b)
        callback.on_train_batch_end(step)
    logs = {"val_loss": 99.0}
    callback.on_epoch_end(1, logs)
    assert logs["val_balanced_accuracy"] == 1.0 and logs["val_loss"] < 1.0
    np.testing.assert_allclose(model.get_weights()[0], a[0])  # training weights untouched
    callback.on_train_end()
    kept = model.get_weights()[0][0]
    assert -4.0 < kept[0] < -2.0 and 2.0 < kept[1] < 4.0
    assert "averaged over ~4 steps up to epoch 2" in lines[0]


def test_label_smoothing_loss_matches_smoothed_targets_and_bounds_confidence():
    """The smoothed loss is the cross-entropy against (1 - e) one-hot + e / k, and a model
    fitted with it settles below full confidence where plain cross-entropy goes to ~1."""
    import keras

    from edgecnn.schedule import LABEL_SMOOTHING, training_loss

    assert training_loss(0.0) == "sparse_categorical_crossentropy"
    loss = training_loss(LABEL_SMOOTHING)
    y = np.array([0, 2])
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], np.float32)
    targets = np.full((2, 3), LABEL_SMOOTHING / 3)
    targets[[0, 1], y] += 1 - LABEL_SMOOTHING
    assert float(loss(y, p)) == pytest.approx(np.mean(-(targets * np.log(p)).sum(1)), rel=1e-5)
    assert keras.losses.deserialize(keras.losses.serialize(loss)).smoothing == LABEL_SMOOTHING

    x = np.array([[-1.0], [1.0]] * 16, np.float32)
    labels = np.array([0, 1] * 16)
    confidence = {}
    for smoothing in (0.0, LABEL_SMOOTHING):
        keras.utils.set_random_seed(0)
        inputs = keras.Input((1,))
        model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(inputs))
        model.compile(optimizer=keras.optimizers.Adam(0.1), loss=training_loss(smoothing))
        model.fit(x, labels, epochs=150, batch_size=32, verbose=0)
        confidence[smoothing] = float(model.predict(x, verbose=0).max(axis=1).min())
    assert confidence[0.0] > 0.99
    assert confidence[LABEL_SMOOTHING] == pytest.approx(1 - LABEL_SMOOTHING / 2, abs=0.01)
