"""Real, tiny bundles and media for the runtime tests, built without TensorFlow.

The ONNX models are made with ``onnx.helper`` so the tests exercise the real bundle format
(manifest + sha256), the real engines and the real pipelines in milliseconds:

- ``brightness`` image model: class k wins when the mean input value is nearest
  ``k / (classes - 1)``, so a video of flat gray frames has a known class per frame;
- ``conv`` image model: a small 3-block CNN, close in cost to a real NEU model (benchmarks);
- signal model: mean spectrogram per frequency bin -> fixed random projection -> softmax.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from edgecnn.deploy.bundle import MANIFEST, sha256_file
from edgecnn.deploy.spec import ImageSpec, InputSpec, SignalSpec

REPO = Path(__file__).resolve().parents[1]
CALIBRATION = REPO / "calibration_data"
NEU_CLASSES = ("crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale",
               "scratches")
CWRU_CLASSES = ("normal", "IR007", "IR014", "IR021", "B007", "B014", "B021",
                "OR007", "OR014", "OR021")


def image_spec(size: int = 64, labels=NEU_CLASSES, color: str = "gray") -> InputSpec:
    return InputSpec(kind="image", labels=tuple(labels),
                     image=ImageSpec(height=size, width=size, color=color))


def signal_spec(window_length: int = 2048, labels=CWRU_CLASSES, **kw) -> InputSpec:
    return InputSpec(kind="signal", labels=tuple(labels),
                     signal=SignalSpec(window_length=window_length, **kw))


def _save(model, path: Path) -> None:
    import onnx

    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def brightness_model(spec: InputSpec, sharpness: float = 400.0, batch="N"):
    """NHWC float input -> mean value m -> softmax(-sharpness * (m - centre_k)^2)."""
    from onnx import TensorProto, helper, numpy_helper

    h, w, c = spec.input_shape
    k = spec.num_classes
    centres = np.linspace(0.0, 1.0, k).astype(np.float32)
    nodes = [
        helper.make_node("ReduceMean", ["input", "axes"], ["m"], keepdims=0),
        helper.make_node("Reshape", ["m", "shape"], ["m2"]),
        helper.make_node("Sub", ["m2", "centres"], ["d"]),
        helper.make_node("Mul", ["d", "d"], ["d2"]),
        helper.make_node("Mul", ["d2", "neg"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
    ]
    inits = [numpy_helper.from_array(np.array([1, 2, 3], np.int64), "axes"),
             numpy_helper.from_array(np.array([-1, 1], np.int64), "shape"),
             numpy_helper.from_array(centres, "centres"),
             numpy_helper.from_array(np.array([-sharpness], np.float32), "neg")]
    graph = helper.make_graph(
        nodes, "brightness",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, h, w, c])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [batch, k])],
        inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)],
                             ir_version=10)


def conv_model(spec: InputSpec, widths=(16, 32, 64), seed: int = 0):
    """A small CNN (conv-relu-maxpool blocks, global pool, dense, softmax) on NHWC input."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    h, w, c = spec.input_shape
    k = spec.num_classes
    nodes = [helper.make_node("Transpose", ["input"], ["x0"], perm=[0, 3, 1, 2])]
    inits = []
    cin, x = c, "x0"
    for i, cout in enumerate(widths):
        wt = (rng.normal(size=(cout, cin, 3, 3)) * np.sqrt(2.0 / (9 * cin))).astype(np.float32)
        inits += [numpy_helper.from_array(wt, f"w{i}"),
                  numpy_helper.from_array(np.zeros(cout, np.float32), f"b{i}")]
        nodes += [helper.make_node("Conv", [x, f"w{i}", f"b{i}"], [f"c{i}"], pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", [f"c{i}"], [f"r{i}"]),
                  helper.make_node("MaxPool", [f"r{i}"], [f"p{i}"], kernel_shape=[2, 2],
                                   strides=[2, 2])]
        cin, x = cout, f"p{i}"
    dense = (rng.normal(size=(cin, k)) * 0.5).astype(np.float32)
    inits += [numpy_helper.from_array(dense, "dense"),
              numpy_helper.from_array(np.zeros(k, np.float32), "bias")]
    nodes += [helper.make_node("GlobalAveragePool", [x], ["g"]),
              helper.make_node("Flatten", ["g"], ["f"]),
              helper.make_node("Gemm", ["f", "dense", "bias"], ["logits"]),
              helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1)]
    graph = helper.make_graph(
        nodes, "conv",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", h, w, c])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", k])],
        inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)


def signal_model(spec: InputSpec, seed: int = 0):
    """(N, F, T, 1) -> mean over time -> fixed random projection -> softmax."""
    from onnx import TensorProto, helper, numpy_helper

    f, t, _ = spec.input_shape
    k = spec.num_classes
    rng = np.random.default_rng(seed)
    nodes = [helper.make_node("ReduceMean", ["input", "axes"], ["m"], keepdims=0),
             helper.make_node("MatMul", ["m", "proj"], ["logits"]),
             helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1)]
    inits = [numpy_helper.from_array(np.array([2, 3], np.int64), "axes"),
             numpy_helper.from_array(rng.normal(size=(f, k)).astype(np.float32), "proj")]
    graph = helper.make_graph(
        nodes, "signal",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", f, t, 1])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", k])],
        inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)


def write_bundle(directory: Path, spec: InputSpec, model, fmt: str = "onnx",
                 filename: str | None = None) -> Path:
    """Write ``model`` and an ``edgecnn.json`` manifest (real sha256) into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    filename = filename or ("model.int8.onnx" if fmt == "onnx-int8" else "model.onnx")
    path = directory / filename
    _save(model, path)
    shape = ["N", *spec.input_shape]
    manifest = {
        "format": "edgecnn-bundle", "version": 1, "created": "2025-01-01T00:00:00Z",
        "spec": spec.to_dict(), "labels": list(spec.labels),
        "files": {fmt: {
            "file": filename, "format": fmt, "sha256": sha256_file(path),
            "size": path.stat().st_size,
            "inputs": [{"name": "input", "dtype": "float32", "shape": shape}],
            "outputs": [{"name": "probabilities", "dtype": "float32",
                         "shape": ["N", spec.num_classes]}],
            "quantization": None, "float_nodes": []}},
        "calibration": {}, "source_model": {"name": "runtime-test"}, "tools": {},
        "verification": {},
    }
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return directory


def make_image_bundle(directory: Path, size: int = 64, kind: str = "brightness",
                      labels=NEU_CLASSES, fmt: str = "onnx") -> Path:
    spec = image_spec(size, labels)
    model = brightness_model(spec) if kind == "brightness" else conv_model(spec)
    return write_bundle(directory, spec, model, fmt=fmt)


def make_signal_bundle(directory: Path, window_length: int = 2048, **kw) -> Path:
    spec = signal_spec(window_length, **kw)
    return write_bundle(directory, spec, signal_model(spec))


def neu_images(per_class: int = 2) -> list[tuple[str, np.ndarray]]:
    """(class, gray uint8 image) pairs from calibration_data/neu."""
    out = []
    for cls in NEU_CLASSES:
        files = sorted((CALIBRATION / "neu" / cls).glob("*.jpg"))[:per_class]
        for f in files:
            out.append((cls, cv2.imdecode(np.fromfile(str(f), np.uint8),
                                          cv2.IMREAD_GRAYSCALE)))
    return out


def write_video(path: Path, frames, fps: float = 25.0) -> Path:
    """Write BGR or gray uint8 frames (all the same size) as an MJPG .avi."""
    frames = list(frames)
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"cv2.VideoWriter cannot write {path}")
    for frame in frames:
        if frame.ndim == 2:
            frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        writer.write(frame)
    writer.release()
    return Path(path)


def gray_frame(level: int, size=(96, 128)) -> np.ndarray:
    """A flat BGR frame of one gray level (the brightness model's class is known)."""
    return np.full((*size, 3), level, np.uint8)


def level_for_class(index: int, classes: int = len(NEU_CLASSES)) -> int:
    """Gray level whose brightness-model class is ``index``."""
    return int(round(255 * index / (classes - 1)))
