"""Inference engines: one small contract, one class per backend.

``open_engine(bundle, fmt)`` verifies the file's hash and returns an engine whose
``predict(batch)`` takes preprocessed float32 tensors (N x H x W x C, as the InputSpec makes
them) and returns float32 class probabilities (N x classes). Quantized input/output tensors
are (de)quantized here with the scale/zero-point stored in the model file.

A camera or vibration loop uses ``engine.runner(shape, batch)`` instead: a fixed-size input
buffer that preprocessing writes into and an output buffer that every run overwrites, so
the per-frame path allocates nothing (ONNX Runtime IO binding on the same memory).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .bundle import Bundle
from .errors import BundleError, InputError
from .formats import model_format

# More intra-op threads than this only costs memory and start-up (a pool of 100 000 threads
# never returns); line PCs have a few cores.
MAX_THREADS = 256


@dataclass(frozen=True)
class EngineOptions:
    """Threading for a small line PC: a fixed number of intra-op threads, no spinning.

    ``reference_kernels``: run an int8 QDQ ONNX model as written (dequantize, float
    operator, quantize) instead of ONNX Runtime's fused int8 kernels: what a CPU whose
    int8 kernels do not saturate computes. Export judges full 8-bit files this way on an
    x86 CPU without VNNI, whose fused kernels saturate them (``hosts.int8_exact_here``).
    """

    threads: int = 1
    spinning: bool = False
    reference_kernels: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.threads, int) or isinstance(self.threads, bool) or \
                not 1 <= self.threads <= MAX_THREADS:
            raise InputError(f"--threads must be a whole number 1-{MAX_THREADS}; found "
                             f"{self.threads!r}")
        cores = os.cpu_count() or 1
        if self.threads > cores and self.threads not in _SAID_THREADS:
            _SAID_THREADS.add(self.threads)    # once per process, not per engine
            logging.getLogger(__name__).warning(
                "note: --threads %d on a machine with %d cores: threads beyond the cores "
                "take turns on them: inference is no faster, often slower", self.threads,
                cores)


_SAID_THREADS: set[int] = set()


class Runner:
    """Fixed-batch inference on preallocated buffers.

    Write tensors into ``inputs`` (float32, batch x H x W x C), call ``run()``; it returns
    ``outputs`` (float32, batch x classes), overwritten by the next run. Generic version:
    one ``predict`` call per run (engines override it with a copy-free path).
    """

    def __init__(self, engine: "Engine", shape: tuple[int, ...], batch: int = 1,
                 probe: int | None = None):
        if batch < 1:
            raise InputError(f"batch size must be at least 1; found {batch}")
        self.engine = engine
        self.inputs = np.zeros((batch, *shape), dtype=np.float32)
        first = _checked_predict(engine, self.inputs[:probe or batch])
        self.outputs = np.zeros((batch, first.shape[1]), dtype=np.float32)

    @property
    def batch(self) -> int:
        return len(self.inputs)

    def run(self) -> np.ndarray:
        self.outputs[...] = self.engine.predict(self.inputs)
        return self.outputs


class Engine:
    """Base class: ``predict`` float32 NHWC batch -> float32 probabilities."""

    format: str = ""
    path: Path
    # Whether runs may come from several threads at once (each on its own Runner): ONNX
    # Runtime's sessions take them; a LiteRT interpreter does not.
    concurrent: bool = False
    # What the backend raises for an input it cannot take (checked once, at warm-up).
    errors: tuple[type[BaseException], ...] = (ValueError, RuntimeError)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def classes(self) -> int | None:
        """The model's output width when the file fixes it, else None."""
        return None

    def runner(self, shape: tuple[int, ...], batch: int = 1) -> Runner:
        """A fixed-batch runner for tensors of ``shape`` (checked by one warm-up run)."""
        return Runner(self, tuple(shape), batch)


def _checked_predict(engine: Engine, batch: np.ndarray) -> np.ndarray:
    """One warm-up run that turns a model/spec shape mismatch into a BundleError."""
    try:
        out = engine.predict(batch)
    except engine.errors as exc:
        raise BundleError(f"model {engine.path} does not accept input of shape "
                          f"{tuple(batch.shape)} (the bundle's InputSpec): {exc}") from None
    out = np.asarray(out)
    if out.ndim != 2 or out.shape[0] != len(batch):
        raise BundleError(f"model {engine.path} returned shape {out.shape} for a batch of "
                          f"{len(batch)}; expected (batch, classes)")
    return out


# A runner's batch runs in session runs of at most this many items (views of its one
# buffer): a CNN's activations for 45 tiles of 128x128 overflow the caches, so one run of
# 45 took 4.7 ms CPU for the shipped NEU model on this 2-core PC, 9 runs of 5 2.6 ms,
# 5 runs of 9 2.8 ms (and the memory arena grows with the run's batch).
RUN_CHUNK = 8


class OnnxRunner(Runner):
    """IO binding on the runner's own numpy buffers: no copies, no allocation per run.

    The batch runs in chunks of at most RUN_CHUNK items, one binding each (a model whose
    batch axis is fixed at 1: one per item).
    """

    def __init__(self, engine: "OnnxEngine", shape: tuple[int, ...], batch: int = 1):
        import onnxruntime as ort

        fixed_one = engine.session.get_inputs()[0].shape[:1] == [1]
        step = 1 if fixed_one else min(batch, RUN_CHUNK)
        super().__init__(engine, shape, batch, probe=step)
        items = [(self.inputs[i:i + step], self.outputs[i:i + step])
                 for i in range(0, batch, step)]
        self._bindings = []
        self._keep = []
        for inp, out in items:
            binding = engine.session.io_binding()
            in_value = ort.OrtValue.ortvalue_from_numpy(inp)
            out_value = ort.OrtValue.ortvalue_from_numpy(out)
            binding.bind_ortvalue_input(engine.input_name, in_value)
            binding.bind_ortvalue_output(engine.output_name, out_value)
            self._bindings.append(binding)
            self._keep.append((in_value, out_value))

    def run(self) -> np.ndarray:
        session = self.engine.session
        for binding in self._bindings:
            session.run_with_iobinding(binding)
        return self.outputs


def session_options(options: EngineOptions = EngineOptions()):
    """ONNX Runtime session options for a small line PC: ``options.threads`` intra-op
    threads, one inter-op thread, sequential execution, all graph optimisations (none for
    ``reference_kernels``), spinning only when asked for (idle spinning threads burn the
    core the next frame needs)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = options.threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_DISABLE_ALL
                                   if options.reference_kernels else
                                   ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
    spin = "1" if options.spinning else "0"
    so.add_session_config_entry("session.intra_op.allow_spinning", spin)
    so.add_session_config_entry("session.inter_op.allow_spinning", spin)
    return so


def _proto_fields(buf):
    """(field number, wire type, value) of a protobuf message: an int for varints, a
    memoryview for length-delimited fields; fixed-width fields skipped."""
    view, i, end = memoryview(buf), 0, len(buf)
    while i < end:
        key, i = _varint(view, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(view, i)
        elif wire == 2:
            size, i = _varint(view, i)
            if i + size > end:
                raise ValueError("a field runs past its message")
            value, i = view[i:i + size], i + size
        elif wire in (1, 5):
            i += 8 if wire == 1 else 4
            continue
        else:
            raise ValueError(f"wire type {wire}")
        yield number, wire, value


def _varint(view, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if i >= len(view) or shift > 63:
            raise ValueError("a cut varint")
        byte = view[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i
        shift += 7


def _tensor_external(tensor) -> bool:
    # TensorProto: external_data = 13, data_location = 14 (EXTERNAL = 1)
    return any((n == 13 and w == 2) or (n == 14 and w == 0 and v == 1)
               for n, w, v in _proto_fields(tensor))


def _graph_external(graph, depth: int = 0) -> bool:
    if depth > 64:
        raise ValueError("graphs nested too deep")
    for number, wire, value in _proto_fields(graph):
        if wire != 2:
            continue
        if number == 5 and _tensor_external(value):          # initializer
            return True
        if number == 15 and any(n in (1, 2) and w == 2 and _tensor_external(v)
                                for n, w, v in _proto_fields(value)):  # sparse_initializer
            return True
        if number == 1:                                       # node: its attributes
            for n, w, attribute in _proto_fields(value):
                if n != 5 or w != 2:
                    continue
                for an, aw, av in _proto_fields(attribute):
                    if aw == 2 and an in (5, 10) and _tensor_external(av):   # t, tensors
                        return True
                    if aw == 2 and an in (6, 11) and _graph_external(av, depth + 1):
                        return True
    return False


def onnx_external_data(model: bytes) -> bool:
    """Whether an ONNX model keeps tensors in external files (ModelProto.graph and its
    subgraphs). A file that does not parse as a model is left to ONNX Runtime to refuse."""
    try:
        return any(number == 7 and wire == 2 and _graph_external(value)
                   for number, wire, value in _proto_fields(model))
    except ValueError:
        return False


class OnnxEngine(Engine):
    concurrent = True

    def __init__(self, path: Path, fmt: str, options: EngineOptions = EngineOptions(),
                 content: bytes | None = None):
        import onnxruntime as ort

        data = Path(path).read_bytes() if content is None else content
        if onnx_external_data(data):
            raise BundleError(f"{path} keeps tensors in external data files, which ONNX "
                              "Runtime would read from the working folder, outside the "
                              "bundle and its hashes: refused (export writes self-contained "
                              "models)")
        try:
            self.session = ort.InferenceSession(data, sess_options=session_options(options),
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise BundleError(f"ONNX Runtime cannot load {path}: {exc}") from None
        self.path = Path(path)
        self.format = fmt
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        self.options = options
        from onnxruntime.capi import onnxruntime_pybind11_state as state

        self.errors = (ValueError, RuntimeError, state.InvalidArgument, state.Fail,
                       state.RuntimeException, state.NotImplemented)

    def classes(self) -> int | None:
        shape = self.session.get_outputs()[0].shape
        return shape[-1] if shape and isinstance(shape[-1], int) else None

    def predict(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        return self.session.run([self.output_name], {self.input_name: batch})[0]

    def runner(self, shape: tuple[int, ...], batch: int = 1) -> Runner:
        return OnnxRunner(self, tuple(shape), batch)


# LiteRT announces its CPU delegate on stderr at the first allocation of a process
# ("INFO: Created TensorFlow Lite XNNPACK delegate for CPU."), from C++, where no Python
# logging setting reaches: that one line is held back, anything else written meanwhile
# is passed on.
_LITERT_BANNER = b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
_litert_quiet = [False]


def _without_litert_banner(allocate) -> None:
    """Call ``allocate()`` (the process's first LiteRT allocation) with file descriptor 2
    taken into a temporary file, then write back what came there but the banner."""
    if _litert_quiet[0]:
        allocate()
        return
    _litert_quiet[0] = True
    import tempfile

    try:
        saved = os.dup(2)
    except OSError:          # no stderr to hold back
        allocate()
        return
    with tempfile.TemporaryFile() as held:
        try:
            os.dup2(held.fileno(), 2)
            allocate()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            rest = b"".join(line for line in held.read().splitlines(keepends=True)
                            if not line.startswith(_LITERT_BANNER))
            if rest:
                os.write(2, rest)


class TFLiteEngine(Engine):
    """Runs .tflite files with ai-edge-litert (no TensorFlow needed)."""

    def __init__(self, path: Path, fmt: str, options: EngineOptions = EngineOptions(),
                 content: bytes | None = None):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise BundleError(f"running a {fmt} model {missing_runtime(fmt)}") from None
        try:
            source = {"model_path": str(path)} if content is None else \
                {"model_content": content}
            self.interpreter = Interpreter(**source, num_threads=options.threads)
        except (ValueError, RuntimeError) as exc:
            raise BundleError(f"LiteRT cannot load {path}: {exc}") from None
        self.path = Path(path)
        self.format = fmt
        self.options = options
        self._content = content  # the interpreter reads from this buffer: keep it alive
        self._input = self.interpreter.get_input_details()[0]
        self._output = self.interpreter.get_output_details()[0]
        self._batch = None

    def classes(self) -> int | None:
        shape = self._output["shape"]
        return int(shape[-1]) if len(shape) and shape[-1] > 0 else None

    def _ensure_batch(self, n: int) -> None:
        if self._batch != n:
            shape = list(self._input["shape"])
            shape[0] = n
            self.interpreter.resize_tensor_input(self._input["index"], shape)
            _without_litert_banner(self.interpreter.allocate_tensors)
            self._input = self.interpreter.get_input_details()[0]
            self._output = self.interpreter.get_output_details()[0]
            self._batch = n

    def predict(self, batch: np.ndarray) -> np.ndarray:
        batch = np.asarray(batch, dtype=np.float32)
        self._ensure_batch(len(batch))
        self.interpreter.set_tensor(self._input["index"], quantize_input(batch, self._input))
        self.interpreter.invoke()
        out = self.interpreter.get_tensor(self._output["index"])
        return dequantize(out, self._output).astype(np.float32, copy=False)


def quantize_input(batch: np.ndarray, detail: dict) -> np.ndarray:
    """A float batch as a LiteRT input tensor wants it: quantized with the tensor's own
    scale and zero point when it is int8/uint8, unchanged otherwise."""
    dtype = detail["dtype"]
    if dtype not in (np.int8, np.uint8):
        return np.asarray(batch, dtype=dtype)
    scale, zero = detail["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(batch / scale) + zero, info.min, info.max).astype(dtype)


def dequantize(values: np.ndarray, detail: dict) -> np.ndarray:
    """A LiteRT tensor as float: (q - zero point) x scale for quantized integer tensors."""
    if values.dtype in (np.int8, np.uint8, np.int16, np.int32):
        scale, zero = detail["quantization"]
        if scale:
            return (values.astype(np.float32) - zero) * scale
    return values


def missing_runtime(fmt: str) -> str | None:
    """Why format ``fmt`` cannot run on this install (its runtime package, a column of the
    format table, is absent), or None. Parity and bench skip such formats and say so; a
    runtime command fails on them."""
    import importlib

    row = model_format(fmt)
    try:
        importlib.import_module(row.module)
        return None
    except ImportError:
        pass
    return f"needs the '{row.package}' package (pip install {row.package}, or edgecnn[train])"


def engine_for_file(path: Path, fmt: str, options: EngineOptions = EngineOptions(),
                    content: bytes | None = None) -> Engine:
    """An engine for a model file by its format (the runtime column of the format table);
    ``content``: the file's bytes, already read and checked (``path`` then names it)."""
    engine = _ENGINES[model_format(fmt).runtime]
    return engine(path, fmt, options, content)


def open_engine(bundle: Bundle | str | os.PathLike, fmt: str | None = None,
                options: EngineOptions = EngineOptions()) -> Engine:
    """Open one format of a bundle (default: the int8 ONNX model), hash verified and its
    output width checked against the bundle's labels."""
    if not isinstance(bundle, Bundle):
        bundle = Bundle.open(bundle)
    fmt = fmt or bundle.default_format()
    path = bundle.path / bundle.file_entry(fmt).file
    engine = engine_for_file(path, fmt, options, content=bundle.model_bytes(fmt))
    _check_classes(engine, bundle)
    return engine


def _check_classes(engine: Engine, bundle: Bundle) -> None:
    """The model must have one output per label: other labels would name wrong classes."""
    width = engine.classes()
    if width is None:  # a dynamic output width: ask the model with one zero input
        width = _checked_predict(engine, np.zeros((1, *bundle.spec.input_shape),
                                                  np.float32)).shape[1]
    if width != len(bundle.labels):
        raise BundleError(f"model {engine.path} has {width} outputs but bundle "
                          f"{bundle.path} lists {len(bundle.labels)} labels "
                          f"({', '.join(bundle.labels)}); its labels do not fit its model")


def open_for_run(bundle: Bundle | str | os.PathLike, kind: str, fmt: str | None = None,
                 options: EngineOptions = EngineOptions(), *, batch: int = 1,
                 shared: dict | None = None, measure: bool = True):
    """(bundle, engine, manifest entry) for a runtime command, refusing a model of the
    wrong kind (an image model on a vibration stream and vice versa) before any source
    is opened. The entry is a copy with ``chosen``: how its format was picked (``by``
    "--format", "host file" with ``host_file``, "fallback" with ``instead_of`` (the
    bundle's default, which does not run here as export verified it) or "bundle default")
    and ``threads``.

    No ``fmt``: this machine's choice from ``edgecnn bench --select`` for about ``batch``
    items per inference (``hosts.selected_format``; its first-start timing unless
    ``measure`` is False: a check that runs nothing), else the bundle's default. With a
    ``shared`` dict, sources of one process share one ONNX Runtime engine per bundle,
    format and options (one session: its memory once; every run comes from the one
    stepping thread). LiteRT interpreters are not shared: one resized per batch size would
    reallocate at every switch between sources.
    """
    if not isinstance(bundle, Bundle):
        bundle = Bundle.open(bundle)
    if bundle.spec.kind != kind:
        have = "an image" if bundle.spec.kind == "image" else "a vibration (signal)"
        want, other = ("camera", "vibration") if kind == "image" else ("vibration", "camera")
        need = "an image" if kind == "image" else "a vibration"
        raise BundleError(f"bundle {bundle.path} holds {have} model; 'edgecnn run {want}' "
                          f"needs {need} model (run this bundle with 'edgecnn run {other}')")
    from .hosts import int8_exact_here, selected_format

    if fmt is None:
        fmt, path = selected_format(bundle, batch, measure, options.threads)
        if path is not None:
            chosen = {"by": "host file", "host_file": str(path)}
        elif fmt != bundle.default_format():   # the default cannot run as verified here
            chosen = {"by": "fallback", "instead_of": bundle.default_format()}
        else:
            chosen = {"by": "bundle default"}
    else:
        chosen = {"by": "--format"}
    # how the format was chosen, for the run's summary: a copy, the manifest is left alone
    entry = {**bundle.entry(fmt), "chosen": {**chosen, "threads": options.threads}}
    why = int8_exact_here(entry)
    if why is not None:   # asked for by name: run it, but say what export cannot vouch for
        logging.getLogger(__name__).warning(
            "%s of %s may not classify as export verified: %s", fmt, bundle.path, why)
    check = (bundle.manifest.get("verification") or {}).get(fmt) or {}
    if check.get("passed") is False:
        logging.getLogger(__name__).warning(
            "%s of %s failed its parity check at export (%s): its classes may differ from "
            "the float model's", fmt, bundle.path,
            "; ".join(check.get("failures") or []) or "see the bundle's manifest")
    shareable = shared is not None and model_format(fmt).runtime == "onnx"
    key = (str(bundle.path.resolve()), fmt, options)
    engine = shared.get(key) if shareable else None
    if engine is None:
        engine = open_engine(bundle, fmt, options)
        if shareable:
            shared[key] = engine
    return bundle, engine, entry


_ENGINES = {"onnx": OnnxEngine, "tflite": TFLiteEngine}
