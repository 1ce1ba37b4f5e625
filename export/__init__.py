"""edgecnn.export: trained model directory -> verified int8/float bundle, and parity checks.

``export_model(model_dir, out, ...) -> ExportResult`` writes the bundle (formats.py is the
table of formats); ``run_parity(bundle, data, ...) -> ParityResult`` compares every format
with the float reference on labelled data. TensorFlow, tf2onnx and onnx are imported only by
the functions that use them.
"""

from edgecnn.export.exporter import ExportResult, export_model
from edgecnn.export.formats import DEFAULT_FORMATS, FORMATS, Format, get_format, select_formats
from edgecnn.export.parity import ParityResult, run_parity
from edgecnn.export.verify import Thresholds

__all__ = ["DEFAULT_FORMATS", "FORMATS", "ExportResult", "Format", "ParityResult",
           "Thresholds", "export_model", "get_format", "run_parity", "select_formats"]
