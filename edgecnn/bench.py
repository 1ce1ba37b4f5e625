"""``edgecnn bench``: size, accuracy, latency, throughput and arithmetic efficiency of every
format of a bundle (and of its Keras source model), measured side by side in one run.

Latency is batch-1 ``predict`` on a preprocessed tensor timed with ``time.perf_counter``
after a warm-up (mean / p50 / p99). Efficiency is the model's MACs (``edgecnn.macs``)
divided by the p50 latency, set against a ceiling measured in the same run with ONNX
Runtime itself at the same thread count (its p50 over many runs; the fastest is shown
beside it): a 512 x 512 x 512
float32 MatMul for float formats, and the same shape as MatMulInteger uint8 x int8 (MLAS's
integer GEMM, the kernel ONNX Runtime's QDQ convolutions run on) for int8 formats.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgecnn.console import ProgressBar, stderr_line
from edgecnn.deploy.bundle import Bundle
from edgecnn.deploy.errors import BundleError, InputError
from edgecnn.deploy.formats import FORMATS
from edgecnn.deploy.selection import check_seconds, choose_formats
from edgecnn.machine import latency_stats, machine_info, measure_ceilings, time_calls
from edgecnn.predictors import KerasPredictCall, KerasPredictor, predict_batched


@dataclass
class BenchResult:
    """Everything one ``edgecnn bench`` run measured; ``to_dict`` is its ``--json``."""

    bundle: str
    task: str | None
    input_shape: list
    labels: list
    source_model: str | None
    machine: dict
    settings: dict
    data: dict | None
    macs: dict
    ceilings: dict
    rows: list[dict]
    skipped: dict = field(default_factory=dict)   # format/row -> why it did not run here
    runtime_format: dict = field(default_factory=dict)   # what a run would run here, why

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def format(self) -> str:
        return format_bench(self.to_dict())


@dataclass
class EvalData:
    """Preprocessed labelled tensors to measure accuracy on (and to time real inputs)."""

    tensors: np.ndarray
    labels: np.ndarray
    source: str
    skipped: int = 0          # unreadable files left out (named in the log)


# ----------------------------------------------------------------------------- models

def bundle_macs(bundle: Bundle) -> dict:
    """MACs at batch 1 from the bundle's float ONNX file (else its int8 ONNX file)."""
    from edgecnn.macs import count_macs

    onnx = [f.name for f in FORMATS.values() if f.runtime == "onnx"]
    for fmt in sorted(onnx, key=lambda name: FORMATS[name].quantized):  # float first
        if fmt in bundle.files:
            try:
                count = count_macs(bundle.file(fmt))
            except ImportError:
                return {"total": None, "note": "counting MACs needs 'onnx' (pip install onnx)"}
            return {**count.to_dict(), "source_format": fmt}
    return {"total": None, "note": "no ONNX file in the bundle to count MACs from"}


def find_keras_model_dir(bundle: Bundle, keras_model_dir=None, log=stderr_line):
    """The Keras source model of a bundle: ``keras_model_dir`` if given, else the
    manifest's ``source_model.path`` when it still holds the exported model (same sha256)."""
    from edgecnn.modeldir import ModelDir, is_model_dir

    if keras_model_dir is not None:
        return ModelDir.open(keras_model_dir)
    source = bundle.manifest.get("source_model") or {}
    if not source.get("path"):
        return None
    if not source.get("sha256"):   # a path in a manifest is no reason to load whatever
        log("note: the bundle records no sha256 of its source model, so it is not looked "
            "for (give it with --keras DIR); Keras rows left out")   # Keras model is there
        return None
    recorded = Path(source["path"])
    candidates = [recorded] if recorded.is_absolute() else [recorded, bundle.path / recorded]
    for candidate in candidates:
        try:
            if not is_model_dir(candidate):
                continue
        except BundleError:
            continue
        try:
            model_dir = ModelDir.open(candidate)
        except BundleError as exc:
            log(f"note: the bundle's source model is unusable ({exc}); Keras rows left out")
            return None
        if model_dir.model_sha256() != source["sha256"]:
            log(f"note: {candidate} no longer holds the model this bundle was exported "
                "from (sha256 differs); Keras rows left out")
            return None
        return model_dir
    log(f"note: the bundle's source model {recorded} is not here (a bundle copied to "
        "another machine, or the model moved); Keras rows left out (give it with --keras "
        "DIR)")
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
    return EvalData(to_tensors(samples, bundle.spec), samples.labels, str(data),
                    len(samples.skipped))


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
    progress.start(name)
    row = {"name": name, "kind": kind, "file": str(file) if file else None,
           "size_bytes": size, "precision": precision, "threads": threads,
           "accuracy": None, "n": None}
    if accuracy_from is not None:
        row["accuracy"], row["n"] = accuracy_from["accuracy"], accuracy_from["n"]
        row["accuracy_note"] = accuracy_from["note"]
    elif data is not None:
        progress.update(0.0, "accuracy")
        probabilities = predict_batched(predictor, data.tensors, len(many))
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
        # p50 against p50: the row's GMAC/s come from its median latency too
        found = ceilings.get(ceiling_kind) or {}
        ceiling = found.get("gmacs_p50") or found.get("gmacs")
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
          log: Callable[[str], None] = stderr_line) -> "BenchResult":
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
    check_seconds(max_seconds)
    options = EngineOptions(threads=threads)
    bundle = bundle_or_name if isinstance(bundle_or_name, Bundle) else Bundle.open(bundle_or_name)
    chosen = choose_formats(bundle, formats)
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
    if model_dir is not None:   # a wrong --keras fails before the ceilings are measured
        _check_source_model(model_dir, bundle)
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
        rows.append(_measure(fmt, engine, precision=FORMATS[fmt].precision, file=path,
                             size=path.stat().st_size, threads=threads, data=eval_data,
                             one=one, many=many, macs=macs.get("total"), ceilings=ceilings,
                             kind="bundle", **timing))
    return BenchResult(
        bundle=str(bundle.path),
        task=task or bundle.manifest.get("task"),
        input_shape=list(bundle.spec.input_shape),
        labels=list(bundle.labels),
        source_model=(str(model_dir.path) if model_dir is not None else None),
        machine=machine_info(),
        settings={"threads": threads, "batch": batch, "warmup": warmup,
                  "iterations": iterations, "max_seconds": max_seconds,
                  "latency": "time.perf_counter around predict() of one preprocessed "
                             "batch-1 tensor, after the warm-up calls",
                  "throughput": f"images/s = {batch} / median time of predict() on a "
                                f"batch of {batch}",
                  "gmacs": "MACs (batch 1) / p50 batch-1 latency; gmacs_batch = MACs x "
                           "throughput"},
        data=({"source": eval_data.source, "n": int(len(eval_data.labels)),
               "skipped": eval_data.skipped}
              if eval_data is not None else None),
        macs=macs, ceilings=ceilings, rows=rows, skipped=skipped,
        runtime_format=runtime_format(bundle, threads))


def runtime_format(bundle: Bundle, threads: int = 1) -> dict:
    """The format a run with no --format and ``threads`` runs here at batch 1 and 32, and
    where that choice comes from: the host file (``bench --select`` or a run's first
    start), else the bundle's default, which the first run on this machine replaces by
    its own timing when there is a choice."""
    from edgecnn.deploy.hosts import (
        host_file,
        other_choices,
        present,
        select_command,
        selected_format,
    )
    from edgecnn.deploy.selection import measuring_off, parity_passed

    picks = {b: selected_format(bundle, b, measure=False, threads=threads) for b in (1, 32)}
    paths = sorted({str(path) for _, path in picks.values() if path is not None})
    count = f"{threads} intra-op thread{'s' if threads != 1 else ''}"
    if paths:
        why = f"this machine's host file {paths[0]} (for {count})"
    elif len(parity_passed(bundle)[0]) < 2:
        why = "the bundle's default: no other format to choose here"
    else:
        there = host_file(bundle, threads)
        others = other_choices(bundle, threads)
        why = (f"the host file {there} cannot be used (see the warning)" if present(there)
               else f"no host file for {count}" + (
                   f" (there is one for {' and '.join(map(str, others))})" if others else ""))
        why += (": the bundle's default (EDGECNN_SELECT=off)" if measuring_off() else
                ": the bundle's default until the first run here times its formats, or "
                f"'{select_command(threads)}'")
    return {"batches": {str(b): fmt for b, (fmt, _) in picks.items()}, "threads": threads,
            "host_file": paths[0] if paths else None, "why": why}


def _check_source_model(model_dir, bundle: Bundle) -> None:
    if tuple(model_dir.spec.input_shape) != tuple(bundle.spec.input_shape):
        raise BundleError(f"Keras model {model_dir.path} takes input "
                          f"{model_dir.spec.input_shape}; the bundle takes "
                          f"{bundle.spec.input_shape}: not the bundle's source model")


def _keras_rows(model_dir, bundle: Bundle, data, one, many, macs, ceilings, timing) -> list:
    from edgecnn.tfquiet import import_tensorflow

    import_tensorflow("benchmarking a Keras model")
    model = model_dir.load_keras()
    threads = _keras_threads()
    size = model_dir.model_file.stat().st_size
    common = dict(precision="float32", file=model_dir.model_file, size=size, threads=threads,
                  data=data, one=one, many=many, macs=macs.get("total"), ceilings=ceilings,
                  kind="keras", **timing)
    call = _measure("keras", KerasPredictor(model), **common)
    call["threads_note"] = "TensorFlow's default intra-op threading (all cores)"
    # model.predict computes exactly what model(x) does: its accuracy is not run twice.
    reuse = ({"accuracy": call["accuracy"], "n": call["n"],
              "note": "same computation as the keras row"} if data is not None else None)
    predict = _measure("keras-predict", KerasPredictCall(model), accuracy_from=reuse,
                       **common)
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
    runtime = result.get("runtime_format") or {}
    if runtime.get("batches"):
        chosen = runtime["batches"]
        text = (next(iter(chosen.values())) if len(set(chosen.values())) == 1 else
                ", ".join(f"{fmt} at batch {b}" for b, fmt in chosen.items()))
        lines.append(f"a run without --format runs here: {text} ({runtime['why']})")
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
                 "% ceil = GMAC/s / the p50 of the same-run GEMM ceiling of the row's "
                 "precision (int8 ceiling for int8 rows, float32 otherwise)")
    return "\n".join(lines)
