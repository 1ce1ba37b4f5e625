"""The bundle manifest ``edgecnn.json``: what each exported file is, and where it came from.

Layout and reader: ``edgecnn.deploy.manifest``; file entries are its ``FileEntry`` and
``TensorInfo``, so what is written here is what the loader validates. Every file entry
carries its sha256 so the runtime refuses a file that changed after export.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgecnn.deploy.bundle import MANIFEST, sha256_file
from edgecnn.deploy.events import utc_now
from edgecnn.deploy.manifest import BUNDLE_FORMAT, BUNDLE_VERSION, FileEntry, TensorInfo
from edgecnn.deploy.spec import InputSpec
from edgecnn.versions import package_versions

TOOLS = ("edgecnn", "tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime", "ai-edge-litert",
         "numpy")


@dataclass
class Written:
    """What a format writer produced: the file plus what the manifest should say about it."""

    path: Path
    quantization: dict[str, Any] | None = None
    float_nodes: list[str] = field(default_factory=list)
    blame: list = field(default_factory=list)        # blame.LayerError, worst first
    fallback: list[dict[str, Any]] = field(default_factory=list)  # auto-fallback steps


def tool_versions() -> dict[str, str | None]:
    return package_versions(TOOLS)


def io_entries(path: Path, runtime: str) -> tuple[list[TensorInfo], list[TensorInfo]]:
    """Input and output tensors of a model file: name, dtype, shape (None = any), and the
    scale/zero-point of quantized tensors."""
    if runtime == "onnx":
        import onnx

        model = onnx.load(str(path), load_external_data=False)
        return ([_onnx_value(v) for v in model.graph.input],
                [_onnx_value(v) for v in model.graph.output])
    from ai_edge_litert.interpreter import Interpreter

    from edgecnn.tfquiet import silenced

    with silenced():
        interpreter = Interpreter(model_path=str(path))
    return ([_tflite_value(d) for d in interpreter.get_input_details()],
            [_tflite_value(d) for d in interpreter.get_output_details()])


def _onnx_value(value) -> TensorInfo:
    from onnx import helper

    tensor = value.type.tensor_type
    shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim)
    dtype = helper.tensor_dtype_to_np_dtype(tensor.elem_type).name
    return TensorInfo(value.name, dtype, shape)


def _tflite_value(detail: dict) -> TensorInfo:
    import numpy as np

    signature = detail.get("shape_signature", detail["shape"])
    shape = tuple(None if int(d) < 0 else int(d) for d in signature)
    dtype = np.dtype(detail["dtype"])
    scale, zero_point = detail.get("quantization", (0.0, 0))
    if dtype.kind in "iu" and scale:
        return TensorInfo(detail["name"], dtype.name, shape, float(scale), int(zero_point))
    return TensorInfo(detail["name"], dtype.name, shape)


def file_entry(fmt, written: Written) -> dict[str, Any]:
    """The manifest entry of a written file (``FileEntry`` in its JSON form)."""
    inputs, outputs = io_entries(written.path, fmt.runtime)
    return FileEntry(file=written.path.name, format=fmt.name, precision=fmt.precision,
                     sha256=sha256_file(written.path), size=written.path.stat().st_size,
                     inputs=tuple(inputs), outputs=tuple(outputs),
                     quantization=written.quantization,
                     float_nodes=tuple(written.float_nodes)).to_dict()


def build_manifest(*, spec: InputSpec, task: str | None, files: dict[str, dict],
                   calibration: dict, source_model: dict, verification: dict,
                   options: dict) -> dict[str, Any]:
    return {"format": BUNDLE_FORMAT, "version": BUNDLE_VERSION, "created": utc_now("seconds"),
            "spec": spec.to_dict(), "labels": list(spec.labels), "task": task,
            "files": files, "options": options, "calibration": calibration,
            "source_model": source_model, "tools": tool_versions(),
            "verification": verification}


def write_manifest(bundle_dir: Path, manifest: dict[str, Any]) -> Path:
    path = Path(bundle_dir) / MANIFEST
    path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return path


def manifest_summary(manifest: dict[str, Any]) -> dict[str, Any]:
    """The short form ``edgecnn export --json`` writes: files, sizes, verification."""
    return {"bundle_format": manifest["format"], "version": manifest["version"],
            "task": manifest.get("task"), "labels": manifest["labels"],
            "files": {name: {k: entry[k] for k in ("file", "size", "sha256", "float_nodes")}
                      for name, entry in manifest["files"].items()},
            "calibration": {k: manifest["calibration"].get(k)
                            for k in ("source", "samples", "fingerprint", "per_class")},
            "source_model": manifest["source_model"],
            "verification": manifest["verification"]}
