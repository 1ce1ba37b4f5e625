"""Freeze-then-fine-tune for the pretrained backbones (``edgecnn.models.backbones``).

The rule (Keras' transfer-learning guide, with defaults that scale with the run):

1. Frozen phase: the backbone is frozen and only the new head trains, at the run's
   learning rate, for ``FROZEN_SHARE`` of the epoch budget (at least 1, at most
   ``MAX_FROZEN`` epochs; ``--frozen-epochs``). A random head on top of good features would
   otherwise send large gradients into them and wreck them in the first steps.
2. Fine-tuning: the backbone is unfrozen (``--unfreeze all``, the default; ``N``: only its
   top N layers that hold weights; ``none``: it stays frozen, i.e. feature extraction) and
   the whole budget runs at ``FINE_TUNE_FACTOR`` times the learning rate (``--fine-tune-lr``)
   with the usual cosine decay, early stopping and best-weights restore. BatchNormalization
   stays frozen, in inference mode, throughout (as the guide does it), so a few small
   batches never overwrite the statistics it learnt on the large source set.

Without ``--weights`` a backbone trains from scratch in one phase like any other model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from edgecnn.deploy.errors import InputError

FROZEN_SHARE = 0.2
MAX_FROZEN = 10
FINE_TUNE_FACTOR = 0.1


@dataclass(frozen=True)
class TransferPlan:
    weights: str
    frozen_epochs: int
    unfreeze: str        # "all", "none" or a number of top layers
    head_lr: float
    fine_tune_lr: float

    def describe(self, epochs: int) -> str:
        if self.unfreeze == "none":
            return (f"transfer from {self.weights}: the backbone stays frozen (feature "
                    f"extraction); the head trains for up to {epochs} epochs at lr "
                    f"{self.head_lr:g} (--unfreeze overrides)")
        tuned = "all backbone layers" if self.unfreeze == "all" else \
            f"the top {self.unfreeze} backbone layers"
        return (f"transfer from {self.weights}: {self.frozen_epochs} epoch(s) with the backbone "
                f"frozen (head only, lr {self.head_lr:g}), then up to {epochs} epochs "
                f"fine-tuning {tuned} at lr {self.fine_tune_lr:g}; BatchNorm in inference "
                "mode (--frozen-epochs, --unfreeze, --fine-tune-lr override)")

    def to_dict(self) -> dict:
        return asdict(self)


def plan_transfer(weights: str | None, epochs: int, learning_rate: float,
                  frozen_epochs: int | None = None, unfreeze: str | None = None,
                  fine_tune_lr: float | None = None) -> TransferPlan | None:
    """The phases of a run by the rule above; None without pretrained weights."""
    if weights is None:
        given = [name for name, value in (("--frozen-epochs", frozen_epochs),
                                          ("--unfreeze", unfreeze),
                                          ("--fine-tune-lr", fine_tune_lr))
                 if value is not None]
        if given:
            raise InputError(f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'}"
                             " to transfer learning; give --weights PATH|imagenet too "
                             "(without it the backbone trains from scratch)")
        return None
    unfreeze = check_unfreeze("all" if unfreeze is None else unfreeze)
    if unfreeze == "none":   # one phase, the head only: these would do nothing
        given = [name for name, value in (("--frozen-epochs", frozen_epochs),
                                          ("--fine-tune-lr", fine_tune_lr))
                 if value is not None]
        if given:
            raise InputError(f"{', '.join(given)} {'has' if len(given) == 1 else 'have'} no "
                             "effect with --unfreeze none (the backbone stays frozen and "
                             "only the head trains, at --lr)")
        frozen_epochs = 0
    if frozen_epochs is not None and frozen_epochs >= epochs:
        raise InputError(f"--frozen-epochs {frozen_epochs} leaves no fine-tuning epoch of "
                         f"the {epochs} (--epochs); give fewer, or --unfreeze none to train "
                         "only the head")
    if frozen_epochs is None:
        frozen_epochs = min(MAX_FROZEN, max(1, round(epochs * FROZEN_SHARE)))
    if frozen_epochs < 0:
        raise InputError(f"--frozen-epochs must be 0 or more; found {frozen_epochs}")
    if fine_tune_lr is not None and fine_tune_lr <= 0:
        raise InputError(f"--fine-tune-lr must be positive; found {fine_tune_lr}")
    return TransferPlan(str(weights), int(frozen_epochs), unfreeze, learning_rate,
                        fine_tune_lr or learning_rate * FINE_TUNE_FACTOR)


def check_transfer_options(config, architecture: str) -> None:
    """Refuse bad transfer options (``TrainConfig``) before any data is read."""
    from edgecnn.models.backbones import check_weights_argument

    check_weights_argument(config.weights, architecture)
    plan_transfer(config.weights, config.epochs or 10 ** 9, 1.0, config.frozen_epochs,
                  config.unfreeze,
                  config.fine_tune_lr)


def check_unfreeze(value: str) -> str:
    value = str(value).strip().lower()
    if value in ("all", "none") or (value.isdigit() and int(value) > 0):
        return value
    raise InputError(f"--unfreeze takes all, none or a number of top layers (e.g. 20); "
                     f"found {value!r}")


def set_backbone_trainable(model, unfreeze: str) -> tuple[int, int]:
    """Freeze (``none``) or unfreeze the model's backbone, all of it or its top N layers
    with weights, BatchNormalization excepted: a non-trainable BatchNormalization layer runs
    in inference mode in Keras 3 (a ``training=False`` call argument does not survive the
    outer model's ``training=True``). Returns (trainable, all) backbone layers with
    weights other than BatchNormalization."""
    import keras

    from edgecnn.models.backbones import BACKBONE_LAYER

    backbone = model.get_layer(BACKBONE_LAYER)
    backbone.trainable = unfreeze != "none"
    tunable = []
    for layer in backbone.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
        elif layer.weights:
            tunable.append(layer)
    if unfreeze == "none":
        return 0, len(tunable)
    if unfreeze != "all":
        for layer in tunable[:-int(unfreeze)]:
            layer.trainable = False
    return sum(layer.trainable for layer in tunable), len(tunable)


def compile_for(model, learning_rate, keras) -> None:
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])


def run_frozen_phase(model, plan: TransferPlan, fit_args: dict, total_steps: int,
                     progress, log) -> dict:
    """Phase 1 (head only), then unfreeze and compile for phase 2 (the caller's fit).
    ``fit_args``: the dataset and validation/class-weight keywords of ``model.fit``."""
    import keras

    from edgecnn.models.backbones import BACKBONE_LAYER

    backbone = model.get_layer(BACKBONE_LAYER)
    warn_constant_features(model, fit_args, log)
    history: dict = {}
    if plan.frozen_epochs and plan.unfreeze != "none":
        backbone.trainable = False
        compile_for(model, plan.head_lr, keras)
        trainable = sum(int(w.numpy().size) for w in model.trainable_weights)
        log(f"frozen phase: training the head ({trainable:,} weights), backbone frozen")
        result = model.fit(epochs=plan.frozen_epochs, verbose=0,
                           callbacks=[progress] if progress else [], **fit_args)
        history = {k: [float(v) for v in values] for k, values in result.history.items()}
    layers, weighted = set_backbone_trainable(model, plan.unfreeze)
    rate = plan.fine_tune_lr if plan.unfreeze != "none" else plan.head_lr
    compile_for(model, keras.optimizers.schedules.CosineDecay(rate, total_steps, alpha=0.02),
                keras)
    if plan.unfreeze == "none":
        log(f"feature extraction: the backbone stays frozen; the head trains at lr {rate:g} "
            "with cosine decay")
    else:
        log(f"fine-tuning: {layers} of {weighted} backbone layers with weights trainable, "
            f"lr {rate:g} with cosine decay")
    return history


def warn_constant_features(model, fit_args: dict, log, samples: int = 32) -> bool:
    """Say so when the backbone gives (nearly) the same features for every training image:
    untrained weights under frozen BatchNorm collapse to a constant, and the head then
    learns nothing (loss ln(classes) every epoch). True when it warned."""
    import numpy as np

    held = fit_args.get("validation_data")
    if not held or len(held[0]) < 2:
        return False
    try:
        import keras

        pooled = keras.Model(model.input, model.get_layer("pool").output)
        features = np.asarray(pooled(np.asarray(held[0][:samples]), training=False))
    except (ValueError, TypeError, KeyError):
        return False
    spread = float(features.std(axis=0).max()) if len(features) > 1 else 1.0
    scale = float(np.abs(features).max()) + 1e-12
    if spread > 1e-4 * scale and spread > 1e-7:
        return False
    log(f"warning: the backbone gives the same features for every image (spread "
        f"{spread:.2g}): its --weights look untrained (a file saved from weights=None), so "
        "the head cannot learn; give trained weights, or train without --weights")
    return True
