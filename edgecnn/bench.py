"""``edgecnn bench``: size, accuracy, latency, throughput and arithmetic efficiency of every
format of a bundle (and of its Keras source model), measured side by side in one run.

Latency is batch-1 ``predict`` on a preprocessed tensor timed with ``time.perf_counter``
after a warm-up (mean / p50 / p99). Efficiency is the model's MACs (``edgecnn.macs``)
divided by the p50 latency, set against a ceiling measured in the same run with ONNX
Runtime itself at the same thread count (the fastest of many runs): a 512 x 512 x 512
float32 MatMul for float formats, and the same shape as MatMulInteger uint8 x int8 (MLAS's
integer GEMM, the kernel ONNX Runtime's QDQ convolutions run on) for int8 formats.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from edgecnn.deploy.bundle import Bundle
from edgecnn.deploy.errors import BundleError, InputError
from edgecnn.console import stderr_line

CEILING_SIZE = 512
MIN_ITERATIONS = 5
_CPU_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx_vnni",
              "amx_int8")
_VERSIONS = ("numpy", "onnxruntime", "onnx", "ai-edge-litert", "tensorflow", "keras")



@dataclass
class EvalData:
    """Preprocessed labelled tensors to measure accuracy on (and to time real inputs)."""

    tensors: np.ndarray
    labels: np.ndarray
    source: str


# ----------------------------------------------------------------------------- progress

class ProgressBar:
    """One line per measured item on stderr: redrawn with \\r on a terminal, otherwise a
    plain start line and a result line (logs stay readable)."""

    def __init__(self, stream=None, width: int = 24, enabled: bool = True):
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.enabled = enabled
        self.tty = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.label = ""
        self._last = 0.0

    def start(self, label: str) -> None:
        self.label = label
        self._last = 0.0
        if not self.enabled:
            return
        if self.tty:
            self._draw(0.0, "")
        else:
            print(f"{label} ...", file=self.stream, flush=True)

    def update(self, fraction: float, note: str = "") -> None:
        if not self.tty:
            return
        now = time.perf_counter()
        if now - self._last < 0.1:  # redraw at most ten times a second
            return
        self._last = now
        self._draw(fraction, note)

    def _draw(self, fraction: float, note: str) -> None:
        fraction = min(max(fraction, 0.0), 1.0)
        filled = int(round(fraction * self.width))
        bar = "#" * filled + "-" * (self.width - filled)
        self.stream.write(f"\r{self.label:<18} [{bar}] {fraction * 100:3.0f}% {note:<28}")
        self.stream.flush()

    def done(self, summary: str) -> None:
        if not self.enabled:
            return
        if self.tty:
            line = f"\r{self.label:<18} [{'#' * self.width}] {summary}"
            self.stream.write(line.ljust(self.width + 60) + "\n")
            self.stream.flush()
        else:
            print(f"{self.label}: {summary}", file=self.stream, flush=True)


# ----------------------------------------------------------------------------- timing

def time_calls(call: Callable[[], object], *, warmup: int, iterations: int,
               max_seconds: float, tick: Callable[[float, str], None] | None = None
               ) -> np.ndarray:
    """Seconds per call after ``warmup`` untimed calls; stops at ``iterations`` calls or
    after ``max_seconds`` (but not before a few calls), whichever comes first."""
    for _ in range(max(warmup, 0)):
        call()
    floor = min(MIN_ITERATIONS, iterations)
    times = []
    started = time.perf_counter()
    while len(times) < iterations:
        t0 = time.perf_counter()
        call()
        t1 = time.perf_counter()
        times.append(t1 - t0)
        elapsed = t1 - started
        if tick is not None:
            tick(max(len(times) / iterations, elapsed / max_seconds),
                 f"{len(times)}/{iterations}")
        if elapsed > max_seconds and len(times) >= floor:
            break
    return np.asarray(times, dtype=np.float64)


def latency_stats(seconds: np.ndarray) -> dict:
    ms = np.asarray(seconds) * 1e3
    return {"mean": round(float(ms.mean()), 4), "p50": round(float(np.percentile(ms, 50)), 4),
            "p99": round(float(np.percentile(ms, 99)), 4), "min": round(float(ms.min()), 4),
            "std": round(float(ms.std()), 4), "iterations": int(len(ms))}


# ----------------------------------------------------------------------------- machine

def machine_info() -> dict:
    """CPU model, SIMD flags that matter for float/int8 kernels, cores, load, versions."""
    cpu, flags = None, set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and cpu is None:
                    cpu = value.strip()
                elif key == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    cpu = cpu or platform.processor() or platform.machine()
    versions = {}
    for name in _VERSIONS:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:
        available = os.cpu_count()
    try:
        load = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        load = None
    return {"cpu": cpu, "cpu_flags": [f for f in _CPU_FLAGS if f in flags],
            "cores": os.cpu_count(), "cores_available": available, "load_average": load,
            "platform": platform.platform(), "python": platform.python_version(),
            "versions": versions}


# ----------------------------------------------------------------------------- ceilings

def _ort_session(model_bytes: bytes, threads: int):
    """An ONNX Runtime session with the runtime engine's own threading settings."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return ort.InferenceSession(model_bytes, sess_options=so,
                                providers=["CPUExecutionProvider"])


def _ceiling_models(n: int):
    """(float32 MatMul, MatMulInteger uint8 x int8) n x n x n models with constant weights."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)

    def model(node, a_type, c_type, inits, name):
        graph = helper.make_graph(
            [node], name, [helper.make_tensor_value_info("a", a_type, [n, n])],
            [helper.make_tensor_value_info("c", c_type, [n, n])], inits)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                                 ir_version=8).SerializeToString()

    weights = rng.standard_normal((n, n)).astype(np.float32)
    float_model = model(helper.make_node("MatMul", ["a", "b"], ["c"]), TensorProto.FLOAT,
                        TensorProto.FLOAT, [numpy_helper.from_array(weights, "b")],
                        "ceiling_float32")
    # 7-bit weights, as the exporter's reduce_range default: no pmaddubsw saturation.
    qweights = rng.integers(-64, 64, (n, n)).astype(np.int8)
    int8_model = model(
        helper.make_node("MatMulInteger", ["a", "b", "a_zero", "b_zero"], ["c"]),
        TensorProto.UINT8, TensorProto.INT32,
        [numpy_helper.from_array(qweights, "b"),
         numpy_helper.from_array(np.array(128, np.uint8), "a_zero"),
         numpy_helper.from_array(np.array(0, np.int8), "b_zero")], "ceiling_int8")
    inputs = {"float32": rng.standard_normal((n, n)).astype(np.float32),
              "int8": rng.integers(0, 256, (n, n)).astype(np.uint8)}
    return {"float32": float_model, "int8": int8_model}, inputs


def measure_ceilings(threads: int = 1, size: int = CEILING_SIZE, max_seconds: float = 1.0,
                     progress: ProgressBar | None = None) -> dict:
    """GMAC/s of a large float32 and uint8 x int8 GEMM in ONNX Runtime at ``threads``.

    The ceiling is the fastest run (the peak this machine reached in this run); the p50
    is kept too, since on a busy machine the two differ."""
    try:
        models, inputs = _ceiling_models(size)
    except ImportError:
        return {"error": "the ceiling models are built with 'onnx' (pip install onnx)"}
    macs = size ** 3
    simd = machine_info()["cpu_flags"]
    int8_path = ("VNNI (vpdpbusd)" if {"avx512_vnni", "avx_vnni"} & set(simd)
                 else "AVX2 vpmaddubsw/vpmaddwd" if "avx2" in simd else "SSE/scalar")
    methods = {
        "float32": f"ONNX Runtime MatMul float32 {size}x{size} @ {size}x{size} (constant "
                   f"weights), {threads} thread(s); MLAS SGEMM, the kernel of float Conv/Gemm",
        "int8": f"ONNX Runtime MatMulInteger uint8 x int8 {size}x{size} @ {size}x{size} "
                f"(constant 7-bit weights), {threads} thread(s); MLAS QGEMM U8S8, the "
                f"kernel ONNX Runtime's QLinearConv/QDQ Conv runs on, here via {int8_path}. "
                "An estimate for TFLite int8, which runs XNNPACK's own kernels",
    }
    out = {"threads": threads, "size": size, "macs": macs}
    for precision in ("float32", "int8"):
        if progress:
            progress.start(f"ceiling {precision}")
        session = _ort_session(models[precision], threads)
        feed = {"a": inputs[precision]}
        times = time_calls(lambda: session.run(None, feed), warmup=3, iterations=200,
                           max_seconds=max_seconds,
                           tick=(lambda f, note: progress.update(f, note)) if progress
                           else None)
        stats = latency_stats(times)
        best = macs / (stats["min"] * 1e-3) / 1e9
        typical = macs / (stats["p50"] * 1e-3) / 1e9
        out[precision] = {"gmacs": round(best, 2), "gmacs_p50": round(typical, 2),
                          "latency_ms": stats, "method": methods[precision]}
        if progress:
            progress.done(f"{best:.1f} GMAC/s (fastest run; p50 {typical:.1f})")
    return out


# ----------------------------------------------------------------------------- models

def _precision(fmt: str, entry: dict) -> str:
    if entry.get("precision"):
        return entry["precision"]
    if "int8" in fmt:
        return "int8"
    return "float16" if "fp16" in fmt else "float32"


def bundle_macs(bundle: Bundle) -> dict:
    """MACs at batch 1 from the bundle's float ONNX file (else its int8 ONNX file)."""
    from edgecnn.macs import count_macs

    for fmt in ("onnx", "onnx-int8"):
        if fmt in bundle.manifest["files"]:
            try:
                count = count_macs(bundle.file(fmt))
            except ImportError:
                return {"total": None, "note": "counting MACs needs 'onnx' (pip install onnx)"}
            return {**count.to_dict(), "source_format": fmt}
    return {"total": None, "note": "no ONNX file in the bundle to count MACs from"}


class _KerasCall:
    """The Keras model as a predictor: ``model(x, training=False)``."""

    format = "keras"

    def __init__(self, model):
        self.model = model

    def predict(self, batch: np.ndarray) -> np.ndarray:
        out = self.model(batch, training=False)
        out = out.numpy() if hasattr(out, "numpy") else np.asarray(out)
        return out.astype(np.float32, copy=False)


class _KerasPredict(_KerasCall):
    """The lecture's way of classifying a frame: ``model.predict(x)``."""

    format = "keras-predict"

    def predict(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.predict(batch, batch_size=len(batch), verbose=0),
                          dtype=np.float32)


def find_keras_model_dir(bundle: Bundle, keras_model_dir=None, log=stderr_line):
    """The Keras source model of a bundle: ``keras_model_dir`` if given, else the
    manifest's ``source_model.path`` when it still holds the exported model (same sha256)."""
    from edgecnn.modeldir import ModelDir, is_model_dir

    if keras_model_dir is not None:
        return ModelDir.open(keras_model_dir)
    source = bundle.manifest.get("source_model") or {}
    if not source.get("path"):
        return None
    recorded = Path(source["path"])
    candidates = [recorded] if recorded.is_absolute() else [recorded, bundle.path / recorded]
    for candidate in candidates:
        try:
            if not is_model_dir(candidate):
                continue
        except BundleError:
            continue
        model_dir = ModelDir.open(candidate)
        if source.get("sha256") and model_dir.model_sha256() != source["sha256"]:
            log(f"note: {candidate} no longer holds the model this bundle was exported "
                "from (sha256 differs); Keras rows left out")
            return None
        return model_dir
    return None


def _keras_threads() -> int:
    import tensorflow as tf

    return tf.config.threading.get_intra_op_parallelism_threads() or (os.cpu_count() or 1)


def _load_data(bundle: Bundle, data, task: str | None) -> EvalData | None:
    if data is None or isinstance(data, EvalData):
        return data
    from edgecnn.evaluation import load_for_model
    from edgecnn.tensors import to_tensors

    task = task or bundle.manifest.get("task")
    samples = load_for_model(bundle.spec, task, data)
    return EvalData(to_tensors(samples, bundle.spec), samples.labels, str(data))


def _inputs(spec, data: EvalData | None, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """A batch-1 tensor and a ``batch``-sized batch: real tensors when data is given."""
    if data is not None and len(data.tensors):
        index = np.arange(batch) % len(data.tensors)
        many = np.ascontiguousarray(data.tensors[index])
    else:
        rng = np.random.default_rng(0)
        many = rng.uniform(0.0, 1.0, (batch, *spec.input_shape)).astype(np.float32)
    return np.ascontiguousarray(many[:1]), many


def _measure(name: str, predictor, *, precision: str, file: Path | None, size: int | None,
             threads: int, data: EvalData | None, one: np.ndarray, many: np.ndarray,
             macs: int | None, ceilings: dict, warmup: int, iterations: int,
             max_seconds: float, progress: ProgressBar, kind: str,
             accuracy_from: dict | None = None) -> dict:
    from edgecnn.evaluation import predict_batched

    progress.start(name)
    row = {"name": name, "kind": kind, "file": str(file) if file else None,
           "size_bytes": size, "precision": precision, "threads": threads,
           "accuracy": None, "n": None}
    if accuracy_from is not None:
        row["accuracy"], row["n"] = accuracy_from["accuracy"], accuracy_from["n"]
        row["accuracy_note"] = accuracy_from["note"]
    elif data is not None:
        progress.update(0.0, "accuracy")
        probabilities = predict_batched(predictor, data.tensors, len(many),
                                        log=lambda _m: None)
        predicted = probabilities.argmax(axis=1)
        row["accuracy"] = float((predicted == data.labels).mean())
        row["n"] = int(len(data.labels))

    def tick(phase, scale, offset):
        return lambda fraction, note: progress.update(offset + scale * fraction,
                                                      f"{phase} {note}")

    times = time_calls(lambda: predictor.predict(one), warmup=warmup, iterations=iterations,
                       max_seconds=max_seconds, tick=tick("batch 1", 0.8, 0.0))
    row["latency_ms"] = latency_stats(times)
    batch_times = time_calls(lambda: predictor.predict(many), warmup=1,
                             iterations=max(iterations // 10, 3),
                             max_seconds=max_seconds / 4,
                             tick=tick(f"batch {len(many)}", 0.2, 0.8))
    row["throughput"] = {"batch": int(len(many)),
                         "images_per_s": round(float(len(many) / np.median(batch_times)), 2),
                         "iterations": int(len(batch_times))}
    ceiling_kind = "int8" if precision == "int8" else "float32"
    row["ceiling"] = ceiling_kind
    row["macs"] = macs
    row["gmacs"] = row["gmacs_batch"] = row["ceiling_fraction"] = None
    if macs:
        row["gmacs"] = round(macs / (row["latency_ms"]["p50"] * 1e-3) / 1e9, 3)
        row["gmacs_batch"] = round(macs * row["throughput"]["images_per_s"] / 1e9, 3)
        ceiling = (ceilings.get(ceiling_kind) or {}).get("gmacs")
        if ceiling:
            row["ceiling_fraction"] = round(row["gmacs"] / ceiling, 4)
    accuracy = f"acc {row['accuracy'] * 100:.2f} %, " if row["accuracy"] is not None else ""
    progress.done(f"{accuracy}p50 {row['latency_ms']['p50']:.3f} ms, "
                  f"{row['throughput']['images_per_s']:.0f}/s at batch {len(many)}")
    return row


def bench(bundle_or_name, data=None, *, threads: int = 1, batch: int = 32, warmup: int = 10,
          iterations: int = 200, max_seconds: float = 5.0, formats=None,
          keras_model_dir=None, keras: bool = True, task: str | None = None,
          ceiling_seconds: float = 1.0, progress: bool = True,
          log: Callable[[str], None] = stderr_line) -> dict:
    """Benchmark every format of a bundle (and its Keras model, if found) on this machine.

    data            -- labelled data (path in any layout the task reads, or EvalData) for
                       accuracy; its first tensors are also what gets timed
    threads         -- intra-op threads of every engine and of the ceiling GEMMs
    batch           -- batch size of the throughput measurement
    warmup / iterations / max_seconds -- batch-1 timing: untimed calls, then timed calls
                       until ``iterations`` or ``max_seconds`` (at least a few calls)
    formats         -- subset of the bundle's formats (names or comma list); default all
    keras_model_dir -- the Keras model directory; default: the manifest's source model
    keras           -- False: leave the Keras rows out (no TensorFlow import)
    ceiling_seconds -- time budget of each ceiling GEMM measurement
    """
    from edgecnn.deploy.engine import EngineOptions, missing_runtime, open_engine
    from edgecnn.tfquiet import TRAIN_EXTRA, tensorflow_installed

    for name, value, low in (("batch", batch, 1), ("iterations", iterations, 1),
                             ("warmup", warmup, 0)):
        if not isinstance(value, int) or value < low:
            raise InputError(f"{name} must be a whole number >= {low}; found {value!r}")
    if max_seconds <= 0:
        raise InputError(f"max_seconds must be positive; found {max_seconds}")
    options = EngineOptions(threads=threads)
    bundle = bundle_or_name if isinstance(bundle_or_name, Bundle) else Bundle.open(bundle_or_name)
    chosen = _choose_formats(bundle, formats)
    # Formats and Keras rows whose runtime this install lacks are left out and named (a
    # line PC without the 'train' extra); asked for by name, they are an error.
    skipped = {f: why for f in chosen if (why := missing_runtime(f))}
    if formats is not None and skipped:
        raise BundleError("; ".join(f"format {f} {why}" for f, why in skipped.items()))
    chosen = [f for f in chosen if f not in skipped]
    if keras and keras_model_dir is None and not tensorflow_installed():
        keras, skipped["keras"] = False, f"the Keras source model {TRAIN_EXTRA}"
    for fmt in chosen:  # refuse a missing or modified file before spending time on others
        bundle.file(fmt)
    bar = ProgressBar(enabled=progress)
    model_dir = find_keras_model_dir(bundle, keras_model_dir, log) if keras else None
    eval_data = _load_data(bundle, data, task)
    one, many = _inputs(bundle.spec, eval_data, batch)

    ceilings = measure_ceilings(threads, max_seconds=ceiling_seconds, progress=bar)
    macs = bundle_macs(bundle)
    timing = dict(warmup=warmup, iterations=iterations, max_seconds=max_seconds, progress=bar)
    rows = []
    if model_dir is not None:
        rows.extend(_keras_rows(model_dir, bundle, eval_data, one, many, macs, ceilings,
                                timing))
    for fmt in chosen:
        entry = bundle.entry(fmt)
        engine = open_engine(bundle, fmt, options)
        path = bundle.path / entry["file"]
        rows.append(_measure(fmt, engine, precision=_precision(fmt, entry), file=path,
                             size=path.stat().st_size, threads=threads, data=eval_data,
                             one=one, many=many, macs=macs.get("total"), ceilings=ceilings,
                             kind="bundle", **timing))
    return {
        "bundle": str(bundle.path),
        "task": task or bundle.manifest.get("task"),
        "input_shape": list(bundle.spec.input_shape),
        "labels": list(bundle.labels),
        "source_model": (str(model_dir.path) if model_dir is not None else None),
        "machine": machine_info(),
        "settings": {"threads": threads, "batch": batch, "warmup": warmup,
                     "iterations": iterations, "max_seconds": max_seconds,
                     "latency": "time.perf_counter around predict() of one preprocessed "
                                "batch-1 tensor, after the warm-up calls",
                     "throughput": f"images/s = {batch} / median time of predict() on a "
                                   f"batch of {batch}",
                     "gmacs": "MACs (batch 1) / p50 batch-1 latency; gmacs_batch = MACs x "
                              "throughput"},
        "data": ({"source": eval_data.source, "n": int(len(eval_data.labels))}
                 if eval_data is not None else None),
        "macs": macs,
        "ceilings": ceilings,
        "rows": rows,
        "skipped": skipped,
    }


def _choose_formats(bundle: Bundle, formats) -> list[str]:
    if formats is None:
        return bundle.formats
    if isinstance(formats, str):
        formats = formats.split(",")
    chosen = [f.strip() for f in formats if f.strip()]
    missing = [f for f in chosen if f not in bundle.manifest["files"]]
    if missing or not chosen:
        raise BundleError(f"bundle {bundle.path} has no {', '.join(missing) or 'formats'} "
                          f"model; it has: {', '.join(bundle.formats)}")
    return chosen


def _keras_rows(model_dir, bundle: Bundle, data, one, many, macs, ceilings, timing) -> list:
    from edgecnn.tfquiet import import_tensorflow

    import_tensorflow("benchmarking a Keras model")
    if tuple(model_dir.spec.input_shape) != tuple(bundle.spec.input_shape):
        raise BundleError(f"Keras model {model_dir.path} takes input "
                          f"{model_dir.spec.input_shape}; the bundle takes "
                          f"{bundle.spec.input_shape}: not the bundle's source model")
    model = model_dir.load_keras()
    threads = _keras_threads()
    size = model_dir.model_file.stat().st_size
    common = dict(precision="float32", file=model_dir.model_file, size=size, threads=threads,
                  data=data, one=one, many=many, macs=macs.get("total"), ceilings=ceilings,
                  kind="keras", **timing)
    call = _measure("keras", _KerasCall(model), **common)
    call["threads_note"] = "TensorFlow's default intra-op threading (all cores)"
    # model.predict computes exactly what model(x) does: its accuracy is not run twice.
    reuse = ({"accuracy": call["accuracy"], "n": call["n"],
              "note": "same computation as the keras row"} if data is not None else None)
    predict = _measure("keras-predict", _KerasPredict(model), accuracy_from=reuse, **common)
    predict["threads_note"] = call["threads_note"]
    return [call, predict]


# ----------------------------------------------------------------------------- output

def format_bench(result: dict) -> str:
    """The stdout table plus the ceilings and the machine they were measured on."""
    batch = result["settings"]["batch"]
    header = (f"{'format':<14} {'size KB':>9} {'accuracy':>9} {'mean ms':>9} {'p50 ms':>8} "
              f"{'p99 ms':>8} {f'img/s b{batch}':>10} {'thr':>3} {'MMAC':>8} "
              f"{'GMAC/s':>7} {'% ceil':>7}")
    lines = [header, "-" * len(header)]
    for row in result["rows"]:
        lat = row["latency_ms"]
        accuracy = f"{row['accuracy'] * 100:8.2f}%" if row["accuracy"] is not None else "-"
        size = f"{row['size_bytes'] / 1024:9.1f}" if row["size_bytes"] is not None else "-"
        mmac = f"{row['macs'] / 1e6:8.2f}" if row["macs"] else "-"
        gmacs = f"{row['gmacs']:7.2f}" if row["gmacs"] is not None else "-"
        frac = (f"{row['ceiling_fraction'] * 100:6.1f}%"
                if row["ceiling_fraction"] is not None else "-")
        lines.append(f"{row['name']:<14} {size:>9} {accuracy:>9} {lat['mean']:9.3f} "
                     f"{lat['p50']:8.3f} {lat['p99']:8.3f} "
                     f"{row['throughput']['images_per_s']:10.1f} {row['threads']:>3} "
                     f"{mmac:>8} {gmacs:>7} {frac:>7}")
    for name, why in (result.get("skipped") or {}).items():
        lines.append(f"skipped {name}: {why}")
    ceilings = result["ceilings"]
    if "error" in ceilings:
        lines.append(f"ceilings: not measured ({ceilings['error']})")
    else:
        for precision in ("float32", "int8"):
            c = ceilings[precision]
            lines.append(f"ceiling {precision}: {c['gmacs']:.1f} GMAC/s (fastest run; p50 "
                         f"{c['gmacs_p50']:.1f}) - {c['method']}")
    if result["data"]:
        lines.append(f"accuracy on {result['data']['n']} samples from "
                     f"{result['data']['source']}")
    machine = result["machine"]
    lines.append(f"machine: {machine['cpu']} ({', '.join(machine['cpu_flags']) or 'no flags'}"
                 f"), {machine['cores']} cores, load {machine['load_average']}; onnxruntime "
                 f"{machine['versions']['onnxruntime']}, numpy {machine['versions']['numpy']}")
    lines.append("latency: batch-1 predict() after warm-up; GMAC/s = MACs / p50 latency; "
                 "% ceil = GMAC/s / same-run GEMM ceiling of the row's precision "
                 "(int8 ceiling for int8 rows, float32 otherwise)")
    return "\n".join(lines)
