"""``export_model``: a trained model directory -> a verified, self-describing bundle.

Steps: read the model directory, build the calibration tensors through the InputSpec, run
each format's writer (formats.py), load every written file back with the runtime's own
engine and compare it with the Keras model on the calibration tensors, then write the
manifest. Files are staged next to the bundle and moved in only when all of them pass, so
a failed export never leaves a half-valid bundle behind.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgecnn.console import stderr_line
from edgecnn.deploy.bundle import BUNDLE_FORMAT, MANIFEST, read_json
from edgecnn.deploy.errors import BundleError, CheckFailed
from edgecnn.deploy.signing import SIGNATURE
from edgecnn.deploy.spec import InputSpec
from edgecnn.export.calibration import CalibrationSet, load_calibration
from edgecnn.export.defaults import CALIBRATION_SAMPLES, MAX_DROP_PP, MIN_AGREEMENT, TIE_MARGIN
from edgecnn.export.formats import FORMATS, Format, check_installed, resolve_options, select_formats
from edgecnn.export.manifest import build_manifest, file_entry, manifest_summary, write_manifest
from edgecnn.export.verify import Thresholds, agreement_text, compare
from edgecnn.predictors import KerasPredictor, predict_batched
from edgecnn.tfquiet import silenced


@dataclass
class ExportContext:
    """What every writer needs: the model, the calibration set, the Keras reference
    probabilities on it, the thresholds, a scratch folder and a progress log."""

    model: Any
    spec: InputSpec
    task: str | None
    calib: CalibrationSet
    reference: np.ndarray
    thresholds: Thresholds
    workdir: Path
    log: Callable[[str], None]
    metadata: dict[str, str]
    judge: CalibrationSet | None = None      # what parity is judged on (default: calib)
    judge_reference: np.ndarray | None = None
    reference_kernels: tuple[str, ...] = ()   # formats run as written (``_reference_kernels``)
    _float_onnx: Path | None = None
    _float_tflite: Path | None = None

    def float_onnx(self) -> Path:
        """The prepared float32 ONNX model (converted on first use, shared by both ONNX
        formats so their tensor names match)."""
        if self._float_onnx is None:
            from edgecnn.export.onnx_export import convert_keras

            started = time.perf_counter()
            self._float_onnx = convert_keras(self.model, self.spec,
                                             self.workdir / "float.onnx", self.workdir)
            self.log(f"tf2onnx conversion {time.perf_counter() - started:.1f} s")
        return self._float_onnx

    def float_tflite(self) -> Path:
        """The float32 .tflite model (converted on first use)."""
        if self._float_tflite is None:
            from edgecnn.export.tflite_export import convert_float

            self._float_tflite = convert_float(self.model, self.workdir / "float.tflite")
        return self._float_tflite

    def predict(self, path: Path, fmt: str, tensors: np.ndarray | None = None) -> np.ndarray:
        from edgecnn.deploy.engine import EngineOptions, engine_for_file

        options = EngineOptions(reference_kernels=fmt in self.reference_kernels)
        with silenced():  # LiteRT announces its XNNPACK delegate on stderr at first use
            return predict_batched(engine_for_file(path, fmt, options),
                                   self.calib.tensors if tensors is None else tensors)

    @property
    def judged_on(self) -> str:
        """What parity verdicts are measured on, for log lines."""
        return "the validation split" if self.judge is not None else "the calibration data"

    def check(self, path: Path, fmt: str) -> tuple[dict, list[str]]:
        """Compare a candidate file with the Keras model on the held-out tensors (the
        validation split kept by training; the calibration tensors when there is none)."""
        if self.judge is None:
            stats = compare(self.reference, self.predict(path, fmt), self.calib.labels,
                            self.thresholds.tie_margin)
        else:
            stats = compare(self.judge_reference, self.predict(path, fmt, self.judge.tensors),
                            self.judge.labels, self.thresholds.tie_margin)
        return stats, self.thresholds.failures(stats)


@dataclass
class ExportResult:
    bundle: Path
    manifest: dict
    steps: list[dict] = field(default_factory=list)  # format, seconds, size, file
    blame: dict[str, list] = field(default_factory=dict)

    def summary(self) -> dict:
        return {**manifest_summary(self.manifest), "bundle": str(self.bundle),
                "steps": self.steps}

    def unverified(self) -> str | None:
        """Why no format of the bundle holds parity (its default fails it), or None: the
        bundle is written for inspection, and the export is a failed check."""
        checks = self.manifest["verification"]
        if any(check.get("passed") for check in checks.values()):
            return None
        default = self.manifest.get("default_format")
        return (f"no format of {self.bundle} holds parity: its default {default} fails it; "
                f"export a float format beside it (e.g. --formats onnx,{default}) to have "
                "one the runtime can default to")

    def format(self) -> str:
        lines = [f"{'format':<12} {'file':<18} {'size':>10} {'time':>7}  verification"]
        for step in self.steps:
            check = self.manifest["verification"][step["format"]]
            if check["tolerance"] is not None:
                verdict = f"max |dp| {check['max_abs_diff']:.1e} (<= {check['tolerance']:g})"
            else:
                verdict = f"top-1 agreement {agreement_text(check)}"
                if check.get("ratio_of_float") is not None:
                    verdict += f", {check['ratio_of_float'] * 100:.1f} % of float size"
                if check.get("failures"):  # kept for inspection, never the default
                    verdict += ", FAILS parity (" + "; ".join(check["failures"]) + ")"
            lines.append(f"{step['format']:<12} {step['file']:<18} "
                         f"{step['size'] / 1024:8.1f} kB {step['seconds']:5.1f} s  {verdict}")
        calib = self.manifest["calibration"]
        lines.append(f"calibration: {calib['samples']} samples from {calib['source']}")
        lines.append(f"default format: {self.manifest.get('default_format')}")
        lines.append(f"bundle: {self.bundle}")
        return "\n".join(lines)


def export_model(model_dir, out, formats=None, calib=None, calib_method: str | None = None,
                 auto_fallback: bool | None = None, per_channel: bool | None = None,
                 activations: str | None = None, reduce_range: bool | None = None,
                 float_first: int | None = None,
                 max_drop: float = MAX_DROP_PP, min_agreement: float = MIN_AGREEMENT,
                 tie_margin: float = TIE_MARGIN,
                 max_calibration_samples: int = CALIBRATION_SAMPLES,
                 calib_options: dict | None = None,
                 log: Callable[[str], None] = stderr_line) -> ExportResult:
    """Export ``model_dir`` (from ``edgecnn train``) into the bundle directory ``out``.

    ``formats``: names or a comma list (default: all, see formats.FORMATS). Options left at
    None take each format's default; a value a selected format cannot honour is an error.
    ``float_first`` keeps the first N convolutions of the onnx-int8 model in float (on
    one-channel full-resolution input int8 kernels are slower than float and gain nothing).
    ``max_drop`` (pp) / ``min_agreement`` (0-1) are the parity thresholds, judged on the
    model's validation split; int8 layers that break them stay float (``auto_fallback``:
    None, the default, is "limited": at most a share of the layers, see
    blame.fallback_limit; True as many as it takes; False none). ``calib_options`` say
    how to read ``calib`` (``load_dataset`` keywords such as label_pattern or manifest).
    """
    from edgecnn.modeldir import ModelDir
    from edgecnn.tfquiet import import_tensorflow

    chosen = sorted(select_formats(formats), key=lambda f: list(FORMATS).index(f.name))
    options = resolve_options(chosen, {
        "calib_method": calib_method, "per_channel": per_channel, "activations": activations,
        "reduce_range": reduce_range, "auto_fallback": auto_fallback,
        "float_first": float_first})
    thresholds = Thresholds(max_drop, min_agreement, tie_margin)
    check_installed(chosen)
    import_tensorflow("export")
    source = ModelDir.open(model_dir)
    out = Path(out)
    _check_target(out, source.path)
    source.check_model_file()             # before the calibration is read, not only at load
    model_sha = source.model_sha256()
    spec = source.spec
    task = (source.manifest.get("training") or {}).get("task")
    data = source.manifest.get("data") or {}

    started = time.perf_counter()
    calib_set = load_calibration(spec, task, calib, max_calibration_samples, log,
                                 calib_options, model_dir=source)
    judge = _validation_set(source, spec, task)
    counts = calib_set.counts()
    detail = (", ".join(f"{k} {v}" for k, v in counts.items()) if counts else "unlabelled")
    log(f"calibration: {len(calib_set)} samples from {calib_set.source} ({detail}), "
        f"preprocessed in {time.perf_counter() - started:.1f} s")

    started = time.perf_counter()
    model = source.load_keras()
    reference = predict_batched(KerasPredictor(model), calib_set.tensors)
    judge_reference = (predict_batched(KerasPredictor(model), judge.tensors)
                       if judge is not None else None)
    log(f"keras model {source.architecture} loaded and run in "
        f"{time.perf_counter() - started:.1f} s")
    log(f"parity judged on {len(judge)} validation samples kept by training (never on the "
        "calibration data)" if judge is not None else
        "parity judged on the calibration data (the model directory keeps no validation "
        "split)")
    note = thresholds.single_flip(len(judge) if judge is not None else len(calib_set))
    if note:                                # one flipped sample already breaks the limit
        log(f"{note} with: edgecnn parity BUNDLE --data DIR")
    if calib_set.labels is not None:
        accuracy = float((reference.argmax(axis=1) == calib_set.labels).mean())
        log(f"keras accuracy on the calibration samples: {accuracy * 100:.2f} %")
        if accuracy < 0.5 and calib_set.training_sample:
            log("warning: the model gets most of its own training samples wrong: it learned "
                "little (too few epochs, or classes the images do not tell apart); see its "
                "training report")
        elif accuracy < 0.5:
            log("warning: the model gets most calibration samples wrong; are they the same "
                "kind of data, preprocessed the same way, as the training data?")

    import edgecnn

    metadata = {"edgecnn.spec": spec.to_json(), "edgecnn.labels": json.dumps(list(spec.labels)),
                "edgecnn.task": task or "", "edgecnn.version": edgecnn.__version__,
                "edgecnn.source_model_sha256": model_sha}
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_stages(out, log)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    work = Path(tempfile.mkdtemp(prefix="edgecnn-export-"))
    try:
        context = ExportContext(model, spec, task, calib_set, reference, thresholds, work, log,
                                metadata, judge, judge_reference,
                                _reference_kernels(options, log))
        result = _write_all(context, chosen, options, stage)
        default = default_format(result["verification"], log)
        manifest = build_manifest(
            spec=spec, task=task, files=result["files"],
            calibration={**calib_set.summary(),
                         "method": {name: o.get("calib_method") for name, o in options.items()
                                    if "calib_method" in o}},
            source_model={"path": str(Path(source.path).resolve()), "sha256": model_sha,
                          "architecture": source.architecture,
                          "created": source.manifest.get("created"),
                          "validation": (source.manifest.get("metrics") or {}).get("validation"),
                          "data_fingerprint": data.get("fingerprint"),
                          "data_samples": data.get("samples"),
                          "training": {k: (source.manifest.get("training") or {}).get(k)
                                       for k in ("task", "data", "epochs_run", "seed",
                                                 "val_fraction", "train_seconds")}},
            verification=result["verification"],
            options={**options, "thresholds": {"max_drop_pp": max_drop,
                                               "min_agreement": min_agreement}})
        if source.manifest.get("health"):  # source-health envelope (deploy/health.py)
            manifest["health"] = source.manifest["health"]
        manifest["default_format"] = default
        if judge is not None:
            manifest["calibration"]["judged_on"] = judge.summary()
        write_manifest(stage, manifest)
        _replace_bundle(stage, out, log)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(stage, ignore_errors=True)
    log(f"bundle written to {out}")
    return ExportResult(out, manifest, result["steps"], result["blame"])


def _write_all(context: ExportContext, chosen: list[Format], options: dict,
               stage: Path) -> dict:
    files, verification, steps, blame = {}, {}, [], {}
    sizes: dict[str, int] = {}
    for fmt in chosen:
        started = time.perf_counter()
        written = fmt.writer(context, stage / fmt.file_name, options[fmt.name])
        seconds = time.perf_counter() - started
        size = written.path.stat().st_size
        sizes[fmt.precision + ":" + fmt.runtime] = size
        context.log(f"{fmt.name:<12} {seconds:5.1f} s  {size / 1024:8.1f} kB  {fmt.file_name}")
        steps.append({"format": fmt.name, "file": fmt.file_name, "seconds": round(seconds, 2),
                      "size": size})
        verification[fmt.name] = _verify(context, fmt, written, sizes)
        if written.blame:
            blame[fmt.name] = written.blame
        files[fmt.name] = file_entry(fmt, written)
    return {"files": files, "verification": verification, "steps": steps, "blame": blame}


def _validation_set(source, spec: InputSpec, task) -> CalibrationSet | None:
    from edgecnn.heldout import load_heldout

    kept = load_heldout(source, "validation")
    if kept is None:
        return None
    tensors, labels = kept
    if tensors.shape[1:] != spec.input_shape:
        raise BundleError(f"{source.path}: the kept validation tensors are {tensors.shape[1:]}, "
                          f"the model takes {spec.input_shape}")
    return CalibrationSet(tensors, labels, tuple(spec.labels),
                          f"{source.path} (validation split)", task, available=len(tensors))


def _reference_kernels(options: dict, log: Callable[[str], None]) -> tuple[str, ...]:
    """The formats to judge with ONNX Runtime's reference kernels: a full 8-bit onnx-int8
    file on a CPU whose fused int8 kernels saturate it (x86 without VNNI). Judged with
    those kernels, parity would measure this machine's saturation, not the file, which is
    exact where it is meant to run (VNNI, ARM); the runtime here does not pick it."""
    from edgecnn.deploy.hosts import int8_exact_here

    int8 = options.get("onnx-int8")
    if int8 is None or int8_exact_here({"format": "onnx-int8", "quantization":
                                        {"reduce_range": int8["reduce_range"]}}) is None:
        return ()
    log("onnx-int8: this CPU (x86 without VNNI, as far as its features can be read) "
        "saturates full 8-bit weights in ONNX "
        "Runtime's int8 kernels; parity is judged with its reference kernels, which compute "
        "what CPUs with VNNI and ARM CPUs run. The runtime here runs another verified "
        "format unless told (--reduce-range: 7-bit weights, exact here too)")
    return ("onnx-int8",)


def default_format(verification: dict, log: Callable[[str], None]) -> str:
    """The format the runtime uses when none is asked for: the first of the runtime's
    preference order that passed its checks (an int8 file that breaks parity on held-out
    data is kept in the bundle for inspection but is never the default)."""
    from edgecnn.deploy.formats import preferred

    order = preferred(verification)
    passing = [n for n in order if verification[n].get("passed")]
    chosen = passing[0] if passing else order[0]
    failed = [n for n in order[:order.index(chosen)] if not verification[n].get("passed")]
    if not passing:
        log(f"warning: no format of this bundle holds parity; its default is {chosen}, "
            "which fails it")
    elif failed:
        log(f"warning: {', '.join(failed)} do(es) not hold parity; the bundle's default "
            f"format is {chosen} (run others with --format)")
    return chosen


def _verify(context: ExportContext, fmt: Format, written, sizes: dict) -> dict:
    """Load the written file with the runtime engine and compare with Keras (float files on
    the calibration tensors, to a tolerance; int8 files by context.check's parity)."""
    if fmt.tolerance is None:
        stats, _ = context.check(written.path, fmt.name)
    else:
        stats = compare(context.reference, context.predict(written.path, fmt.name),
                        context.calib.labels, context.thresholds.tie_margin)
    record = {**stats, "tolerance": fmt.tolerance,
              "failures": context.thresholds.failures(stats) if fmt.tolerance is None else []}
    made = context._float_onnx if fmt.runtime == "onnx" else context._float_tflite
    float_size = sizes.get("float32:" + fmt.runtime) or (made.stat().st_size if made else None)
    record["ratio_of_float"] = (round(written.path.stat().st_size / float_size, 4)
                                if float_size and fmt.precision != "float32" else None)
    if fmt.name in context.reference_kernels:
        record["kernels"] = "reference"     # judged as written: see _reference_kernels
    if written.blame:
        record["blame"] = [e.to_dict() for e in written.blame[:8]]
    if written.fallback:
        record["fallback"] = written.fallback
    if fmt.tolerance is not None:
        record["passed"] = stats["max_abs_diff"] <= fmt.tolerance
        context.log(f"  verify {fmt.name}: max |dp| {stats['max_abs_diff']:.2e} on "
                    f"{stats['samples']} samples (tolerance {fmt.tolerance:g})")
        if not record["passed"]:
            raise CheckFailed(f"{fmt.name} does not reproduce the Keras model: max |delta "
                              f"softmax| {stats['max_abs_diff']:.3g} > {fmt.tolerance:g} on "
                              f"{stats['samples']} calibration samples; export stopped")
    else:
        record["passed"] = not record["failures"]
        accuracy = (f", accuracy {stats['accuracy'] * 100:.2f} % vs "
                    f"{stats['reference_accuracy'] * 100:.2f} %"
                    if stats["accuracy"] is not None else "")
        context.log(f"  verify {fmt.name}: top-1 agreement {agreement_text(stats)} "
                    f"on {stats['samples']} samples of {context.judged_on}{accuracy}, mean |dp| "
                    f"{stats['mean_abs_diff']:.2e}")
    return record


STALE_STAGE_S = 600   # a staging folder untouched this long was left by a killed export


def _remove_stale_stages(out: Path, log) -> None:
    """Staging folders of ``out`` left by an export that was killed (SIGTERM/SIGKILL skip
    the clean-up); a running export writes into its own, so it stays young."""
    for stage in out.parent.glob(f".{out.name}.partial-*"):
        try:
            if stage.is_dir() and time.time() - stage.stat().st_mtime > STALE_STAGE_S:
                shutil.rmtree(stage)
                log(f"removed {stage.name}, left by an interrupted export")
        except OSError:
            pass

def _check_target(out: Path, model_path: Path) -> None:
    if out.resolve() == Path(model_path).resolve():
        raise BundleError("the bundle directory must not be the model directory")
    if out.exists() and not out.is_dir():
        raise BundleError(f"bundle path {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        manifest = out / MANIFEST
        old = read_json(manifest, "manifest") if manifest.is_file() else None
        if not isinstance(old, dict) or old.get("format") != BUNDLE_FORMAT:
            raise BundleError(f"{out} is not empty and not an edgecnn bundle; refusing to "
                              "write into it (choose a new or empty directory)")


def _what(manifest: dict) -> str:
    labels = (manifest.get("spec") or {}).get("labels") or []
    return (f"task {manifest.get('task') or '?'}, {len(labels)} classes"
            + (f": {', '.join(map(str, labels[:4]))}{', ...' if len(labels) > 4 else ''}"
               if labels else ""))


def _replace_bundle(stage: Path, out: Path, log=lambda message: None) -> None:
    """Swap the staged files in: the previous bundle's files and manifest go first (the
    log names formats of the previous bundle that this export does not write, and a
    signature that no longer holds)."""
    if (out / MANIFEST).is_file():
        old = read_json(out / MANIFEST, "manifest")
        old_files = old.get("files") if isinstance(old.get("files"), dict) else {}
        new = read_json(stage / MANIFEST, "manifest")
        new_files = new.get("files") or {}
        was = old.get("source_model") if isinstance(old.get("source_model"), dict) else {}
        now = new.get("source_model") or {}
        if was.get("sha256") and was.get("sha256") != now.get("sha256"):
            log(f"note: {out} held a bundle of another model ({_what(old)}); it is replaced "
                f"by this one ({_what(new)})")
        dropped = [fmt for fmt in old_files if fmt not in new_files]
        if dropped:
            log(f"note: replacing the bundle in {out}: its {', '.join(dropped)} "
                f"{'file is' if len(dropped) == 1 else 'files are'} not in this export and "
                "removed (--formats chooses what is written)")
        if (out / SIGNATURE).is_file():
            log(f"note: {out / SIGNATURE} signed the previous manifest and is removed; "
                "sign the new bundle again (edgecnn sign)")
        for entry in old_files.values():
            target = out / str(entry.get("file", "") if isinstance(entry, dict) else "")
            if target.is_file() and target.parent == out:
                target.unlink()
        (out / MANIFEST).unlink()
        (out / SIGNATURE).unlink(missing_ok=True)  # it signed the manifest just replaced
    out.mkdir(parents=True, exist_ok=True)
    for item in stage.iterdir():
        shutil.move(str(item), str(out / item.name))
