"""What this machine is and what it can do: CPU and SIMD flags, call timing, and the
float32 / int8 GEMM ceilings that ``edgecnn bench`` sets each model's speed against.

The ceilings are measured with ONNX Runtime itself, with the runtime engine's own session
options (``engine.session_options``), at the bench's thread count: a 512 x 512 x 512
float32 MatMul for float formats and the same shape as MatMulInteger uint8 x int8 (MLAS's
integer GEMM, the kernel ONNX Runtime's QDQ convolutions run on) for int8 formats.
"""

from __future__ import annotations

import os
import platform
import time
from typing import Callable

import numpy as np

from edgecnn.console import ProgressBar
from edgecnn.versions import package_versions

CEILING_SIZE = 512
MIN_ITERATIONS = 5
_CPU_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx_vnni",
              "amx_int8")
_VERSIONS = ("numpy", "onnxruntime", "onnx", "ai-edge-litert", "tensorflow", "keras")


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
    versions = package_versions(_VERSIONS)
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


def _ort_session(model_bytes: bytes, threads: int):
    """An ONNX Runtime session with the runtime engine's own session options."""
    import onnxruntime as ort

    from edgecnn.deploy.engine import EngineOptions, session_options

    return ort.InferenceSession(model_bytes, sess_options=session_options(
        EngineOptions(threads=threads)), providers=["CPUExecutionProvider"])


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
