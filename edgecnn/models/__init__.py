"""Model registry: ``create_model(name, spec, num_classes)``; ``list_models()``."""

from edgecnn.models.registry import create_model, get_entry, list_models, register_model

__all__ = ["create_model", "get_entry", "list_models", "register_model"]
