"""``run_parity``: does every format of a bundle classify like the float model?

The float reference is the bundle's first float32 format in runtime preference order
(``onnx``; ``tflite`` if a bundle has no ONNX file: ``deploy.formats.REFERENCES``). The
Keras model is not in a bundle, and export already proved the float files equal to it
(max |delta softmax| <= 1e-4), so one reference serves every format and all rows of the
table are comparable. Everything here runs on the runtime engines only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from edgecnn.console import stderr_line
from edgecnn.deploy.bundle import Bundle, Trust
from edgecnn.deploy.errors import BundleError, InputError
from edgecnn.deploy.formats import FORMATS, REFERENCES
from edgecnn.export.defaults import MAX_DROP_PP, MIN_AGREEMENT, TIE_MARGIN
from edgecnn.export.verify import Thresholds, agreement_text, compare
from edgecnn.metrics import classification_metrics
from edgecnn.predictors import predict_batched
from edgecnn.tfquiet import silenced

BLAME_SAMPLES = 48


@dataclass
class ParityResult:
    bundle: Path
    reference: str
    data: str
    thresholds: Thresholds
    rows: dict[str, dict]               # format -> edgecnn.metrics keys + parity fields
    blame: dict[str, list] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(row["passed"] for row in self.rows.values())

    @property
    def failed(self) -> list[str]:
        return [name for name, row in self.rows.items() if not row["passed"]]

    def to_dict(self) -> dict:
        return {"bundle": str(self.bundle), "data": self.data, "reference": self.reference,
                "thresholds": {"max_drop_pp": self.thresholds.max_drop,
                               "min_agreement": self.thresholds.min_agreement,
                               "tie_margin": self.thresholds.tie_margin},
                "passed": self.passed, "formats": self.rows,
                "blame": {fmt: [e.to_dict() for e in errors]
                          for fmt, errors in self.blame.items()},
                "notes": self.notes}

    def format(self) -> str:
        from edgecnn.export.blame import format_blame

        n = next(iter(self.rows.values()))["n"]
        lines = [f"parity on {n} samples of {self.data}; reference: {self.reference} "
                 f"(float32); thresholds: drop <= {self.thresholds.max_drop:g} pp, agreement "
                 f">= {self.thresholds.min_agreement * 100:g} %",
                 f"{'format':<12} {'accuracy':>9} {'d acc pp':>9} {'agree':>8} "
                 f"{'worst class d recall':>28} {'mean |dp|':>10}  verdict"]
        for name, row in self.rows.items():
            worst = (f"{row['worst_class']} {row['worst_class_delta_recall_pp']:+.1f}"
                     if row["worst_class"] is not None else "-")
            verdict = ("reference" if name == self.reference else
                       "ok" if row["passed"] else "FAIL: " + "; ".join(row["failures"]))
            lines.append(f"{name:<12} {row['accuracy'] * 100:8.2f}% "
                         f"{row['delta_accuracy_pp']:+9.2f} {row['agreement'] * 100:7.2f}% "
                         f"{worst:>28} {row['mean_abs_delta_prob']:10.2e}  {verdict}")
        for name, row in self.rows.items():
            if row.get("tie_flips"):
                lines.append(f"{name}: top-1 agreement {agreement_text(row)}; the thresholds "
                             "judge near-ties as if they had gone the float model's way")
        for fmt, errors in self.blame.items():
            lines.append(f"{fmt}: layers with the largest quantization error "
                         "(float vs int8 on the same inputs):")
            lines.append(format_blame(errors))
        lines.extend(self.notes)
        return "\n".join(lines)


def run_parity(bundle, data, max_drop: float = MAX_DROP_PP,
               min_agreement: float = MIN_AGREEMENT, *, tie_margin: float = TIE_MARGIN,
               task: str | None = None, formats=None, blame: bool = True,
               log: Callable[[str], None] = stderr_line, trust: Trust | None = None,
               **loader_options) -> ParityResult:
    """Evaluate the float reference and every other format of ``bundle`` on the labelled
    data at ``data``; rows break the thresholds when accuracy drops by more than
    ``max_drop`` percentage points or top-1 agreement with the reference is below
    ``min_agreement``. Failing int8 rows get a per-layer blame table. ``loader_options``
    go to ``load_dataset`` (e.g. ``label_pattern``/``manifest`` for generic recordings);
    ``trust`` goes to ``Bundle.open``."""
    from edgecnn.deploy.engine import EngineOptions, missing_runtime, open_engine
    from edgecnn.deploy.hosts import int8_exact_here
    from edgecnn.evaluation import load_for_model
    from edgecnn.tensors import to_tensors

    thresholds = Thresholds(max_drop, min_agreement, tie_margin)
    opened = Bundle.open(bundle, trust)
    # Formats whose runtime this install lacks (TFLite without ai-edge-litert on a line PC)
    # are left out and named; asked for by --formats, they are an error.
    skipped = {f: why for f in opened.formats if (why := missing_runtime(f))}
    if formats is not None:
        for name in _formats(opened, None, formats):
            if name in skipped:
                raise BundleError(f"format {name} {skipped[name]}")
    runnable = [f for f in opened.formats if f not in skipped]
    reference = next((f for f in REFERENCES if f in runnable), None)
    if reference is None:
        raise BundleError(f"bundle {opened.path} has no float32 model "
                          f"({' or '.join(REFERENCES)}) that runs here to compare against; "
                          f"it has: {', '.join(opened.formats)}"
                          + "".join(f"; {f} {why}" for f, why in skipped.items()))
    names = [f for f in _formats(opened, reference, formats) if f not in skipped]
    for name in names:  # every hash before any slow work: a tampered bundle fails at once
        opened.file(name)

    spec = opened.spec
    task = task or opened.manifest.get("task") or ("images" if spec.kind == "image" else None)
    if task is None:
        raise InputError(f"bundle {opened.path} names no task; pass --task to say how to "
                         "read the data")
    started = time.perf_counter()
    samples = load_for_model(spec, task, data, **loader_options)
    tensors = to_tensors(samples, spec)
    labels = samples.labels
    log(f"parity: {len(samples)} samples from {data} ({task}) ready in "
        f"{time.perf_counter() - started:.1f} s")

    # full 8-bit int8 files that this CPU's fused kernels saturate are judged as written
    saturating = {name: why for name in names
                  if (why := int8_exact_here(opened.manifest["files"][name])) is not None}
    probs, notes = {}, []
    for name in names:
        started = time.perf_counter()
        options = EngineOptions(reference_kernels=name in saturating)
        with silenced():  # LiteRT announces its XNNPACK delegate on stderr at first use
            probs[name] = predict_batched(open_engine(opened, name, options), tensors)
        log(f"parity: {name:<12} {len(tensors)} samples in {time.perf_counter() - started:.1f} s")
        if name in saturating:
            notes.append(_saturation_note(opened, name, saturating[name], tensors,
                                          probs[reference], labels, thresholds))
    rows = {name: _row(probs[name], probs[reference], labels, spec.labels,
                       len(samples.skipped), thresholds, name == reference)
            for name in names}
    for name in saturating:
        rows[name]["kernels"] = "reference"
    result = ParityResult(opened.path, reference, str(data), thresholds, rows, notes=notes)
    result.notes.extend(f"skipped {f}: {why}" for f, why in skipped.items())
    note = thresholds.single_flip(len(samples))
    if note:
        result.notes.append(note)
    if blame:
        _blame(result, opened, tensors, log)
    return result


def _saturation_note(opened: Bundle, name: str, why: str, tensors: np.ndarray,
                     reference: np.ndarray, labels, thresholds: Thresholds) -> str:
    """A full 8-bit int8 file on a CPU whose fused int8 kernels saturate it is judged as
    written (reference kernels: what CPUs with VNNI and ARM CPUs compute); the note says
    so and what ``--format`` would give on this CPU."""
    from edgecnn.deploy.engine import open_engine

    here = compare(reference, predict_batched(open_engine(opened, name), tensors), labels,
                   thresholds.tie_margin)
    return (f"{name}: judged with ONNX Runtime's reference int8 kernels, as CPUs with VNNI "
            f"and ARM CPUs run it: {why}. On this CPU --format {name} gives top-1 agreement "
            f"{agreement_text(here)} and an accuracy drop of {here['drop_pp']:.2f} pp; the "
            "runtime here runs another verified format by default")


def _formats(opened: Bundle, reference: str, formats) -> list[str]:
    if formats is None:
        wanted = opened.formats
    else:
        wanted = list(dict.fromkeys(   # in order, each once
            f.strip() for item in ([formats] if isinstance(formats, str) else formats)
            for f in str(item).split(",") if f.strip()))
        if not wanted:
            raise InputError(f"--formats names no format; the bundle has "
                             f"{', '.join(opened.formats)}")
        for name in wanted:
            opened.entry(name)  # unknown -> BundleError listing what the bundle has
    return ([reference] if reference else []) + [f for f in wanted if f != reference]


def _row(probs, ref_probs, labels, class_names, skipped, thresholds, is_reference) -> dict:
    predicted = probs.argmax(axis=1)
    metrics = classification_metrics(labels, predicted, class_names, skipped=skipped)
    ref_metrics = classification_metrics(labels, ref_probs.argmax(axis=1), class_names,
                                         skipped=skipped)
    stats = compare(ref_probs, probs, labels, thresholds.tie_margin)
    deltas = {name: round((metrics["per_class"][name]["recall"] -
                           ref_metrics["per_class"][name]["recall"]) * 100, 4)
              for name in class_names if metrics["per_class"][name]["support"]}
    worst = min(deltas, key=deltas.get) if deltas else None
    failures = [] if is_reference else thresholds.failures(stats)
    return {**metrics,
            "delta_accuracy_pp": round(0.0 - stats["drop_pp"], 6),  # 0.0 - x: no "-0.00"
            "agreement": stats["agreement"],
            "tie_flips": stats["tie_flips"],
            "undecided": stats["undecided"],    # share the float model's top two are close
            "agreement_beyond_ties": stats["agreement_beyond_ties"],
            "drop_beyond_ties_pp": stats["drop_beyond_ties_pp"],
            "worst_class": worst,
            "worst_class_delta_recall_pp": deltas[worst] if worst is not None else None,
            "mean_abs_delta_prob": stats["mean_abs_diff"],
            "max_abs_delta_prob": stats["max_abs_diff"],
            "failures": failures, "passed": not failures}


def _blame(result: ParityResult, opened: Bundle, tensors: np.ndarray, log) -> None:
    """Per-layer float-vs-int8 errors for every failing int8 format."""
    from edgecnn.export import blame as layer_blame

    sample = tensors[:BLAME_SAMPLES]
    for name in result.failed:
        row = FORMATS[name]
        if not row.quantized:
            continue
        float_name = row.reference
        if float_name not in opened.formats:
            result.notes.append(f"{name}: no {float_name} float file in the bundle to compare "
                                "layers with")
            continue
        log(f"parity: comparing {float_name} and {name} layer by layer")
        if row.runtime == "onnx":
            input_name = opened.file_entry(float_name).inputs[0].name
            errors = layer_blame.onnx_layer_errors(opened.file(float_name), opened.file(name),
                                                   sample, input_name=input_name)
        else:
            errors = layer_blame.tflite_file_layer_errors(opened.file(float_name),
                                                          opened.file(name), sample)
        result.blame[name] = errors
