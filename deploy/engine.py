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

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .bundle import Bundle
from .errors import BundleError, InputError


@dataclass(frozen=True)
class EngineOptions:
    """Threading for a small line PC: a fixed number of intra-op threads, no spinning."""

    threads: int = 1
    spinning: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.threads, int) or self.threads < 1:
            raise InputError(f"threads must be a whole number >= 1; found {self.threads!r}")


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
    # What the backend raises for an input it cannot take (checked once, at warm-up).
    errors: tuple[type[BaseException], ...] = (ValueError, RuntimeError)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def predict_one(self, tensor: np.ndarray) -> np.ndarray:
        """Batch-1 path: one H x W x C tensor -> one probability vector."""
        return self.predict(tensor[np.newaxis])[0]

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


class OnnxEngine(Engine):
    def __init__(self, path: Path, fmt: str, options: EngineOptions = EngineOptions()):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = options.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        spin = "1" if options.spinning else "0"
        so.add_session_config_entry("session.intra_op.allow_spinning", spin)
        so.add_session_config_entry("session.inter_op.allow_spinning", spin)
        try:
            self.session = ort.InferenceSession(str(path), sess_options=so,
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

    def predict(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        return self.session.run([self.output_name], {self.input_name: batch})[0]

    def runner(self, shape: tuple[int, ...], batch: int = 1) -> Runner:
        return OnnxRunner(self, tuple(shape), batch)


class TFLiteEngine(Engine):
    """Runs .tflite files with ai-edge-litert (no TensorFlow needed)."""

    def __init__(self, path: Path, fmt: str, options: EngineOptions = EngineOptions()):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise BundleError("running a TFLite model needs the 'ai-edge-litert' package "
                              "(pip install ai-edge-litert, or edgecnn[train])") from None
        try:
            self.interpreter = Interpreter(model_path=str(path), num_threads=options.threads)
        except (ValueError, RuntimeError) as exc:
            raise BundleError(f"LiteRT cannot load {path}: {exc}") from None
        self.path = Path(path)
        self.format = fmt
        self.options = options
        self._input = self.interpreter.get_input_details()[0]
        self._output = self.interpreter.get_output_details()[0]
        self._batch = None

    def _ensure_batch(self, n: int) -> None:
        if self._batch != n:
            shape = list(self._input["shape"])
            shape[0] = n
            self.interpreter.resize_tensor_input(self._input["index"], shape)
            self.interpreter.allocate_tensors()
            self._input = self.interpreter.get_input_details()[0]
            self._output = self.interpreter.get_output_details()[0]
            self._batch = n

    def predict(self, batch: np.ndarray) -> np.ndarray:
        batch = np.asarray(batch, dtype=np.float32)
        self._ensure_batch(len(batch))
        dtype = self._input["dtype"]
        if dtype in (np.int8, np.uint8):
            scale, zero = self._input["quantization"]
            info = np.iinfo(dtype)
            batch = np.clip(np.round(batch / scale) + zero, info.min, info.max).astype(dtype)
        self.interpreter.set_tensor(self._input["index"], batch)
        self.interpreter.invoke()
        out = self.interpreter.get_tensor(self._output["index"])
        if out.dtype in (np.int8, np.uint8):
            scale, zero = self._output["quantization"]
            out = (out.astype(np.float32) - zero) * scale
        return out.astype(np.float32, copy=False)


def engine_for_file(path: Path, fmt: str, options: EngineOptions = EngineOptions()) -> Engine:
    """An engine for a model file by its format name (``onnx*`` or ``tflite*``)."""
    if fmt.startswith("onnx"):
        return OnnxEngine(path, fmt, options)
    if fmt.startswith("tflite"):
        return TFLiteEngine(path, fmt, options)
    raise BundleError(f"no engine for format {fmt!r} (expected onnx* or tflite*)")


def open_engine(bundle: Bundle | str | os.PathLike, fmt: str | None = None,
                options: EngineOptions = EngineOptions()) -> Engine:
    """Open one format of a bundle (default: the int8 ONNX model), hash verified."""
    if not isinstance(bundle, Bundle):
        bundle = Bundle.open(bundle)
    fmt = fmt or bundle.default_format()
    return engine_for_file(bundle.file(fmt), fmt, options)


def open_for_run(bundle: Bundle | str | os.PathLike, kind: str, fmt: str | None = None,
                 options: EngineOptions = EngineOptions(), *, batch: int = 1,
                 shared: dict | None = None):
    """(bundle, engine, manifest entry) for a runtime command, refusing a model of the
    wrong kind (an image model on a vibration stream and vice versa) before any source
    is opened.

    No ``fmt``: this machine's choice from ``edgecnn bench --select`` for about ``batch``
    items per inference (``hosts.selected_format``), else the bundle's default. With a
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
    if fmt is None:
        from .hosts import selected_format

        fmt, _ = selected_format(bundle, batch)
    entry = bundle.entry(fmt)
    key = (str(bundle.path.resolve()), fmt, options)
    engine = shared.get(key) if shared is not None and fmt.startswith("onnx") else None
    if engine is None:
        engine = engine_for_file(bundle.file(fmt), fmt, options)
        if shared is not None and fmt.startswith("onnx"):
            shared[key] = engine
    return bundle, engine, entry
