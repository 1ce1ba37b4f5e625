"""Multiply-accumulates of one inference, counted from an ONNX graph at batch 1.

Only the operators that carry a CNN's arithmetic are counted: Conv (grouped and depthwise
included), MatMul and Gemm, plus their integer forms (ConvInteger, QLinearConv,
MatMulInteger, QLinearMatMul), so a float model and its QDQ int8 export count the same.
Pooling, activations and element-wise ops are left out (cheap next to the convolutions,
and "MACs" conventionally means these). Shapes come from ONNX shape inference after the
batch axis is fixed at 1. ``onnx`` is a training-side dependency: imported inside.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edgecnn.deploy.errors import BundleError

# op type -> (index of the data input, index of the weight input)
_CONV_OPS = {"Conv": (0, 1), "ConvInteger": (0, 1), "QLinearConv": (0, 3)}
_MATMUL_OPS = {"MatMul": (0, 1), "MatMulInteger": (0, 1), "QLinearMatMul": (0, 3),
               "Gemm": (0, 1)}


@dataclass
class MacCount:
    """Total MACs at batch 1, per operator type, and the nodes whose shapes were unknown."""

    total: int = 0
    by_op: dict[str, int] = field(default_factory=dict)
    nodes: list[tuple[str, str, int]] = field(default_factory=list)  # (name, op, macs)
    unknown: list[str] = field(default_factory=list)

    def add(self, name: str, op: str, macs: int) -> None:
        self.total += macs
        self.by_op[op] = self.by_op.get(op, 0) + macs
        self.nodes.append((name, op, macs))

    def to_dict(self) -> dict:
        return {"total": self.total, "by_op": dict(self.by_op),
                "unknown_nodes": list(self.unknown)}


def _fix_batch(model) -> None:
    """Set a symbolic leading axis of every graph input to 1."""
    initializers = {t.name for t in model.graph.initializer}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].Clear()
            dims[0].dim_value = 1


def _shapes(model) -> dict[str, list[int | None]]:
    shapes: dict[str, list[int | None]] = {}
    graph = model.graph
    for value in list(graph.input) + list(graph.value_info) + list(graph.output):
        tensor = value.type.tensor_type
        if tensor.HasField("shape"):
            shapes[value.name] = [d.dim_value if d.HasField("dim_value") else None
                                  for d in tensor.shape.dim]
    for tensor in graph.initializer:
        shapes[tensor.name] = list(tensor.dims)
    for node in graph.node:  # Constant nodes hold weights in some exporters
        if node.op_type == "Constant":
            for attribute in node.attribute:
                if attribute.name == "value":
                    shapes[node.output[0]] = list(attribute.t.dims)
    return shapes


def _known(shape) -> bool:
    return shape is not None and all(isinstance(d, int) and d > 0 for d in shape)


def _product(values) -> int:
    out = 1
    for v in values:
        out *= int(v)
    return out


def _attribute(node, name, default):
    from onnx import helper

    for attribute in node.attribute:
        if attribute.name == name:
            return helper.get_attribute_value(attribute)
    return default


def _conv_macs(node, shapes) -> int | None:
    _, w_index = _CONV_OPS[node.op_type]
    weight = shapes.get(node.input[w_index]) if len(node.input) > w_index else None
    output = shapes.get(node.output[0])
    if not (_known(weight) and _known(output)):
        return None
    # weight: (C_out, C_in / group, k...) ; output: (N, C_out, spatial...)
    return _product(output) * _product(weight[1:])


def _matmul_macs(node, shapes) -> int | None:
    a_index, b_index = _MATMUL_OPS[node.op_type]
    a = shapes.get(node.input[a_index])
    output = shapes.get(node.output[0])
    if node.op_type == "Gemm":
        b = shapes.get(node.input[b_index])
        if not (_known(a) and _known(b)) or len(a) != 2 or len(b) != 2:
            return None
        m, k = (a[1], a[0]) if _attribute(node, "transA", 0) else (a[0], a[1])
        n = b[0] if _attribute(node, "transB", 0) else b[1]
        return m * k * n
    if not (_known(a) and _known(output)):
        return None
    return _product(output) * a[-1]


def count_macs(model_or_path) -> MacCount:
    """MACs of one batch-1 inference of an ONNX model (a path or a ModelProto)."""
    import onnx
    from google.protobuf.message import DecodeError

    if isinstance(model_or_path, (str, Path)):
        try:
            model = onnx.load(str(model_or_path))
        except (OSError, DecodeError) as exc:
            raise BundleError(f"cannot read ONNX model {model_or_path}: {exc}") from None
    else:
        model = onnx.ModelProto()
        model.CopyFrom(model_or_path)
    _fix_batch(model)
    # Drop stale intermediate shapes (they may carry the old symbolic batch axis).
    del model.graph.value_info[:]
    try:
        model = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except onnx.onnx_cpp2py_export.shape_inference.InferenceError as exc:
        raise BundleError(f"ONNX shape inference failed: {exc}") from None
    shapes = _shapes(model)
    count = MacCount()
    for node in model.graph.node:
        if node.op_type in _CONV_OPS:
            macs = _conv_macs(node, shapes)
        elif node.op_type in _MATMUL_OPS:
            macs = _matmul_macs(node, shapes)
        else:
            continue
        name = node.name or node.output[0]
        if macs is None:
            count.unknown.append(name)
        else:
            count.add(name, node.op_type, macs)
    return count
