"""Reproduce the README results table: per task, train our edge model and the lecture's
``seed-*`` model on the same split, export both to every format, bench everything side by
side in one run, and write ``results.json`` + ``RESULTS.md``.

    python benchmarks/run_all.py --datasets ../shared/datasets --out benchmarks/results
    python benchmarks/run_all.py --smoke            # calibration_data, 1 epoch: checks the
                                                    # pipeline in a few minutes, not results

Training and export come first for every task; all benchmarks run afterwards, one bundle
after the other, so that every latency in the tables is measured under the same conditions.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from edgecnn.deploy.bundle import MANIFEST, read_json  # noqa: E402
from edgecnn.deploy.errors import DataError, EdgecnnError  # noqa: E402
from results_tables import results_markdown, task_ratios  # noqa: E402
from training_recipes import Recipe, parse_tasks, recipes, task_data  # noqa: E402

REPO = HERE.parent


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", type=Path, default=None,
                        help="Datasets root (neu/[train/], cwru/, mnist/); default "
                             "../shared/datasets, or calibration_data/ with --smoke.")
    parser.add_argument("--out", type=Path, default=None,
                        help="Results folder (default benchmarks/results; a temporary "
                             "folder with --smoke).")
    parser.add_argument("--tasks", default="neu,cwru,mnist",
                        help="Comma-separated tasks (default: neu,cwru,mnist).")
    parser.add_argument("--epochs-scale", type=float, default=1.0,
                        help="Multiply every recipe's epochs by this (at least 1 epoch).")
    parser.add_argument("--formats", default=None,
                        help="Export formats (default: all of them).")
    parser.add_argument("--threads", type=int, default=1, help="Engine threads (default 1).")
    parser.add_argument("--batch", type=int, default=32, help="Throughput batch (default 32).")
    parser.add_argument("--iterations", type=int, default=200,
                        help="Timed batch-1 calls per row (default 200).")
    parser.add_argument("--max-seconds", type=float, default=5.0,
                        help="Time budget per batch-1 timing (default 5).")
    parser.add_argument("--seed", type=int, default=0, help="Split and training seed.")
    parser.add_argument("--reuse", action="store_true",
                        help="Keep model directories and bundles already in --out (resume "
                             "an interrupted run; benchmarks are always re-run).")
    parser.add_argument("--smoke", action="store_true",
                        help="calibration_data, 1 epoch, short timings: a pipeline check.")
    args = parser.parse_args(argv)
    if args.smoke:
        args.datasets = args.datasets or REPO / "calibration_data"
        args.out = args.out or Path(tempfile.mkdtemp(prefix="edgecnn-bench-smoke-"))
        args.epochs_scale = 0.0
        args.iterations = min(args.iterations, 20)
        args.max_seconds = min(args.max_seconds, 0.5)
    args.datasets = args.datasets or (REPO.parent / "shared" / "datasets")
    args.out = args.out or HERE / "results"
    if args.epochs_scale < 0:
        parser.error("--epochs-scale must be >= 0")
    return args


# ----------------------------------------------------------------------------- phase 1

def _model_record(recipe: Recipe, model_dir: Path, bundle: Path) -> dict:
    from edgecnn.modeldir import ModelDir

    source = ModelDir.open(model_dir)
    training = source.manifest.get("training") or {}
    validation = (source.manifest.get("metrics") or {}).get("validation") or {}
    return {"recipe": asdict(recipe), "model_dir": str(model_dir), "bundle": str(bundle),
            "architecture": source.architecture,
            "input_shape": list(source.spec.input_shape),
            "epochs": training.get("epochs"), "epochs_run": training.get("epochs_run"),
            "train_seconds": training.get("train_seconds"),
            "val_accuracy": validation.get("accuracy"), "val_n": validation.get("n")}


def _bundle_matches(bundle: Path, model_dir: Path, recipe: Recipe) -> bool:
    """The bundle was exported from this model, with the recipe's float-first setting."""
    from edgecnn.modeldir import ModelDir

    if not (bundle / MANIFEST).is_file():
        return False
    manifest = read_json(bundle / MANIFEST, "bundle manifest")
    recorded = (manifest.get("source_model") or {}).get("sha256")
    if recorded != ModelDir.open(model_dir).model_sha256():
        return False
    int8 = (manifest.get("files") or {}).get("onnx-int8")
    float_first = dict(recipe.export).get("float_first", 0)
    return int8 is None or len(int8.get("float_nodes") or []) == float_first


def prepare_model(recipe: Recipe, data: Path, base: Path, args) -> dict:
    """Train (or reuse) the model of ``recipe`` and export (or reuse) its bundle."""
    from edgecnn.export import export_model
    from edgecnn.modeldir import is_model_dir
    from edgecnn.training import TrainConfig, train

    model_dir, bundle = base / "model", base / "bundle"
    if args.reuse and is_model_dir(model_dir):
        log(f"[{recipe.task} {recipe.role}] reusing {model_dir}")
    else:
        if model_dir.exists():
            shutil.rmtree(model_dir)
        log(f"[{recipe.task} {recipe.role}] training {recipe.architecture} "
            f"({recipe.epochs} epochs) on {data}")
        train(TrainConfig(task=recipe.task, data=str(data), out=str(model_dir), seed=args.seed,
                          **recipe.train_options()), log=log)
    if args.reuse and _bundle_matches(bundle, model_dir, recipe):
        log(f"[{recipe.task} {recipe.role}] reusing {bundle}")
    else:
        log(f"[{recipe.task} {recipe.role}] exporting to {bundle}")
        export_model(model_dir, bundle, formats=args.formats, log=log,
                     **dict(recipe.export))
    return _model_record(recipe, model_dir, bundle)


# ----------------------------------------------------------------------------- phase 2

def validation_data(model_dir: Path, data: Path):
    """The validation split ``edgecnn train`` held out for this model, as tensors through
    the model's own InputSpec (same loader options, seed, fraction and window stride)."""
    from edgecnn.bench import EvalData
    from edgecnn.data import load_dataset
    from edgecnn.modeldir import ModelDir
    from edgecnn.splits import validation_split
    from edgecnn.tensors import to_tensors

    source = ModelDir.open(model_dir)
    spec, training = source.spec, source.manifest.get("training") or {}
    options = {}
    window = None
    if spec.kind == "signal":
        window = spec.signal.window_length
        options = {"stride": training.get("stride"), "channel": training.get("channel", "DE"),
                   "sample_rate": training.get("sample_rate")}
    samples = load_dataset(training["task"], data, spec, labels=spec.labels, **options)
    _, val = validation_split(samples, training.get("val_fraction", 0.2),
                              training.get("seed", 0), window)
    expected = training.get("val_samples")
    if expected is not None and len(val) != expected:
        raise DataError(f"{data} gives {len(val)} validation samples for {model_dir}, but "
                        f"training held out {expected}: not the data it was trained on")
    subset = samples.subset(val)
    return EvalData(to_tensors(subset, spec), subset.labels,
                    f"{data} (validation split, seed {training.get('seed', 0)})")


def bench_model(model: dict, data: Path, args) -> dict:
    from edgecnn.bench import bench
    from edgecnn.report import write_json

    eval_data = validation_data(Path(model["model_dir"]), data)
    result = bench(model["bundle"], eval_data, threads=args.threads, batch=args.batch,
                   iterations=args.iterations, max_seconds=args.max_seconds,
                   keras_model_dir=model["model_dir"], log=log).to_dict()
    write_json(result, Path(model["bundle"]).parent / "bench.json")
    return result


# ----------------------------------------------------------------------------- main

def run(args) -> dict:
    from edgecnn.machine import machine_info
    from edgecnn.report import write_json
    from edgecnn.tfquiet import import_tensorflow

    import_tensorflow("run_all.py")
    tasks = parse_tasks(args.tasks)
    started = time.perf_counter()
    results = {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "datasets": str(args.datasets), "smoke": bool(args.smoke),
               "settings": {"threads": args.threads, "batch": args.batch,
                            "iterations": args.iterations, "max_seconds": args.max_seconds,
                            "epochs_scale": args.epochs_scale, "seed": args.seed,
                            "formats": args.formats},
               "tasks": {}}
    for task in tasks:
        entry = results["tasks"][task] = {"models": {}}
        try:
            data = task_data(args.datasets, task)
        except EdgecnnError as exc:
            entry["error"] = str(exc)
            log(f"[{task}] skipped: {exc}")
            continue
        entry["data"] = str(data)
        for recipe in recipes(task):
            recipe = recipe.scaled(args.epochs_scale)
            try:
                entry["models"][recipe.role] = prepare_model(recipe, data,
                                                             args.out / task / recipe.role,
                                                             args)
            except EdgecnnError as exc:
                entry["models"][recipe.role] = {"recipe": asdict(recipe), "error": str(exc)}
                log(f"[{task} {recipe.role}] failed: {exc}")

    for task, entry in results["tasks"].items():
        for role, model in entry["models"].items():
            if "error" in model:
                continue
            log(f"[{task} {role}] benchmarking {model['bundle']}")
            try:
                model["bench"] = bench_model(model, Path(entry["data"]), args)
            except EdgecnnError as exc:
                model["error"] = f"bench failed: {exc}"
                log(f"[{task} {role}] bench failed: {exc}")
                continue
            entry["val_samples"] = model["bench"]["data"]["n"]
        if "edge" in entry["models"] and "seed" in entry["models"]:
            entry["ratios"] = task_ratios(entry["models"]["edge"], entry["models"]["seed"])

    results["machine"] = machine_info()
    results["seconds"] = round(time.perf_counter() - started, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(results, args.out / "results.json")
    (args.out / "RESULTS.md").write_text(results_markdown(results) + "\n", encoding="utf-8")
    return results


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        results = run(args)
    except EdgecnnError as exc:
        log(f"error: {exc}")
        return exc.exit_code
    failed = [f"{task} {role}" for task, entry in results["tasks"].items()
              for role, model in entry["models"].items() if "error" in model]
    failed += [task for task, entry in results["tasks"].items() if "error" in entry]
    print((args.out / "RESULTS.md").read_text(encoding="utf-8"))
    log(f"results: {args.out / 'results.json'}, {args.out / 'RESULTS.md'} "
        f"({results['seconds']:.0f} s)")
    if failed:
        log(f"failed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
