"""The bundle manifest ``edgecnn.json``: what each exported file is, and where it came from.

Schema: see ``edgecnn.deploy.bundle`` (the reader). Every file entry carries its sha256 so
the runtime refuses a file that changed after export.
"""

from __future__ import annotations

import importlib.metadata
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgecnn.deploy.bundle import BUNDLE_FORMAT, BUNDLE_VERSION, MANIFEST, sha256_file
from edgecnn.deploy.spec import InputSpec

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
    versions = {}
    for name in TOOLS:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def io_entries(path: Path, runtime: str) -> tuple[list[dict], list[dict]]:
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


def _onnx_value(value) -> dict:
    from onnx import helper

    tensor = value.type.tensor_type
    shape = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
    dtype = helper.tensor_dtype_to_np_dtype(tensor.elem_type).name
    return {"name": value.name, "dtype": dtype, "shape": shape}


def _tflite_value(detail: dict) -> dict:
    import numpy as np

    signature = detail.get("shape_signature", detail["shape"])
    entry = {"name": detail["name"], "dtype": np.dtype(detail["dtype"]).name,
             "shape": [None if int(d) < 0 else int(d) for d in signature]}
    scale, zero_point = detail.get("quantization", (0.0, 0))
    if np.dtype(detail["dtype"]).kind in "iu" and scale:
        entry["scale"] = float(scale)
        entry["zero_point"] = int(zero_point)
    return entry


def file_entry(fmt, written: Written) -> dict[str, Any]:
    inputs, outputs = io_entries(written.path, fmt.runtime)
    return {"file": written.path.name, "format": fmt.name, "precision": fmt.precision,
            "sha256": sha256_file(written.path), "size": written.path.stat().st_size,
            "inputs": inputs, "outputs": outputs, "quantization": written.quantization,
            "float_nodes": list(written.float_nodes)}


def build_manifest(*, spec: InputSpec, task: str | None, files: dict[str, dict],
                   calibration: dict, source_model: dict, verification: dict,
                   options: dict) -> dict[str, Any]:
    return {"format": BUNDLE_FORMAT, "version": BUNDLE_VERSION, "created": utc_now(),
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
