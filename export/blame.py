"""Which layers make an int8 model disagree with the float one, and keeping them float.

Blame is per layer, float vs quantized, on the same inputs:

- ONNX: ONNX Runtime's ``qdq_loss_debug`` helpers record every intermediate tensor of the
  float and the QDQ model (they share tensor names); per compute node we measure the
  signal-to-quantization-noise ratio (SQNR) and RMSE of its output, and how much noise it
  adds over its input (``score``: growth of the noise-to-signal power ratio).
- TFLite: the float and int8 ``.tflite`` files run with all tensors preserved and are
  compared tensor by tensor (paired by ``short_tensor_names``), the same measure as ONNX.

Whole-tensor SQNR hides a tensor whose quantization wiped out its small channels (one
outlier channel sets the range); the damage shows in the next layer's output. So a blamed
layer is kept in float together with the producer of its input: ``exclude`` lists both,
and that input tensor is then never quantized.

``settle`` is the auto-fallback: while the int8 model breaks the parity thresholds on the
held-out data export judges on, the worst-scored layer not yet excluded is kept in float
(ONNX Runtime's ``nodes_to_exclude``; TFLite's ``QuantizationDebugger`` with
``denylisted_nodes``) and the model is quantized again. By default it keeps at most
``DEFAULT_FALLBACK_SHARE`` of the compute layers float (``fallback_limit``);
``--auto-fallback`` lifts the limit, ``--no-auto-fallback`` turns it off.
"""

from __future__ import annotations

import math
import re
import tempfile
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edgecnn.export.verify import agreement_text

# Ops that only move or gate values: they are fused into their producer's quantization
# (Relu/Clip) or add no arithmetic error of their own.
_PASS_THROUGH = {"Relu", "Clip", "Reshape", "Squeeze", "Unsqueeze", "Flatten", "Transpose",
                 "Identity", "QuantizeLinear", "DequantizeLinear"}
_TFLITE_SKIP = {"QUANTIZE", "DEQUANTIZE", "RESHAPE", "SQUEEZE", "TRANSPOSE"}
_COMPUTE_KEYS = ("conv", "dense", "MatMul", "depthwise")
# The name scope of a nested model: edgecnn.models.backbones calls its Keras application
# "backbone", and a layer inside it is named by its own name, not the backbone's.
_NESTED_SCOPE = re.compile(r"^backbone(_\d+)?$")


def layer_label(path: str) -> str:
    """The layer a converter's name path (model prefix removed) points at:
    ``conv2d_1/Relu`` -> ``conv2d_1``, ``backbone_1/re_lu_3/Relu`` -> ``re_lu_3``."""
    parts = path.split("/")
    if len(parts) > 1 and _NESTED_SCOPE.match(parts[0]):
        parts = parts[1:]
    return parts[0]


@dataclass
class LayerError:
    """One layer's quantization error. ``name`` is what a fallback excludes (ONNX node name
    or TFLite output tensor name); ``label`` the short layer name shown to people."""

    name: str
    label: str
    op: str
    sqnr_db: float
    rmse: float
    delta_db: float | None  # SQNR lost in this layer (input SQNR - output SQNR)
    score: float            # noise-to-signal power this layer adds; higher = more to blame
    exclude: list[str] = field(default_factory=list)  # what keeps it and its input float

    def to_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in asdict(self).items()}


def _noise(reference: np.ndarray, value: np.ndarray) -> tuple[float, float, float]:
    """(noise-to-signal power ratio, SQNR dB, RMSE) of ``value`` against ``reference``."""
    reference = np.asarray(reference, dtype=np.float64).ravel()
    value = np.asarray(value, dtype=np.float64).ravel()
    noise = float(np.sum((reference - value) ** 2))
    signal = max(float(np.sum(reference ** 2)), 1e-30)
    nsr = noise / signal
    sqnr = 10.0 * math.log10(1.0 / nsr) if nsr > 0 else math.inf
    rmse = math.sqrt(noise / max(1, reference.size))
    return nsr, sqnr, rmse


def _rank(errors: list[LayerError]) -> list[LayerError]:
    return sorted(errors, key=lambda e: -e.score)


# ----------------------------------------------------------------------------- ONNX

def onnx_layer_errors(float_path: Path, qdq_path: Path, tensors: np.ndarray,
                      input_name: str = "input", batch_size: int = 16) -> list[LayerError]:
    """Per-node error of a QDQ model against its float model, worst first."""
    import onnx
    from onnxruntime.quantization.qdq_loss_debug import (
        collect_activations,
        modify_model_output_intermediate_tensors,
    )

    from edgecnn.export.calibration import ort_reader

    def reader():
        return ort_reader(tensors, input_name, batch_size)

    with tempfile.TemporaryDirectory(prefix="edgecnn-blame-") as tmp:
        float_aug, qdq_aug = Path(tmp) / "float.onnx", Path(tmp) / "qdq.onnx"
        modify_model_output_intermediate_tensors(str(float_path), str(float_aug))
        modify_model_output_intermediate_tensors(str(qdq_path), str(qdq_aug))
        floats = _joined(collect_activations(str(float_aug), reader()))
        quants = _joined(collect_activations(str(qdq_aug), reader()))
    floats.setdefault(input_name, tensors.ravel())

    def quantized(name):  # the dequantized value the next layer reads
        for key in (f"{name}_DequantizeLinear_Output", f"{name}/dq", name):
            if key in quants:
                return quants[key]
        return None

    model = onnx.load(str(float_path))
    initializers = {t.name for t in model.graph.initializer}
    consumers = defaultdict(list)
    producer = {}
    for node in model.graph.node:
        for name in node.input:
            consumers[name].append(node)
        for name in node.output:
            producer[name] = node

    def compute_producer(name):  # through Relu/Reshape/...: the node that did arithmetic
        node = producer.get(name)
        while node is not None and node.op_type in _PASS_THROUGH and node.input:
            node = producer.get(node.input[0])
        return node

    errors = []
    for node in model.graph.node:
        if node.op_type in _PASS_THROUGH:
            continue
        inputs = [name for name in node.input if name and name not in initializers]
        if not inputs or not node.output:
            continue
        x, y = inputs[0], node.output[0]
        follow = consumers.get(y, [])
        if len(follow) == 1 and follow[0].op_type in ("Relu", "Clip"):
            y = follow[0].output[0]  # fused activation: the quantized tensor is its output
        fx, qx, fy, qy = floats.get(x), quantized(x), floats.get(y), quantized(y)
        if fy is None or qy is None or fy.shape != qy.shape:
            continue
        nsr_out, sqnr_out, rmse = _noise(fy, qy)
        if fx is not None and qx is not None and fx.shape == qx.shape:
            nsr_in, sqnr_in, _ = _noise(fx, qx)
        else:
            nsr_in, sqnr_in = 0.0, math.inf
        delta = sqnr_in - sqnr_out if math.isfinite(sqnr_in) else None
        source = compute_producer(x)
        exclude = [node.name] + ([source.name] if source is not None else [])
        errors.append(LayerError(node.name, node.name.split("/", 1)[0] or node.op_type,
                                 node.op_type, sqnr_out, rmse, delta, nsr_out - nsr_in,
                                 exclude))
    return _rank(errors)


def _joined(activations: dict) -> dict[str, np.ndarray]:
    return {name: np.concatenate([np.ravel(a) for a in arrays])
            for name, arrays in activations.items()}


# ----------------------------------------------------------------------------- TFLite

def tflite_file_layer_errors(float_path: Path, int8_path: Path,
                             tensors: np.ndarray) -> list[LayerError]:
    """Per-op error of an int8 .tflite file against the float .tflite, worst first."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    def open_(path):
        interpreter = Interpreter(
            model_path=str(path), experimental_preserve_all_tensors=True,
            experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        interpreter.allocate_tensors()
        return interpreter

    float_it, quant_it = open_(float_path), open_(int8_path)
    float_index = {name: index for index, name in _paired_names(float_it).items()}
    quant_names = _paired_names(quant_it)
    produced = {}
    for op in quant_it._get_ops_details():
        for index in op["outputs"]:
            produced[int(index)] = op
    details = {d["index"]: d for d in quant_it.get_tensor_details()}
    activations = set(produced) | {d["index"] for d in quant_it.get_input_details()}
    outputs = {d["index"] for d in quant_it.get_output_details()}
    floats, quants = defaultdict(list), defaultdict(list)
    for sample in tensors:
        _invoke(float_it, sample[np.newaxis])
        _invoke(quant_it, sample[np.newaxis])
        for index in activations:
            name = quant_names.get(index)
            if name not in float_index:
                continue
            floats[index].append(float_it.get_tensor(float_index[name]).ravel())
            quants[index].append(_dequantized(quant_it.get_tensor(index), details[index]))
    floats = {k: np.concatenate(v) for k, v in floats.items()}
    quants = {k: np.concatenate(v) for k, v in quants.items()}

    def compute_producer(index):
        op = produced.get(index)
        while op is not None and op["op_name"] in _TFLITE_SKIP and len(op["inputs"]):
            op = produced.get(int(op["inputs"][0]))
        return op

    errors = []
    for index, op in produced.items():
        if op["op_name"] in _TFLITE_SKIP or index not in floats:
            continue
        name = details[index]["name"]
        nsr_out, sqnr_out, rmse = _noise(floats[index], quants[index])
        source = next((int(i) for i in op["inputs"] if int(i) in floats), None)
        if source is not None and floats[source].shape == quants[source].shape:
            nsr_in, sqnr_in, _ = _noise(floats[source], quants[source])
        else:
            nsr_in, sqnr_in = 0.0, math.inf
        delta = sqnr_in - sqnr_out if math.isfinite(sqnr_in) else None
        exclude = [name]
        before = compute_producer(source) if source is not None else None
        if before is not None:
            exclude += [details[int(i)]["name"] for i in before["outputs"]]
        label = "output" if index in outputs else layer_label(quant_names[index])
        errors.append(LayerError(name, label, op["op_name"], sqnr_out, rmse, delta,
                                 nsr_out - nsr_in, exclude))
    return _rank(errors)


def short_tensor_names(names: list[str], activation: list[bool]) -> list[str]:
    """TFLite tensor names without fusion tails and model prefix (``m/re_lu_1/Relu;m/...``
    -> ``re_lu_1/Relu``); constants get ``/const`` (a fused bias shares its layer's name).
    Idempotent, so a compacted int8 file and a converter-named float file pair up."""
    firsts = [n.split("/", 1)[0] for n in names if "/" in n]
    top = max(set(firsts), key=firsts.count) if firsts else ""
    prefix = top + "/" if top and firsts.count(top) * 2 >= len(firsts) and \
        any(";" in n for n in names) else ""
    short = []
    for name, is_activation in zip(names, activation):
        parts = [p.removeprefix(prefix) for p in name.split(";")]
        if is_activation:  # the part naming the layer that did the arithmetic
            base = next((p for p in parts if any(k in p for k in _COMPUTE_KEYS)), parts[0])
        else:
            base = parts[0] if parts[0].endswith("/const") else parts[0] + "/const"
        short.append(base)
    return short


def _paired_names(interpreter) -> dict[int, str]:
    """Activation tensor index -> its short name (unique ones only)."""
    details = interpreter.get_tensor_details()
    produced = {int(i) for op in interpreter._get_ops_details() for i in op["outputs"]}
    produced |= {d["index"] for d in interpreter.get_input_details()}
    short = short_tensor_names([d["name"] for d in details],
                               [d["index"] in produced for d in details])
    unique = {n for n in short if short.count(n) == 1}
    return {d["index"]: n for d, n in zip(details, short) if d["index"] in produced and
            n in unique}


def _invoke(interpreter, batch: np.ndarray) -> None:
    from edgecnn.deploy.engine import quantize_input

    detail = interpreter.get_input_details()[0]
    interpreter.set_tensor(detail["index"], quantize_input(batch, detail))
    interpreter.invoke()


def _dequantized(values: np.ndarray, detail: dict) -> np.ndarray:
    from edgecnn.deploy.engine import dequantize

    return dequantize(values, detail).astype(np.float64).ravel()


# ----------------------------------------------------------------------------- report

def format_blame(errors: list[LayerError], limit: int = 8) -> str:
    """A table of the worst layers: what to look at when int8 parity fails."""
    if not errors:
        return "  (no per-layer comparison available)"
    width = max(12, min(40, max(len(e.label) for e in errors[:limit])))
    lines = [f"  {'layer':<{width}}  {'op':<18} {'SQNR dB':>8} {'dSQNR':>7} {'RMSE':>10}"]
    for error in errors[:limit]:
        delta = f"{error.delta_db:7.1f}" if error.delta_db is not None else "      -"
        lines.append(f"  {error.label[:width]:<{width}}  {error.op[:18]:<18} "
                     f"{error.sqnr_db:8.1f} {delta} {error.rmse:10.4g}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- fallback

DEFAULT_FALLBACK_SHARE = 0.15   # the default fallback keeps at most this share of the
DEFAULT_FALLBACK_MIN = 2        # compute layers float (at least this many)


def fallback_limit(auto_fallback: bool | str, compute_layers: int) -> int | None:
    """How many layers the fallback may keep float: None (as many as it takes) for
    ``--auto-fallback`` (True), 0 for ``--no-auto-fallback`` (False), and by default
    ("limited") a share of the
    model's compute layers: a model that needs more is mostly float, and its int8 file
    would gain little over the float one the bundle then defaults to."""
    if auto_fallback == "limited":
        return max(DEFAULT_FALLBACK_MIN, math.ceil(DEFAULT_FALLBACK_SHARE * compute_layers))
    return None if auto_fallback else 0


def settle(context, fmt: str, work: Path, auto_fallback: bool | str, requantize, blame,
           written) -> None:
    """Check the int8 candidate at ``work``; on failure blame layers and keep the worst
    ones float until the thresholds hold, within ``fallback_limit(auto_fallback)``.

    ``requantize(nodes) -> path`` rewrites the candidate with ``nodes`` kept float;
    ``blame() -> [LayerError]`` ranks the layers (computed once, on the first failure).
    """
    stats, failures = context.check(work, fmt)
    if not failures:
        return
    context.log(f"{fmt}: on {context.judged_on} {'; '.join(failures)}; "
                "comparing float and int8 layer by layer")
    errors = blame()
    written.blame = errors
    context.log(f"{fmt}: layers with the largest quantization error:\n{format_blame(errors)}")
    limit = fallback_limit(auto_fallback, len(errors))
    if limit == 0:
        context.log(f"warning: {fmt} breaks the parity thresholds on {context.judged_on} "
                    "(--no-auto-fallback: no layer kept float); check the calibration set, "
                    "or export without --no-auto-fallback")
        return
    excluded: list[str] = []
    for error in errors:
        new = [name for name in error.exclude or [error.name] if name not in excluded]
        if not new:
            continue
        if limit is not None and len(excluded) + len(new) > limit:
            context.log(f"warning: {fmt}: the parity thresholds do not hold on "
                        f"{context.judged_on} with the {len(excluded)} layer(s) the default "
                        f"fallback may keep float ({limit} of the model's {len(errors)} "
                        f"compute layers: {DEFAULT_FALLBACK_SHARE:.0%}, rounded up, at least "
                        f"{DEFAULT_FALLBACK_MIN}: {'; '.join(failures)}); "
                        "it is not the bundle's default where another format holds parity "
                        "(--auto-fallback keeps as many layers float as it takes)")
            written.float_nodes = list(excluded)   # what the file written keeps float
            return
        excluded.extend(new)
        requantize(list(excluded))
        stats, failures = context.check(work, fmt)
        step = {"float_nodes": list(excluded), "agreement": stats["agreement"],
                "drop_pp": stats["drop_pp"], "passed": not failures}
        written.fallback.append(step)
        state = "holds" if not failures else "; ".join(failures)
        context.log(f"{fmt}: auto-fallback keeps {len(excluded)} layer(s) float "
                    f"(+{error.label}): agreement {agreement_text(stats)}: {state}")
        if not failures:
            written.float_nodes = list(excluded)
            return
    # Not an error: the file stays in the bundle, marked failing, and is not the default;
    # the manifest lists what it keeps float
    written.float_nodes = list(excluded)
    context.log(f"warning: {fmt}: the parity thresholds do not hold on {context.judged_on} "
                f"even with all {len(excluded)} ranked layers in float "
                f"({'; '.join(failures)}); it is not the bundle's default where another format "
                "holds parity")
