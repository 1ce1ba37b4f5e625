"""TensorFlow Lite writers: float32, float16 weights, and full-integer int8.

int8 is full integer (int8 input and output tensors; their scale/zero-point go into the
manifest) calibrated with the shared calibration tensors as ``representative_dataset``.
Layer blame compares the int8 file with the float one tensor by tensor (export.blame);
auto-fallback re-quantizes through ``QuantizationDebugger``, whose ``denylisted_nodes`` keep
chosen layers in float.
"""

from __future__ import annotations

from pathlib import Path

from edgecnn.export.manifest import Written
from edgecnn.tfquiet import call_silenced

# Calibration samples used for layer blame and by the QuantizationDebugger.
DEBUG_SAMPLES = 48


def _converter(model):
    from edgecnn.tfquiet import import_tensorflow

    import_tensorflow("TFLite export")
    import tensorflow as tf

    return tf.lite.TFLiteConverter.from_keras_model(model)


def _int8_converter(context, denylist_ops: bool = False):
    import tensorflow as tf

    converter = _converter(context.model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = context.calib.representative_dataset()
    ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if denylist_ops:  # float layers need the float kernels too
        ops.append(tf.lite.OpsSet.TFLITE_BUILTINS)
    converter.target_spec.supported_ops = ops
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return converter


def _quiet_convert(converter) -> bytes:
    return call_silenced(converter.convert)


def compact_names(data: bytes) -> tuple[bytes, dict[str, str]]:
    """Shorten the converter's fused tensor names in an int8 file (``debug.
    short_tensor_names``; graph inputs/outputs keep theirs, clashing names stay long).

    Names are a few kB that an int8 file of a small CNN feels (per-channel parameters
    already cost about 4 %). Returns the bytes and a map short -> original name, so
    auto-fallback can denylist by the converter's names.
    """
    from tensorflow.lite.tools import flatbuffer_utils

    from edgecnn.export.blame import short_tensor_names

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(data))
    graph = model.subgraphs[0]
    keep = {int(i) for i in list(graph.inputs) + list(graph.outputs)}
    produced = {int(i) for op in graph.operators for i in op.outputs} | keep
    names = [t.name.decode() if isinstance(t.name, bytes) else (t.name or "")
             for t in graph.tensors]
    short = short_tensor_names(names, [i in produced for i in range(len(names))])
    clashes = {n for n in short if short.count(n) > 1}
    mapping = {}
    for index, tensor in enumerate(graph.tensors):
        if index in keep or short[index] in clashes or len(short[index]) >= len(names[index]):
            continue
        tensor.name = short[index].encode()
        mapping[short[index]] = names[index]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model)), mapping


def _write_compact(path: Path, data: bytes) -> dict[str, str]:
    compact, mapping = compact_names(data)
    path.write_bytes(compact)
    return mapping


def convert_float(model, path: Path) -> Path:
    """The float32 .tflite as the converter writes it (also the reference int8 layer blame
    compares against)."""
    path.write_bytes(_quiet_convert(_converter(model)))
    return path


def write_tflite(context, path: Path, precision: str, options: dict) -> Written:
    if precision == "float32":
        path.write_bytes(context.float_tflite().read_bytes())
        return Written(path)
    if precision == "float16":
        import tensorflow as tf

        converter = _converter(context.model)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
        path.write_bytes(_quiet_convert(converter))
        return Written(path, quantization={"scheme": "float16 weights", "weights": "float16",
                                           "activations": "float32"})
    return _write_int8(context, path, options)


def _write_int8(context, path: Path, options: dict) -> Written:
    from edgecnn.export import blame as layer_blame

    context.log(f"tflite-int8: calibrating (minmax) on {len(context.calib)} samples")
    work = context.workdir / "candidate.int8.tflite"
    originals = _write_compact(work, _quiet_convert(_int8_converter(context)))
    written = Written(path)
    state = {}

    def blame():
        return layer_blame.tflite_file_layer_errors(context.float_tflite(), work,
                                              context.calib.tensors[:DEBUG_SAMPLES])

    def quantize_without(nodes):
        import tensorflow as tf

        if "debugger" not in state:  # selective quantization goes through the debugger
            state["debugger"] = call_silenced(
                tf.lite.experimental.QuantizationDebugger,
                converter=_int8_converter(context, denylist_ops=True),
                debug_dataset=context.calib.representative_dataset(limit=DEBUG_SAMPLES),
                debug_options=tf.lite.experimental.QuantizationDebugOptions(
                    fully_quantize=True))
        debugger = state["debugger"]
        denylist = [originals.get(name, name) for name in nodes]
        options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=denylist,
                                                                fully_quantize=True)
        call_silenced(setattr, debugger, "options", options)  # re-quantizes, noisily
        originals.update(_write_compact(work, call_silenced(
            debugger.get_nondebug_quantized_model)))
        return work

    layer_blame.settle(context, "tflite-int8", work, options["auto_fallback"], quantize_without,
                 blame, written)
    path.write_bytes(work.read_bytes())
    written.quantization = {"scheme": "full integer", "weights": "int8", "activations": "int8",
                            "per_channel": True, "calibration_method": "minmax",
                            "input_output": "int8"}
    return written
