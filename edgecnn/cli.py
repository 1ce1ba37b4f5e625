"""The ``edgecnn`` command: a thin click layer over library functions.

Each command parses options, calls one library function and prints its result. Heavy
imports (TensorFlow, tf2onnx) happen inside the commands, so ``edgecnn --help`` and the
runtime start fast. EdgecnnError subclasses become one clean line on stderr and the
documented exit code: 0 ok, 1 check failed, 2 usage or input error.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from edgecnn import __version__
from edgecnn.deploy.errors import EdgecnnError

EXIT_CODES_HELP = "Exit codes: 0 ok, 1 check failed, 2 usage or input error."


def examples(*lines: str) -> str:
    """A command's epilog: its example lines, kept as written (click's \\b)."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


def per_task(field: str, kinds=("image", "signal"), otherwise: str | None = None) -> str:
    """``[default: per task: images/neu 60, mnist 15, ...]`` for a training option, from the
    task table (edgecnn.tasks), so the help never disagrees with what training does.
    ``field`` is a TaskDefaults attribute or ``image.x`` / ``signal.x``; tasks without a
    value are "others" (``otherwise``)."""
    from edgecnn.tasks import TASK_DEFAULTS

    names: dict[tuple, list[str]] = {}  # an alias (neu = images) shares its entry
    for name, task in TASK_DEFAULTS.items():
        if task.kind in kinds:
            names.setdefault(tuple(sorted((k, repr(v)) for k, v in task.__dict__.items()
                                          if k != "name")), []).append(name)
    values = []
    for group in names.values():
        section, _, attribute = field.rpartition(".")
        task = TASK_DEFAULTS[group[0]]
        source = getattr(task, section) if section else task
        value = getattr(source, attribute, None) if source is not None else None
        if value is not None:
            values.append(("/".join(group), f"{value:g}" if isinstance(value, float) else value))
    tail = f", others {otherwise}" if otherwise else ""
    if len({value for _, value in values}) == 1 and not otherwise:
        return f"[default: {values[0][1]} for every task]"
    return "[default: per task: " + ", ".join(f"{n} {v}" for n, v in values) + tail + "]"


@click.group(help=f"Edge CNNs for industrial inspection. {EXIT_CODES_HELP}",
             epilog=examples("edgecnn models",
                             "edgecnn demo --out demo-output"))
@click.version_option(__version__, prog_name="edgecnn")
def cli() -> None:
    pass


# ----------------------------------------------------------------------------- training
# (train, eval) -- edgecnn.training / edgecnn.evaluation

def _loader_options(f):
    """Options shared by every command that reads recordings or pickles."""
    f = click.option("--channel", default="DE", show_default=True,
                     help="Recording channel (CWRU key suffix, CSV column or array index).")(f)
    f = click.option("--sample-rate", type=float, default=None,
                     help="Sample rate of recordings that do not state their own.")(f)
    f = click.option("--label-pattern", default=None,
                     help="Regex with a (?P<label>...) group, matched on file names.")(f)
    f = click.option("--manifest", type=click.Path(dir_okay=False), default=None,
                     help="CSV of file,label[,sample_rate] for recordings.")(f)
    f = click.option("--allow-pickle", is_flag=True,
                     help="Allow .pkl datasets (pickles can run code: only your own files).")(f)
    return f


def _given_loader_options(options: dict) -> dict:
    """The loader options the user actually set (defaults dropped)."""
    return {name: value for name, value in options.items()
            if value not in (None, False) and not (name == "channel" and value == "DE")}


def _write_json(data: dict, path) -> None:
    if path:
        from edgecnn.report import write_json

        write_json(data, path)
        click.echo(f"results written to {path}")


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
              help="Maximum epochs (early stopping may end sooner). " + per_task("epochs"))
@click.option("--batch-size", type=int, default=None,
              help="Samples per training step. " + per_task("batch_size"))
@click.option("--lr", "learning_rate", type=float, default=None,
              help="Initial learning rate (Adam, cosine decay). " + per_task("learning_rate"))
@click.option("--patience", type=int, default=None,
              help="Early-stopping patience (epochs without a better validation loss). "
                   + per_task("patience"))
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the validation split and the training.")
@click.option("--val-fraction", type=float, default=0.2, show_default=True,
              help="Share of the data held out for validation (per class).")
@click.option("--no-augment", is_flag=True, help="Switch off the task's augmentation.")
@click.option("--image-size", type=int, default=None,
              help="Images: model input side (pixels). " + per_task("image.width", ("image",)))
@click.option("--color", type=click.Choice(["gray", "bgr", "rgb"]), default=None,
              help="Images: colour the model sees. " + per_task("image.color", ("image",)))
@click.option("--interpolation", type=click.Choice(["area", "linear", "nearest", "cubic"]),
              default=None, help="Images: resize to the input size. "
                                 + per_task("image.interpolation", ("image",)))
@click.option("--window-length", type=int, default=None,
              help="Signals: samples per window. "
                   + per_task("signal.window_length", ("signal",)))
@click.option("--stride", type=int, default=None,
              help="Signals: training window stride. "
                   + per_task("stride", ("signal",), otherwise="window length / 4"))
@click.option("--transform", type=click.Choice(["none", "log", "log1p", "db"]), default=None,
              help="Signals: spectrogram magnitude transform. "
                   + per_task("signal.transform", ("signal",)))
@_loader_options
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="Also write the validation results as JSON.")
def train(json_path, no_augment, **options):
    from edgecnn.training import TrainConfig, train as run_training

    result = run_training(TrainConfig(augment=not no_augment, **options))
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
              help="Bundle format to run (default: the int8 ONNX model); 'keras' for a "
                   "model directory.")
@click.option("--task", default=None, help="Data kind, if the model does not record it.")
@click.option("--stride", type=int, default=None,
              help="Signals: window stride (default: non-overlapping windows).")
@click.option("--threads", type=int, default=1, show_default=True,
              help="Intra-op threads for inference.")
@click.option("--report", "report_dir", type=click.Path(file_okay=False), default=None,
              help="Also write confusion.png and metrics.json here.")
@_loader_options
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="Also write the metrics as JSON.")
def eval_command(model, data, fmt, json_path, report_dir, **options):
    from edgecnn.evaluation import evaluate

    metrics = evaluate(model, data, fmt=fmt, **options)
    click.echo(format_result(metrics))
    if report_dir:
        from edgecnn.report import write_report

        write_report(Path(report_dir), metrics, title="Evaluation")
        click.echo(f"report: {report_dir}")
    _write_json(metrics, json_path)


def format_result(metrics: dict) -> str:
    from edgecnn.metrics import format_metrics

    return format_metrics(metrics)



# ----------------------------------------------------------------------------- export
# (export, parity) -- edgecnn.export

@cli.command(help="Export a model directory to a bundle: float32/int8 ONNX and TFLite files, "
                  "each verified against the Keras model, described by edgecnn.json. "
                  "Formats: onnx, onnx-int8, tflite, tflite-fp16, tflite-int8 (default: all).",
             epilog=examples("edgecnn export runs/cwru --out bundles/cwru",
                             "edgecnn export runs/neu --out bundles/neu --formats "
                             "onnx,onnx-int8,tflite-int8 --float-first 2"))
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Bundle directory to write (new, empty, or an earlier bundle).")
@click.option("--formats", default=None, help="Comma-separated formats (default: all).")
@click.option("--calib", type=click.Path(exists=True), default=None,
              help="Calibration data like the training data (default: the matching set "
                   "in calibration_data/).")
@click.option("--calib-method", default=None,
              help="int8 calibration: minmax (default), entropy or percentile (onnx-int8).")
@click.option("--activations", default=None,
              help="onnx-int8 activation type: uint8 (default) or int8.")
@click.option("--per-channel/--per-tensor", default=None,
              help="onnx-int8 weight scales per output channel (default) or per tensor.")
@click.option("--float-first", type=int, default=None,
              help="onnx-int8: keep the first N convolutions in float (faster on one-channel "
                   "full-resolution input). Default 0; the shipped NEU bundle uses 2.")
@click.option("--reduce-range/--full-range", default=None,
              help="onnx-int8 7-bit weights (default; no AVX2 saturation) or full 8-bit.")
@click.option("--auto-fallback", is_flag=True,
              help="Keep the worst int8 layers in float until parity holds on the "
                   "calibration data.")
@click.option("--max-drop", type=float, default=0.5, show_default=True,
              help="Parity: largest accepted accuracy drop (percentage points).")
@click.option("--min-agreement", type=float, default=0.99, show_default=True,
              help="Parity: smallest accepted top-1 agreement with float (0-1).")
@click.option("--max-calib-samples", type=int, default=300, show_default=True,
              help="Calibration samples to use at most (balanced across classes).")
@_loader_options
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="Also write the manifest summary as JSON.")
def export(model_dir, out, formats, calib, calib_method, activations, per_channel,
           float_first, reduce_range, auto_fallback, max_drop, min_agreement,
           max_calib_samples, json_path, **loader_options):
    from edgecnn.export import export_model

    result = export_model(model_dir, out, formats=formats, calib=calib,
                          calib_method=calib_method, auto_fallback=auto_fallback,
                          per_channel=per_channel, activations=activations,
                          reduce_range=reduce_range, float_first=float_first,
                          max_drop=max_drop, min_agreement=min_agreement,
                          max_calibration_samples=max_calib_samples,
                          calib_options=_given_loader_options(loader_options))
    click.echo(result.format())
    _write_json(result.summary(), json_path)


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
@click.option("--max-drop", type=float, default=0.5, show_default=True,
              help="Largest accepted accuracy drop vs float (percentage points).")
@click.option("--min-agreement", type=float, default=0.99, show_default=True,
              help="Smallest accepted top-1 agreement with float (0-1).")
@click.option("--formats", default=None, help="Comma-separated formats (default: all).")
@click.option("--task", default=None, help="Data kind, if the bundle does not record it.")
@_loader_options
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="Also write the per-format metrics and parity fields as JSON.")
def parity(bundle, data, max_drop, min_agreement, formats, task, json_path, **loader_options):
    from edgecnn.deploy.errors import CheckFailed
    from edgecnn.export import run_parity

    result = run_parity(bundle, data, max_drop=max_drop, min_agreement=min_agreement,
                        task=task, formats=formats, **_given_loader_options(loader_options))
    click.echo(result.format())
    _write_json(result.to_dict(), json_path)
    if not result.passed:
        raise CheckFailed(f"parity failed for {', '.join(result.failed)}")


# ----------------------------------------------------------------------------- runtime
# (run camera, run vibration, events summary) -- edgecnn.deploy

@cli.group(help="Run a bundle line-side on a camera or vibration stream, logging events. "
                "Ctrl-C / SIGTERM stop cleanly and print the summary.",
           epilog=examples("edgecnn run camera neu --source line.mp4 --log events.jsonl",
                           "edgecnn run vibration cwru --source recording.mat"))
def run() -> None:
    pass


def _runtime_options(f):
    """Options shared by `run camera` and `run vibration`."""
    options = [
        click.option("--format", "fmt", default=None,
                     help="Model file of the bundle to run (default: onnx-int8 if present)."),
        click.option("--threads", type=int, default=1, show_default=True,
                     help="Intra-op threads for inference."),
        click.option("--spinning/--no-spinning", default=False, show_default=True,
                     help="Let idle ONNX Runtime threads spin (burns CPU between frames)."),
        click.option("--threshold", type=float, default=0.6, show_default=True,
                     help="Minimum confidence for a class to count."),
        click.option("--class-threshold", "class_threshold", multiple=True,
                     metavar="CLASS=P", help="Per-class confidence threshold (repeatable)."),
        click.option("--ignore-class", "ignore_class", multiple=True, metavar="NAME",
                     help="A class that is not a defect: never an event (repeatable)."),
        click.option("--realtime", is_flag=True,
                     help="Play a file at its own rate, like a live source."),
        click.option("--duration", type=float, default=None, help="Stop after S seconds."),
        click.option("--log", "log", type=click.Path(dir_okay=False), default=None,
                     help="JSON Lines event log (appended)."),
        click.option("--sqlite", type=click.Path(dir_okay=False), default=None,
                     help="Also store events in this SQLite database (WAL)."),
        click.option("--fsync", type=click.Choice(["every", "interval", "never"]),
                     default="interval", show_default=True,
                     help="When log lines are forced to disk (interval: at most 1/s)."),
        click.option("--rotate-mb", type=float, default=None,
                     help="Rotate the log when it would pass this size (MB)."),
        click.option("--probabilities", is_flag=True,
                     help="Store all class probabilities in each event."),
        click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
                     help="Write the run summary as JSON here."),
        click.option("--quiet", is_flag=True, help="Do not print events as they happen."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _run_common(kind, bundle, source, fmt, threads, spinning, class_threshold, quiet,
                **options):
    from edgecnn.deploy.decisions import parse_class_threshold
    from edgecnn.deploy.engine import EngineOptions
    from edgecnn.deploy.run import run_logged

    thresholds = dict(parse_class_threshold(t) for t in class_threshold)
    summary = run_logged(kind, bundle, source, fmt=fmt,
                         options=EngineOptions(threads=threads, spinning=spinning),
                         class_thresholds=thresholds,
                         echo=None if quiet else click.echo, **options)
    click.echo(summary.format())


@run.command("camera", help="Classify frames from a camera index, video file, RTSP/HTTP URL "
                            "or GStreamer pipeline.",
             epilog=examples("edgecnn run camera neu --source 0 --log events.jsonl",
                             "edgecnn run camera neu --source line.mp4 --tiles 2x2 "
                             "--snapshots snaps --json run.json"))
@click.argument("bundle")
@click.option("--source", required=True, help="0 | video.mp4 | rtsp://... | 'pipeline ! appsink'")
@click.option("--roi", default=None, metavar="x,y,w,h", help="Only look at this region.")
@click.option("--tiles", default=None, metavar="RxC", help="Classify R x C fixed tiles.")
@click.option("--grid", default=None, metavar="WxH:STRIDE",
              help="Classify a sliding grid of WxH windows.")
@click.option("--min-frames", type=int, default=3, show_default=True,
              help="Frames a class must persist before it is an event.")
@click.option("--snapshots", type=click.Path(file_okay=False), default=None,
              help="Save a JPEG of each event frame here.")
@click.option("--show", is_flag=True, help="Preview window with overlay (q/Esc stops).")
@click.option("--max-frames", type=int, default=None, help="Stop after N frames.")
@click.option("--frozen-frames", type=int, default=30, show_default=True,
              help="Identical frames in a row that mean a frozen source (0: off).")
@_runtime_options
def run_camera_command(bundle, source, roi, tiles, grid, min_frames, frozen_frames,
                       ignore_class, **options):
    from edgecnn.deploy.faults import FaultConfig
    from edgecnn.deploy.tiles import parse_grid, parse_roi, parse_tiles

    _run_common("camera", bundle, source, roi=parse_roi(roi) if roi else None,
                tiles=parse_tiles(tiles) if tiles else None,
                grid=parse_grid(grid) if grid else None, min_frames=min_frames,
                faults=FaultConfig(frozen_frames=frozen_frames),
                ignore_classes=ignore_class, **options)


@run.command("vibration", help="Classify windows of a recording (.mat/.wav/.csv/.npy/.npz), "
                               "raw float32 samples on stdin (-) or a tcp://host:port stream.",
             epilog=examples("edgecnn run vibration cwru --source recording.mat "
                             "--log events.jsonl",
                             "edgecnn run vibration cwru --source tcp://127.0.0.1:9000 "
                             "--sample-rate 12000"))
@click.argument("bundle")
@click.option("--source", required=True, help="recording | - | tcp://host:port")
@click.option("--hop", type=int, default=None,
              help="Samples between windows (default: about half a window).")
@click.option("--sample-rate", type=float, default=None,
              help="Rate of a stdin/TCP stream, or of a file that does not state it.")
@click.option("--channel", default=None, help="Recording channel (default: the model's).")
@click.option("--min-windows", type=int, default=1, show_default=True,
              help="Windows a class must persist before it is an event.")
@click.option("--max-windows", type=int, default=None, help="Stop after N windows.")
@click.option("--clip-level", type=float, default=None,
              help="|sample| at which the sensor clips (default: detect flat peaks).")
@_runtime_options
def run_vibration_command(bundle, source, hop, sample_rate, channel, min_windows,
                          max_windows, clip_level, ignore_class, **options):
    from edgecnn.deploy.vibration import SignalChecks

    _run_common("vibration", bundle, source, hop=hop, sample_rate=sample_rate,
                channel=channel, min_windows=min_windows, max_windows=max_windows,
                checks=SignalChecks(clip_level=clip_level), ignore_classes=ignore_class,
                **options)


@cli.group(help="Read event logs written by `edgecnn run`.",
           epilog=examples("edgecnn events summary events.jsonl"))
def events() -> None:
    pass


@events.command("summary", help="Counts per class and per hour of a JSONL log (with its "
                                "rotated files) or an SQLite event database.",
                epilog=examples("edgecnn events summary events.jsonl",
                                "edgecnn events summary events.sqlite --json"))
@click.argument("log", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def events_summary(log, as_json):
    from edgecnn.deploy.events import format_event_summary, summarize_events
    from edgecnn.deploy.run import summary_json

    summary = summarize_events(log)
    click.echo(summary_json(summary) if as_json else format_event_summary(summary))



# ----------------------------------------------------------------------------- tools
# (bench, models, demo)

@cli.command("bench", help="Benchmark every format of a bundle (path or shipped name) and "
                           "its Keras source model: size, accuracy (--data), batch-1 latency "
                           "mean/p50/p99, throughput, MACs and GMAC/s against a GEMM "
                           "ceiling measured in the same run. Formats whose runtime is not "
                           "installed are skipped and named.",
             epilog=examples("edgecnn bench cwru --data calibration_data/cwru",
                             "edgecnn bench bundles/neu --data datasets/neu/val --keras runs/neu "
                             "--json bench.json"))
@click.argument("bundle")
@click.option("--data", "data", type=click.Path(exists=True), default=None,
              help="Labelled data for accuracy (any layout the bundle's task reads).")
@click.option("--task", default=None, help="Data kind, if the bundle does not record it.")
@click.option("--threads", type=int, default=1, show_default=True,
              help="Intra-op threads of every engine and of the ceiling GEMMs.")
@click.option("--batch", type=int, default=32, show_default=True,
              help="Batch size of the throughput measurement.")
@click.option("--warmup", type=int, default=10, show_default=True,
              help="Untimed batch-1 calls before timing.")
@click.option("--iterations", type=int, default=200, show_default=True,
              help="Timed batch-1 calls (fewer if --max-seconds runs out first).")
@click.option("--max-seconds", type=float, default=5.0, show_default=True,
              help="Time budget of each batch-1 timing.")
@click.option("--formats", default=None, help="Comma-separated formats (default: all).")
@click.option("--keras", "keras_model_dir", type=click.Path(exists=True, file_okay=False),
              default=None, help="Keras model directory to bench too (default: the "
                                 "bundle's source model, if it is still there).")
@click.option("--no-keras", is_flag=True, help="Leave the Keras rows out (no TensorFlow).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="Also write all numbers, ceilings and machine info as JSON.")
def bench_command(bundle, json_path, no_keras, **options):
    from edgecnn.bench import bench, format_bench

    result = bench(bundle, keras=not no_keras, **options)
    click.echo(format_bench(result))
    _write_json(result, json_path)


@cli.command("models", help="List the shipped bundles (name, path, task, formats, "
                            "validation accuracy) and, with --archs, the architectures.",
             epilog=examples("edgecnn models", "edgecnn models --archs"))
@click.option("--archs", is_flag=True, help="List the model architectures of the registry.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="Also write the list of shipped bundles as JSON.")
def models_command(archs, json_path):
    from edgecnn.catalog import describe_shipped, format_architectures, format_shipped

    if archs:
        click.echo(format_architectures())
        return
    shipped = describe_shipped()
    click.echo(format_shipped(shipped))
    _write_json({"bundles": shipped}, json_path)


@cli.command("demo", help="Run the main job on embedded defaults: train and export a quick "
                          "model, parity of the shipped NEU bundle, the camera runtime on a "
                          "sample video and the vibration runtime on a recording.",
             epilog=examples("edgecnn demo", "edgecnn demo --out /tmp/edgecnn-demo"))
@click.option("--out", default="demo-output", show_default=True,
              type=click.Path(file_okay=False), help="Folder for everything the demo writes.")
def demo_command(out):
    from edgecnn.demo import run_demo

    run_demo(out, echo=click.echo)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the group, turning our errors into clean exits."""
    import logging

    from edgecnn.tfquiet import quiet_tensorflow

    quiet_tensorflow()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s",
                        stream=sys.stderr)
    try:
        cli.main(args=argv, prog_name="edgecnn", standalone_mode=False)
    except EdgecnnError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    sys.exit(0)
