"""edgecnn: train small CNNs on defect images or vibration recordings, export int8 models
with proven accuracy parity, and run them line-side with ONNX Runtime."""

__version__ = "0.1.0"
