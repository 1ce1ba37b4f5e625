"""``edgecnn train | eval | export | parity | recipe``: the commands that make, judge and
package models (registered on the main group by ``edgecnn.cli``)."""

from __future__ import annotations

from pathlib import Path

import click

from edgecnn.cli import (
    _bit_depth_option,
    _given_loader_options,
    _json_apart,
    _loader_options,
    _trust,
    _trust_option,
    _writable,
    _writable_folder,
    _write_json,
    cli,
    examples,
    per_task,
)
from edgecnn.deploy.formats import FORMAT_NAMES
from edgecnn.export.defaults import CALIBRATION_SAMPLES, MAX_DROP_PP, MIN_AGREEMENT, TIE_MARGIN
from edgecnn.schedule import MAX_EPOCH_FACTOR, STEP_BUDGET


@cli.command(help="Train a model on labelled images or recordings and write a model "
                  "directory (model.keras, edgecnn.json, report/).",
             epilog=examples("edgecnn train --task neu --data datasets/neu/train --out runs/neu",
                             "edgecnn train --task cwru --data datasets/cwru --out runs/cwru "
                             "--json runs/cwru-train.json"))
@click.option("--task", required=True,
              help="Data kind: images (neu), mnist, cwru, vibration, lecture-npz.")
@click.option("--data", "data", required=True, type=click.Path(exists=True),
              help="Training data folder or file.")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Model directory to write.")
@click.option("--arch", "architecture", default=None,
              help="Architecture from 'edgecnn models --archs'. " + per_task("architecture"))
@click.option("--epochs", type=int, default=None,
              help=f"Maximum epochs (early stopping may end sooner). Default: the task's "
                   f"epochs, raised for small data to about {STEP_BUDGET} steps (at most "
                   f"{MAX_EPOCH_FACTOR}x; the log says so). " + per_task("epochs"))
@click.option("--batch-size", type=int, default=None,
              help="Samples per training step. " + per_task("batch_size"))
@click.option("--lr", "learning_rate", type=float, default=None,
              help="Initial learning rate (Adam, cosine decay). " + per_task("learning_rate"))
@click.option("--patience", type=int, default=None,
              help="Early-stopping patience: epochs without a better balanced validation "
                   "accuracy; it acts in the second half of the epochs only (early "
                   "validation is noisy). Default: the task's, or a fifth of the epoch "
                   "budget if more. "
                   + per_task("patience"))
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the validation split and the training.")
@click.option("--val-fraction", type=float, default=0.2, show_default=True,
              help="Share of the data held out for validation (per class).")
@click.option("--augment", default=None, metavar="NAMES|none",
              help="Raw-domain augmentation families, comma-separated, or 'none' (images: "
                   "gain, offset, gamma, contrast, noise, defocus, motion, jpeg, rotate, "
                   "zoom, shift, flip, rot90; signals: gain, dc, noise, hum, speed). "
                   + per_task("augment"))
@click.option("--augment-strength", type=float, default=None,
              help="Scale of every augmentation range, 0-2. " + per_task("augment_strength"))
@click.option("--image-size", type=int, default=None,
              help="Images: model input side (pixels). " + per_task("image.width", ("image",)))
@click.option("--color", type=click.Choice(["gray", "bgr", "rgb"]), default=None,
              help="Images: colour the model sees. " + per_task("image.color", ("image",)))
@click.option("--interpolation", type=click.Choice(["area", "linear", "nearest", "cubic"]),
              default=None, help="Images: resize to the input size; a bilinear default "
                                 "becomes area when the images are more than 2x the input. "
                                 + per_task("image.interpolation", ("image",)))
@click.option("--fit", type=click.Choice(["stretch", "letterbox", "crop"]), default=None,
              help="Images of another aspect ratio: stretch, letterbox or crop to the input "
                   "(default: stretch if all are within 10 % of it, else letterbox).")
@_bit_depth_option
@click.option("--window-length", type=int, default=None,
              help="Signals: samples per window. "
                   + per_task("signal.window_length", ("signal",)))
@click.option("--stride", type=int, default=None,
              help="Signals: training window stride. "
                   + per_task("stride", ("signal",), otherwise="window length / 4"))
@click.option("--transform", type=click.Choice(["none", "log", "log1p", "db"]), default=None,
              help="Signals: spectrogram magnitude transform. "
                   + per_task("signal.transform", ("signal",)))
@click.option("--label-smoothing", type=float, default=None,
              help="Loss targets 1 - e + e/k on the true class, e/k on the others (0 turns "
                   "it off; sharper confidences). [default: 0.1 for images trained from "
                   "scratch, else 0]")
@click.option("--balance", type=click.Choice(["sqrt", "full", "none"]), default="sqrt",
              show_default=True,
              help="Class balance of the loss: each class weighted by the square root of "
                   "its inverse frequency (sqrt), by the inverse frequency itself (full: "
                   "every class weighs the same; rare defects found more often, more false "
                   "alarms on the common class), or not at all (none; weights kept by plain "
                   "instead of balanced validation accuracy).")
@click.option("--weights", default=None, metavar="PATH|imagenet",
              help="Backbone architectures (mobilenetv3-small, ...): start from pretrained "
                   "weights, then freeze-then-fine-tune. PATH: a .weights.h5/.h5 file of the "
                   "backbone without top, or an edgecnn model (model.keras or its directory) "
                   "of the same architecture; imagenet: Keras downloads them (needs internet "
                   "or the file in ~/.keras/models). [default: train from scratch]")
@click.option("--frozen-epochs", type=int, default=None,
              help="With --weights: head-only epochs before fine-tuning. "
                   "[default: a fifth of the epochs, 1-10]")
@click.option("--unfreeze", default=None, metavar="all|none|N",
              help="With --weights: what fine-tuning trains: the whole backbone, nothing "
                   "(feature extraction) or its top N layers with weights; BatchNorm "
                   "stays frozen. [default: all]")
@click.option("--fine-tune-lr", type=float, default=None,
              help="With --weights: learning rate once unfrozen. [default: --lr / 10]")
@_loader_options
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              callback=_writable,
              help="Also write the validation results as JSON.")
def train(json_path, augment, **options):
    from edgecnn.training import TrainConfig
    from edgecnn.training import train as run_training

    _json_apart(json_path, reads=[("data", options["data"])],
                writes=[("model directory", options["out"])])
    result = run_training(TrainConfig(augment=True if augment is None else augment, **options))
    click.echo(format_result(result.metrics))
    click.echo(f"model directory: {result.model_dir.path}")
    click.echo(f"report: {Path(result.report['confusion']).parent}")
    _write_json(result.metrics, json_path)


@cli.command("eval", help="Evaluate a model directory or bundle (path or shipped name) on "
                          "labelled data: accuracy, per-class metrics, confusion matrix.",
             epilog=examples("edgecnn eval neu --data calibration_data/neu",
                             "edgecnn eval runs/neu --format keras --data datasets/neu/val "
                             "--report runs/neu-eval"))
@click.argument("model")
@click.option("--data", "data", required=True, type=click.Path(exists=True),
              help="Labelled data in any layout the model's task reads.")
@click.option("--format", "fmt", default=None,
              help=f"Bundle format to run: {', '.join(FORMAT_NAMES)} (default: the "
                   "bundle's default format, the one export chose; unlike 'run' it does "
                   "not follow a host file of 'bench --select'); 'keras' for a model "
                   "directory.")
@click.option("--task", default=None, help="Data kind, if the model does not record it.")
@click.option("--stride", type=int, default=None,
              help="Signals: window stride in samples (default: a quarter window, as "
                   "parity and export's check cut them).")
@click.option("--threads", type=int, default=1, show_default=True,
              help="Intra-op threads for inference.")
@click.option("--report", "report_dir", type=click.Path(file_okay=False), default=None,
              help="Also write confusion.png and metrics.json here (robustness.png with "
                   "--robustness).")
@click.option("--robustness", is_flag=True,
              help="Accuracy under the fixed suite of camera / sensor changes, float and int8 "
                   "side by side, with a heat-map (robustness.png).")
@click.option("--perturbations", default=None, metavar="NAMES",
              help="With --robustness: only these families, comma-separated.")
@_loader_options
@_bit_depth_option
@_trust_option
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              callback=_writable,
              help="Also write the metrics as JSON.")
def eval_command(model, data, fmt, json_path, report_dir, robustness, perturbations,
                 trusted_keys, **options):
    from edgecnn.evaluation import evaluate

    _json_apart(json_path, reads=[("bundle", model), ("data", data)])
    if perturbations:
        from edgecnn.robustness import check_families

        check_families(perturbations)   # a typo fails before the clean evaluation runs
    trust = _trust(trusted_keys)
    metrics = evaluate(model, data, fmt=fmt, trust=trust, **options)
    click.echo(format_result(metrics))
    if report_dir:
        from edgecnn.report import write_report

        write_report(Path(report_dir), metrics, title="Evaluation")
        click.echo(f"report: {report_dir}")
    if robustness or perturbations:   # beside the clean evaluation, not instead of it
        from edgecnn.robustness import evaluate_robustness, format_robustness, plot_robustness

        result = evaluate_robustness(model, data, fmt=fmt, families=perturbations,
                                     trust=trust, **options)
        click.echo(format_robustness(result))
        if report_dir:
            picture = plot_robustness(result, Path(report_dir) / "robustness.png")
            click.echo(f"heat-map: {picture}")
        metrics = {**metrics, **result}
    _write_json(metrics, json_path)


def format_result(metrics: dict) -> str:
    from edgecnn.metrics import format_metrics

    return format_metrics(metrics)



# ----------------------------------------------------------------------------- export
# (export, parity) -- edgecnn.export

@cli.command(help="Export a model directory to a bundle: float32/int8 ONNX and TFLite files, "
                  "each verified against the Keras model, described by edgecnn.json. "
                  f"Formats: {', '.join(FORMAT_NAMES)} (default: all).",
             epilog=examples("edgecnn export runs/cwru --out bundles/cwru",
                             "edgecnn export runs/neu --out bundles/neu --formats "
                             "onnx,onnx-int8,tflite-int8 --float-first 2"))
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False),
              callback=_writable_folder,
              help="Bundle directory to write (new, empty, or an earlier bundle).")
@click.option("--formats", default=None, help="Comma-separated formats (default: all).")
@click.option("--calib", type=click.Path(exists=True), default=None,
              help="Calibration data like the training data (default: the class-balanced "
                   "training sample kept in the model directory, else the matching set in "
                   "calibration_data/).")
@click.option("--calib-method", default=None,
              help="int8 calibration: auto (default: minmax; for hard-swish / squeeze-excite "
                   "graphs minmax-mean and a float stem), minmax, minmax-mean, entropy or "
                   "percentile (onnx-int8).")
@click.option("--activations", default=None,
              help="onnx-int8 activation type: uint8 (default) or int8.")
@click.option("--per-channel/--per-tensor", default=None,
              help="onnx-int8 weight scales per output channel (default) or per tensor.")
@click.option("--float-first", type=int, default=None,
              help="onnx-int8: keep the first N convolutions in float (faster on one-channel "
                   "full-resolution input). Default 0; the shipped NEU bundle uses 2.")
@click.option("--reduce-range/--full-range", default=None,
              help="onnx-int8 weights: full 8-bit (default; exact on CPUs with VNNI and on "
                   "ARM) or 7-bit (--reduce-range: exact on AVX2 CPUs without VNNI too, "
                   "where ONNX Runtime's int8 kernels saturate 8-bit weights).")
@click.option("--auto-fallback/--no-auto-fallback", default=None,
              help="int8 layers that break parity on the validation split stay float: by "
                   "default at most 15 % of the compute layers, rounded up, at least 2 "
                   "(beyond that the bundle "
                   "defaults to float); --auto-fallback: as many as it takes; "
                   "--no-auto-fallback: none.")
@click.option("--max-drop", type=float, default=MAX_DROP_PP, show_default=True,
              help="Parity: largest accepted accuracy drop (percentage points).")
@click.option("--min-agreement", type=float, default=MIN_AGREEMENT, show_default=True,
              help="Parity: smallest accepted top-1 agreement with float (0-1).")
@click.option("--tie-margin", type=float, default=TIE_MARGIN, show_default=True,
              help="Parity: a flip where float's top two probabilities lie within this "
                   "margin is counted and shown, but judged as a coin flip of the float "
                   "model; 0 judges every flip against int8.")
@click.option("--max-calib-samples", type=int, default=CALIBRATION_SAMPLES,
              show_default=True,
              help="Calibration samples to use at most (balanced across classes).")
@_loader_options
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              callback=_writable,
              help="Also write the manifest summary as JSON.")
def export(model_dir, out, formats, calib, calib_method, activations, per_channel,
           float_first, reduce_range, auto_fallback, max_drop, min_agreement, tie_margin,
           max_calib_samples, json_path, **loader_options):
    from edgecnn.export import export_model

    _json_apart(json_path, reads=[("model directory", model_dir), ("calibration data", calib)],
                writes=[("bundle", out)])
    result = export_model(model_dir, out, formats=formats, calib=calib,
                          calib_method=calib_method, auto_fallback=auto_fallback,
                          per_channel=per_channel, activations=activations,
                          reduce_range=reduce_range, float_first=float_first,
                          max_drop=max_drop, min_agreement=min_agreement,
                          tie_margin=tie_margin, max_calibration_samples=max_calib_samples,
                          calib_options=_given_loader_options(loader_options))
    click.echo(result.format())
    _write_json(result.summary(), json_path)
    failed = result.unverified()
    if failed:
        from edgecnn.deploy.errors import CheckFailed

        raise CheckFailed(failed)


@cli.command(help="Evaluate the float32 reference and every other format of a bundle on "
                  "the same labelled data; exit 1 if a format breaks a threshold, and show "
                  "which layers are to blame. Formats whose runtime is not installed "
                  "are skipped and named.",
             epilog=examples("edgecnn parity neu --data calibration_data/neu",
                             "edgecnn parity bundles/cwru --data datasets/cwru --max-drop 1 "
                             "--json parity.json"))
@click.argument("bundle")
@click.option("--data", "data", required=True, type=click.Path(exists=True),
              help="Labelled data in any layout the bundle's task reads.")
@click.option("--max-drop", type=float, default=MAX_DROP_PP, show_default=True,
              help="Largest accepted accuracy drop vs float (percentage points).")
@click.option("--min-agreement", type=float, default=MIN_AGREEMENT, show_default=True,
              help="Smallest accepted top-1 agreement with float (0-1).")
@click.option("--tie-margin", type=float, default=TIE_MARGIN, show_default=True,
              help="A flip where float's top two probabilities lie within this "
                   "margin is counted and shown, but judged as a coin flip of the float "
                   "model; 0 judges every flip against int8.")
@click.option("--formats", default=None, help="Comma-separated formats (default: all).")
@click.option("--task", default=None, help="Data kind, if the bundle does not record it.")
@_loader_options
@_bit_depth_option
@_trust_option
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              callback=_writable,
              help="Also write the per-format metrics and parity fields as JSON.")
def parity(bundle, data, max_drop, min_agreement, tie_margin, formats, task, json_path,
           trusted_keys, **loader_options):
    from edgecnn.deploy.errors import CheckFailed
    from edgecnn.export import run_parity

    _json_apart(json_path, reads=[("bundle", bundle), ("data", data)])
    result = run_parity(bundle, data, max_drop=max_drop, min_agreement=min_agreement,
                        tie_margin=tie_margin, task=task, formats=formats,
                        trust=_trust(trusted_keys), **_given_loader_options(loader_options))
    click.echo(result.format())
    _write_json(result.to_dict(), json_path)
    if not result.passed:
        raise CheckFailed(f"parity failed for {', '.join(result.failed)}")


@cli.command("recipe", help="Show how a shipped bundle (neu, cwru, mnist) is made: its data "
                            "folder and the train and export options of the task table. "
                            "--step prints one step's options as shell words (the "
                            "Makefile's bundle targets use them).",
             epilog=examples("edgecnn recipe neu",
                             "edgecnn recipe neu --step export"))
@click.argument("bundle")
@click.option("--step", type=click.Choice(["data", "train", "export"]), default=None,
              help="Print only this step: the data folder inside a datasets root, or the "
                   "options of edgecnn train / edgecnn export.")
def recipe_command(bundle, step):
    from edgecnn.tasks import describe_recipe, recipe_arguments

    click.echo(recipe_arguments(bundle, step) if step else describe_recipe(bundle))
