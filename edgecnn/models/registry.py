"""One registry of model architectures.

Builders are filed under their name with ``@register_model``; ``create_model(name, spec,
num_classes)`` builds one for an InputSpec. Unknown names fail with the list of valid ones.
Backbone entries (``edgecnn.models.backbones``) take pretrained weights and the whole spec
(their input adapter undoes its normalisation). TensorFlow is imported by the builders
only, so listing names stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from edgecnn.deploy.errors import InputError, unknown_name
from edgecnn.deploy.spec import InputSpec


@dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: Callable
    kinds: tuple[str, ...]  # which InputSpec kinds it accepts
    description: str
    # builder(spec, num_classes, weights=None) instead of builder(input_shape, num_classes)
    backbone: bool = False


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, kinds: tuple[str, ...], description: str,
                   backbone: bool = False):
    """Decorator filing a builder ``fn(input_shape, num_classes) -> keras.Model`` (with
    ``backbone``: ``fn(spec, num_classes, weights=None)``)."""

    def wrap(builder: Callable) -> Callable:
        if name in _REGISTRY:
            raise ValueError(f"model name {name!r} is registered twice")
        _REGISTRY[name] = ModelEntry(name, builder, tuple(kinds), description, backbone)
        return builder

    return wrap


def list_models() -> list[ModelEntry]:
    _load_builders()
    return [_REGISTRY[name] for name in sorted(_REGISTRY)]


def get_entry(name: str) -> ModelEntry:
    _load_builders()
    if name not in _REGISTRY:
        raise unknown_name("model", name, sorted(_REGISTRY))
    return _REGISTRY[name]


def create_model(name: str, spec: InputSpec, num_classes: int | None = None,
                 weights: str | None = None):
    """Build the registered architecture ``name`` for the spec's input shape; ``weights``
    ('imagenet' or a file, see ``edgecnn.models.backbones``) for backbone entries only."""
    entry = get_entry(name)
    if spec.kind not in entry.kinds:
        raise InputError(f"model {name!r} takes {' or '.join(entry.kinds)} input; "
                         f"the data is {spec.kind}")
    num_classes = num_classes or spec.num_classes
    if entry.backbone:
        return entry.builder(spec, num_classes, weights=weights)
    if weights is not None:
        from edgecnn.models.backbones import check_weights_argument

        check_weights_argument(weights, name)  # raises: not a backbone
    return entry.builder(spec.input_shape, num_classes)


def _load_builders() -> None:
    # Importing the modules runs their @register_model decorators.
    from edgecnn.models import backbones, edge, seed  # noqa: F401
