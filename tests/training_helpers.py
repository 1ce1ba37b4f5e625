"""Reproducible fits for test fixtures: the same model from the same data on every run."""

from __future__ import annotations

from pathlib import Path

CALIBRATION = Path(__file__).resolve().parents[1] / "calibration_data"


def neu_calibration_tensors(side: int):
    """(spec, samples, x, y) of the NEU calibration images at ``side`` x ``side``."""
    from edgecnn.data import load_dataset
    from edgecnn.deploy.spec import ImageSpec, InputSpec
    from edgecnn.tensors import to_tensors

    placeholder = InputSpec("image", ("?", "??"), image=ImageSpec(side, side))
    samples = load_dataset("neu", CALIBRATION / "neu", placeholder)
    spec = placeholder.replace(labels=tuple(samples.class_names))
    return spec, samples, to_tensors(samples, spec), samples.labels


def fit_reproducibly(model, x, y, epochs: int, batch_size: int = 16,
                     learning_rate: float = 3e-3) -> None:
    """Compile ``model`` (Adam, cosine decay) and fit it with TensorFlow's op determinism on,
    restoring the determinism setting afterwards."""
    import keras
    import tensorflow as tf
    from tensorflow.python.framework import config as tf_config

    steps = epochs * -(-len(x) // batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, steps, alpha=0.02)
    model.compile(keras.optimizers.Adam(schedule), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    was_deterministic = tf_config.is_op_determinism_enabled()
    tf.config.experimental.enable_op_determinism()
    try:
        model.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0)
    finally:
        if not was_deterministic:
            tf_config.disable_op_determinism()
