"""Keras application backbones for transfer learning (``mobilenetv3-small``, ...).

A backbone model is ``input -> input_adapter -> backbone -> GAP -> dropout -> softmax``:

- ``input_adapter`` is a fixed (never trained) 1x1 convolution that turns the tensor our
  InputSpec preprocessing gives (``edgecnn.deploy.preprocess``: ``(pixel * scale - mean) /
  std``, gray, BGR or RGB) into what the backbone's weights were trained on: RGB 0-255 for
  MobileNetV3 and EfficientNet (their own Rescaling/Normalization layers follow), caffe-style
  BGR minus the ImageNet means for ResNet50. Gray images are repeated into three channels.
  The runtime therefore feeds a backbone exactly what it feeds our own models, and the only
  transform added is this one convolution (folded into the first real one at export).
- ``backbone`` is the Keras application without its top, a nested model named
  ``backbone``: freezing, fine-tuning and weight loading address it as one layer
  (``edgecnn.transfer`` keeps its BatchNormalization frozen while fine-tuning). From
  scratch its BatchNormalization momentum is 0.9, as in our own models: the applications'
  0.999 suits ImageNet's million steps, and after a few hundred steps its moving
  statistics are still near their initial values (validation at chance level).

Weights (``--weights``): ``imagenet`` (Keras downloads them, or finds them in its cache
``~/.keras/models``), a ``.weights.h5`` / ``.h5`` file of a trained backbone without top
(in the layout ``keras.applications.MobileNetV3Small(include_top=False).save_weights(...)``
writes, or a Keras ImageNet ``*_notop.h5`` download), or an edgecnn model of the same
architecture (its ``model.keras`` or model directory; loaded with safe_mode=True): its
backbone weights are copied, its head is not.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgecnn.deploy.errors import InputError
from edgecnn.deploy.spec import InputSpec
from edgecnn.models.registry import register_model

BACKBONE_LAYER = "backbone"
ADAPTER_LAYER = "input_adapter"
IMAGENET = "imagenet"
WEIGHT_SUFFIXES = (".weights.h5", ".h5")
# caffe-style preprocessing (keras.applications.resnet50.preprocess_input): BGR, 0-255,
# minus the ImageNet channel means
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
SCRATCH_BN_MOMENTUM = 0.9


@dataclass(frozen=True)
class Backbone:
    name: str
    application: str   # keras.applications attribute
    expects: str       # "rgb255" (own Rescaling inside) or "caffe"
    dropout: float
    description: str


BACKBONES = {b.name: b for b in (
    Backbone("mobilenetv3-small", "MobileNetV3Small", "rgb255", 0.2,
             "Keras MobileNetV3-Small backbone (hard-swish, squeeze-excite; ~0.9 M weights) "
             "+ GAP/softmax head; --weights PATH|imagenet for transfer learning"),
    Backbone("mobilenetv3-large", "MobileNetV3Large", "rgb255", 0.2,
             "Keras MobileNetV3-Large backbone (~3 M weights) + GAP/softmax head; "
             "--weights PATH|imagenet"),
    Backbone("efficientnet-b0", "EfficientNetB0", "rgb255", 0.2,
             "Keras EfficientNet-B0 backbone (SiLU, squeeze-excite; ~4 M weights) + "
             "GAP/softmax head; --weights PATH|imagenet"),
    Backbone("resnet50", "ResNet50", "caffe", 0.0,
             "Keras ResNet50 backbone (the lecture's transfer-learning network; ~24 M "
             "weights) + GAP/softmax head; --weights PATH|imagenet"),
)}


def adapter_weights(spec: InputSpec, expects: str) -> tuple[np.ndarray, np.ndarray]:
    """Kernel (1, 1, C, 3) and bias (3,) mapping the spec's tensor to the backbone's input.

    The spec gives ``t = (pixel * scale - mean) / std`` per channel, so ``pixel = t * std /
    scale + mean / scale``; the backbone wants channel k = ``pixel[source(k)] - offset[k]``.
    """
    image = spec.image
    channels = image.channels
    mean = np.broadcast_to(np.asarray(image.mean, dtype=np.float64), (channels,))
    std = np.broadcast_to(np.asarray(image.std, dtype=np.float64), (channels,))
    order = "bgr" if expects == "caffe" else "rgb"
    if channels == 1:
        sources = (0, 0, 0)
    else:
        sources = (0, 1, 2) if image.color == order else (2, 1, 0)
    offsets = CAFFE_MEAN_BGR if expects == "caffe" else (0.0, 0.0, 0.0)
    kernel = np.zeros((1, 1, channels, 3), dtype=np.float32)
    bias = np.zeros(3, dtype=np.float32)
    for k, source in enumerate(sources):
        kernel[0, 0, source, k] = std[source] / image.scale
        bias[k] = mean[source] / image.scale - offsets[k]
    return kernel, bias


def build_backbone_model(spec: InputSpec, num_classes: int, name: str,
                         weights: str | None = None):
    """The registry builder of every backbone entry (see the module docstring)."""
    import keras
    from keras import layers

    backbone = BACKBONES[name]
    height, width, channels = spec.input_shape
    if min(height, width) < 32:
        raise InputError(f"{name} needs images of at least 32x32 pixels; the input is "
                         f"{width}x{height} (--image-size)")
    application = getattr(keras.applications, backbone.application)
    kwargs = {"include_top": False, "input_shape": (height, width, 3), "name": BACKBONE_LAYER}
    if backbone.application.startswith("MobileNetV3"):
        kwargs["include_preprocessing"] = True
    imagenet = weights == IMAGENET
    base = _application(application, imagenet, kwargs, name)
    if weights and not imagenet:
        load_backbone_weights(base, weights, name)

    if not weights:
        for layer in base.layers:
            if isinstance(layer, layers.BatchNormalization):
                layer.momentum = SCRATCH_BN_MOMENTUM

    inputs = keras.Input((height, width, channels))
    adapter = layers.Conv2D(3, 1, name=ADAPTER_LAYER, trainable=False)
    x = adapter(inputs)
    adapter.set_weights(list(adapter_weights(spec, backbone.expects)))
    x = base(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    if backbone.dropout:
        x = layers.Dropout(backbone.dropout, name="head_dropout")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="head")(x)
    return keras.Model(inputs, outputs, name=name.replace("-", "_"))


def _application(application, imagenet: bool, kwargs: dict, name: str):
    if not imagenet:
        return application(weights=None, **kwargs)
    try:
        # under its own name: Keras names some weight files after the model (EfficientNet:
        # "<name>_notop.h5"), so "backbone" would ask for a file that does not exist
        loaded = application(weights=IMAGENET,
                             **{k: v for k, v in kwargs.items() if k != "name"})
    except Exception as exc:  # keras raises a bare Exception for a failed download
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"--weights imagenet: cannot get the ImageNet weights of {name} "
                         f"(Keras downloads them; needs internet or the file in "
                         f"~/.keras/models): {reason[:200]}") from None
    base = application(weights=None, **kwargs)
    base.set_weights(loaded.get_weights())
    return base


def check_weights_argument(weights: str | None, name: str) -> None:
    """Refuse a bad --weights before any data is read: wrong architecture kind, a missing
    file, or a file type we do not load (pickles and the like)."""
    if weights is None:
        return
    if name not in BACKBONES:
        raise InputError(f"--weights applies to the backbone architectures "
                         f"({', '.join(BACKBONES)}); {name!r} has no pretrained backbone")
    if weights == IMAGENET:
        return
    path = Path(weights)
    if not path.exists():
        raise InputError(f"--weights: expected 'imagenet' or a weights file; {path} does "
                         "not exist")
    if path.is_dir():
        if not (path / "model.keras").is_file():
            raise InputError(f"--weights: expected a model directory with model.keras; "
                             f"{path} has none")
    elif not (path.name.endswith(WEIGHT_SUFFIXES) or path.suffix == ".keras"):
        raise InputError(f"--weights: expected a .weights.h5/.h5 weights file, a .keras "
                         f"model or an edgecnn model directory; found {path.name}")


def load_backbone_weights(base, weights: str, name: str) -> None:
    """Load ``weights`` (a file or model directory, see the module docstring) into the
    backbone ``base``; a file of another architecture fails naming expected and found."""
    check_weights_argument(weights, name)
    path = Path(weights)
    if path.is_dir() or path.suffix == ".keras":
        arrays, found = _backbone_of_model(path / "model.keras" if path.is_dir() else path)
        _set_weights(base, arrays, name, f"{path} ({found})")
        return
    import warnings

    try:
        with warnings.catch_warnings():  # a file that does not fit warns per layer first
            warnings.simplefilter("ignore")
            base.load_weights(str(path))
    except Exception as exc:  # keras and h5py raise ValueError, OSError, KeyError, ...
        detail = " ".join(str(exc).split())[:240]
        raise InputError(f"--weights {path}: expected weights of the {name} backbone without "
                         f"top ({len(base.weights)} arrays); found a file that does not fit: "
                         f"{detail}") from None


def _backbone_of_model(path: Path) -> tuple[list, str]:
    import keras

    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:
        raise InputError(f"--weights: cannot load {path} with safe_mode=True: "
                         f"{' '.join(str(exc).split())[:200]}") from None
    try:
        layer = model.get_layer(BACKBONE_LAYER)
    except ValueError:
        raise InputError(f"--weights {path}: expected an edgecnn backbone model (a layer "
                         f"named {BACKBONE_LAYER!r}); found {model.name!r} without one") from None
    return layer.get_weights(), f"model {model.name!r}"


def _set_weights(base, arrays: list, name: str, found: str) -> None:
    expected = [tuple(w.shape) for w in base.weights]
    given = [tuple(a.shape) for a in arrays]
    if expected != given:
        first = next((i for i, (a, b) in enumerate(zip(expected, given)) if a != b),
                     min(len(expected), len(given)))
        raise InputError(
            f"--weights {found}: expected the {name} backbone ({len(expected)} arrays); found "
            f"{len(given)} arrays, first mismatch at array {first} "
            f"(expected {expected[first] if first < len(expected) else 'none'}, found "
            f"{given[first] if first < len(given) else 'none'})")
    base.set_weights(arrays)


def _register(name: str) -> None:
    def builder(spec, num_classes, weights=None):
        return build_backbone_model(spec, num_classes, name, weights)

    register_model(name, ("image",), BACKBONES[name].description, backbone=True)(builder)


for _name in BACKBONES:
    _register(_name)
