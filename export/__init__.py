"""edgecnn.export: trained model directory -> verified int8/float bundle, and parity checks.

``export_model(model_dir, out, ...) -> ExportResult`` writes the bundle (formats.py is the
table of formats); ``run_parity(bundle, data, ...) -> ParityResult`` compares every format
with the float reference on labelled data. TensorFlow, tf2onnx and onnx are imported only by
the functions that use them.
"""

from importlib import import_module

# name -> module; imported on first use, so that importing edgecnn.export.defaults (the
# CLI's help) does not load the exporter
_EXPORTS = {"ExportResult": "exporter", "export_model": "exporter",
            "DEFAULT_FORMATS": "formats", "FORMATS": "formats", "Format": "formats",
            "get_format": "formats", "select_formats": "formats",
            "ParityResult": "parity", "run_parity": "parity", "Thresholds": "verify"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f"edgecnn.export.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'edgecnn.export' has no attribute {name!r}")
