"""TensorFlow Lite writers: float32, float16 weights, and full-integer int8.

int8 is full integer (int8 input and output tensors; their scale/zero-point go into the
manifest) calibrated with the shared calibration tensors as ``representative_dataset``.
Layer blame compares the int8 file with the float one tensor by tensor (export.debug);
auto-fallback re-quantizes through ``QuantizationDebugger``, whose ``denylisted_nodes`` keep
chosen layers in float.
"""

from __future__ import annotations

from pathlib import Path

from edgecnn.export.manifest import Written
from edgecnn.export.silence import call_silenced

# Calibration samples used for layer blame and by the QuantizationDebugger.
DEBUG_SAMPLES = 48


def _converter(model):
    from edgecnn.tfquiet import quiet_tensorflow

    quiet_tensorflow()
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


def convert_float(model, path: Path) -> Path:
    """The float32 .tflite (also the reference int8 layer blame compares against)."""
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
    from edgecnn.export import debug

    context.log(f"tflite-int8: calibrating (minmax) on {len(context.calib)} samples")
    work = context.workdir / "candidate.int8.tflite"
    work.write_bytes(_quiet_convert(_int8_converter(context)))
    written = Written(path)
    state = {}

    def blame():
        return debug.tflite_file_layer_errors(context.float_tflite(), work,
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
        options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=list(nodes),
                                                                fully_quantize=True)
        call_silenced(setattr, debugger, "options", options)  # re-quantizes, noisily
        work.write_bytes(call_silenced(debugger.get_nondebug_quantized_model))
        return work

    debug.settle(context, "tflite-int8", work, options["auto_fallback"], quantize_without,
                 blame, written)
    path.write_bytes(work.read_bytes())
    written.quantization = {"scheme": "full integer", "weights": "int8", "activations": "int8",
                            "per_channel": True, "calibration_method": "minmax",
                            "input_output": "int8"}
    return written
