"""The lecture's architectures, kept as reference points (``seed-*``)."""

from __future__ import annotations

from edgecnn.models.registry import register_model


@register_model("seed-mnist", ("image",),
                "lecture MNIST CNN: Conv32-Pool-Conv64-Pool-Dense128 ('same' padding)")
def seed_mnist(input_shape, num_classes):
    from keras import layers, models

    return models.Sequential([
        layers.Input(input_shape),
        layers.Conv2D(32, 3, padding="same", activation="relu"),
        layers.MaxPooling2D(2),
        layers.Conv2D(64, 3, padding="same", activation="relu"),
        layers.MaxPooling2D(2),
        layers.Flatten(),
        layers.Dense(128, activation="relu"),
        layers.Dense(num_classes, activation="softmax"),
    ], name="seed_mnist")


@register_model("seed-neu", ("image",),
                "lecture NEU CNN: conv blocks 32/64/128 with 2x2 pooling, Dense128 "
                "('same' padding)")
def seed_neu(input_shape, num_classes):
    from keras import layers, models

    return models.Sequential([
        layers.Input(input_shape),
        layers.Conv2D(32, 3, padding="same", activation="relu"),
        layers.MaxPooling2D(2),
        layers.Conv2D(64, 3, padding="same", activation="relu"),
        layers.MaxPooling2D(2),
        layers.Conv2D(128, 3, padding="same", activation="relu"),
        layers.MaxPooling2D(2),
        layers.Flatten(),
        layers.Dense(128, activation="relu"),
        layers.Dense(num_classes, activation="softmax"),
    ], name="seed_neu")


@register_model("seed-stft", ("signal",),
                "lecture spectrogram CNN: Conv16-Conv16-Pool-Dense128 ('same' padding)")
def seed_stft(input_shape, num_classes):
    from keras import layers, models

    return models.Sequential([
        layers.Input(input_shape),
        layers.Conv2D(16, 3, padding="same", activation="relu"),
        layers.Conv2D(16, 3, padding="same", activation="relu"),
        layers.MaxPooling2D(2),
        layers.Flatten(),
        layers.Dense(128, activation="relu"),
        layers.Dense(num_classes, activation="softmax"),
    ], name="seed_stft")
