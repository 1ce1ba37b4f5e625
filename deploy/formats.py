"""THE table of model formats, lean half: what a format is, for everything that runs one.

One row per format: file suffix, the runtime that runs it and the package that runtime
needs, its precision, the float32 format it is compared with, and its rank when a bundle
holds several (the int8 ONNX model is what a line PC should run). The engine, the bundle
reader, parity, bench and the CLI help read this table; nothing tests a format by its name.
``edgecnn.export.formats`` attaches writers, options and tolerances to these rows by name.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import BundleError, unknown_name

PRECISIONS = ("float32", "float16", "int8")


@dataclass(frozen=True)
class ModelFormat:
    """One model format.

    runtime    -- "onnx" | "tflite": which engine runs it
    package    -- the pip package that runtime needs (import name ``module``)
    reference  -- the float32 format of the same runtime it is judged against (itself
                  for a float32 format)
    preference -- rank when choosing a bundle's default format (lower runs first)
    """

    name: str
    suffix: str
    runtime: str
    precision: str
    reference: str
    preference: int
    package: str
    module: str

    @property
    def file_name(self) -> str:
        return "model" + self.suffix

    @property
    def quantized(self) -> bool:
        """int8 formats: calibrated, judged by top-1 agreement, eligible for layer blame."""
        return self.precision == "int8"

    @property
    def is_reference(self) -> bool:
        return self.reference == self.name


_ORT = ("onnxruntime", "onnxruntime")
_LITERT = ("ai-edge-litert", "ai_edge_litert")

# Export order (the CLI lists and the manifest keep it); ``preference`` ranks them to run.
FORMATS: dict[str, ModelFormat] = {f.name: f for f in (
    ModelFormat("onnx", ".onnx", "onnx", "float32", "onnx", 2, *_ORT),
    ModelFormat("onnx-int8", ".int8.onnx", "onnx", "int8", "onnx", 1, *_ORT),
    ModelFormat("tflite", ".tflite", "tflite", "float32", "tflite", 5, *_LITERT),
    ModelFormat("tflite-fp16", ".fp16.tflite", "tflite", "float16", "tflite", 4, *_LITERT),
    ModelFormat("tflite-int8", ".int8.tflite", "tflite", "int8", "tflite", 3, *_LITERT),
)}

FORMAT_NAMES = tuple(FORMATS)
# Preferred runtime format first.
PREFERENCE = tuple(sorted(FORMATS, key=lambda name: FORMATS[name].preference))
# Parity's one reference for every row: the first float32 format a bundle has.
REFERENCES = tuple(name for name in PREFERENCE if FORMATS[name].is_reference)


def model_format(name: str) -> ModelFormat:
    """The row for ``name``; an unknown name is a BundleError listing the known formats."""
    if name in FORMATS:
        return FORMATS[name]
    raise unknown_name("model format", name, FORMATS, error=BundleError, cutoff=0.5)


def preferred(names) -> list[str]:
    """``names`` ordered by runtime preference (unknown names last, in their order)."""
    names = list(names)
    return sorted(names, key=lambda n: (FORMATS[n].preference if n in FORMATS else 99,
                                        names.index(n)))
