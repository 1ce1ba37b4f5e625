"""How each format is written: writer, options it accepts, extra it needs, tolerance.

The formats themselves (names, suffixes, runtimes, precisions) are the lean table in
``edgecnn.deploy.formats``; this module attaches the export half to those rows by name, so
the CLI, the exporter, the manifest and the parity check agree on what a format is. Option
values are checked against the row: an option a selected format does not support is an
error, never silently changed.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from typing import Any, Callable

from edgecnn.deploy import formats as lean
from edgecnn.deploy.errors import InputError, unknown_name

# "auto": min/max, or for gated graphs (MobileNetV3, EfficientNet) the onnx_export.int8_recipe.
CALIB_METHODS = ("auto", "minmax", "minmax-mean", "entropy", "percentile")


@dataclass(frozen=True)
class Format:
    """One export format: a lean row plus how to write it.

    options     -- option name -> allowed values, the first being the default
    extra       -- the pip extra that installs ``modules`` (``edgecnn[train]``)
    tolerance   -- max |delta softmax| against Keras at export, or None: report only
                   (reduced-precision formats are judged by ``edgecnn parity``)
    writer      -- ``writer(context, path, options) -> Written`` (export.exporter.ExportContext)
    """

    lean: lean.ModelFormat
    options: dict[str, tuple[Any, ...]]
    extra: str
    modules: tuple[str, ...]
    tolerance: float | None
    description: str
    writer: Callable = field(repr=False, compare=False, default=None)

    name = property(lambda self: self.lean.name)
    suffix = property(lambda self: self.lean.suffix)
    runtime = property(lambda self: self.lean.runtime)      # "onnx" | "tflite"
    precision = property(lambda self: self.lean.precision)  # "float32" | "float16" | "int8"
    file_name = property(lambda self: self.lean.file_name)
    quantized = property(lambda self: self.lean.quantized)

    def defaults(self) -> dict[str, Any]:
        return {name: values[0] for name, values in self.options.items()}


def _onnx_writer(context, path, options):
    from edgecnn.export.onnx_export import write_onnx_float

    return write_onnx_float(context, path, options)


def _onnx_int8_writer(context, path, options):
    from edgecnn.export.onnx_export import write_onnx_int8

    return write_onnx_int8(context, path, options)


def _tflite_writer(precision):
    def write(context, path, options):
        from edgecnn.export.tflite_export import write_tflite

        return write_tflite(context, path, precision, options)

    return write


_ONNX_MODULES = ("tensorflow", "tf2onnx", "onnx", "onnxruntime")
_TFLITE_MODULES = ("tensorflow", "ai_edge_litert")
_MODULES = {"onnx": _ONNX_MODULES, "tflite": _TFLITE_MODULES}

# name -> (options, tolerance, description, writer); rows come from the lean table.
_EXPORT: dict[str, tuple] = {
    "onnx": ({}, 1e-4, "float32 ONNX (tf2onnx, opset 17, optimised for ONNX Runtime); the "
             "float reference", _onnx_writer),
    "onnx-int8": ({"calib_method": CALIB_METHODS, "per_channel": (True, False),
                   "activations": ("uint8", "int8"), "reduce_range": (False, True),
                   "auto_fallback": ("limited", True, False), "float_first": tuple(range(9))}, None,
                  "static int8 QDQ (ONNX Runtime), per-channel 8-bit weights, uint8 "
                  "activations; exact where the CPU has VNNI (or is ARM): on x86 CPUs without "
                  "it the runtime runs another format unless told (--reduce-range: 7-bit "
                  "weights, exact everywhere, less precise)", _onnx_int8_writer),
    "tflite": ({}, 1e-4, "float32 TensorFlow Lite", _tflite_writer("float32")),
    "tflite-fp16": ({}, None, "TensorFlow Lite with float16 weights (half the size, float "
                    "compute)", _tflite_writer("float16")),
    "tflite-int8": ({"calib_method": ("minmax",), "per_channel": (True,),
                     "auto_fallback": ("limited", True, False)}, None,
                    "full-integer TensorFlow Lite: int8 weights, activations, input and output",
                    _tflite_writer("int8")),
}
if set(_EXPORT) != set(lean.FORMATS):  # a row added to one half only is a bug
    raise RuntimeError(f"export formats {sorted(_EXPORT)} differ from the model formats "
                       f"{sorted(lean.FORMATS)}")

FORMATS: dict[str, Format] = {
    row.name: Format(row, options, "train", _MODULES[row.runtime], tolerance, description,
                     writer)
    for row in lean.FORMATS.values()
    for options, tolerance, description, writer in [_EXPORT[row.name]]}

DEFAULT_FORMATS = tuple(FORMATS)


def get_format(name: str) -> Format:
    """The row for ``name``; an unknown name lists close matches and the valid names."""
    if name in FORMATS:
        return FORMATS[name]
    raise unknown_name("export format", name, FORMATS, cutoff=0.5)


def select_formats(names=None) -> list[Format]:
    """Formats by name (a list, or one comma-separated string); default: all of them."""
    if names is None:
        return [FORMATS[n] for n in DEFAULT_FORMATS]
    if isinstance(names, str):
        names = [names]
    flat = [part.strip() for name in names for part in str(name).split(",") if part.strip()]
    if not flat:
        raise InputError(f"no export format given; valid formats: {', '.join(FORMATS)}")
    chosen: list[Format] = []
    for name in flat:
        fmt = get_format(name)
        if fmt not in chosen:
            chosen.append(fmt)
    return chosen


def resolve_options(formats: list[Format], given: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per-format options: each format's defaults overridden by the options the user gave.

    ``given`` holds only options the user set (None values are ignored). An option that no
    selected format takes, or a value a selected format that takes the option does not
    allow, is an InputError naming the formats and their allowed values.
    """
    given = {k: v for k, v in given.items() if v is not None}
    for option, value in given.items():
        flag = "--" + option.replace("_", "-")
        takers = [f for f in formats if option in f.options]
        if not takers:
            everyone = [f.name for f in FORMATS.values() if option in f.options]
            raise InputError(
                f"{flag} applies to {', '.join(everyone) or 'no format'}; none of "
                f"the selected formats ({', '.join(f.name for f in formats)}) uses it")
        for fmt in takers:
            if value not in fmt.options[option]:
                allowed = ", ".join(_show(v) for v in fmt.options[option])
                everyone_allows = all(value in f.options[option] for f in FORMATS.values()
                                      if option in f.options and f is not fmt)
                hint = (f"; export {fmt.name} separately with --formats, or leave {flag} at "
                        "its default" if len(formats) > 1 and everyone_allows else "")
                raise InputError(f"{flag} {_show(value)} is not one {fmt.name} takes (it "
                                 f"takes: {allowed}){hint}")
    return {f.name: {**f.defaults(), **{k: v for k, v in given.items() if k in f.options}}
            for f in formats}


def check_installed(formats: list[Format]) -> None:
    """Fail early, naming the extra to install, when a format's packages are missing."""
    for fmt in formats:
        missing = [m for m in fmt.modules if importlib.util.find_spec(m) is None]
        if missing:
            raise InputError(f"format {fmt.name} needs {', '.join(missing)}: "
                             f"pip install 'edgecnn[{fmt.extra}]'")


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
