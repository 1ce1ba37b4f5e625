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


@click.group(help=f"Edge CNNs for industrial inspection. {EXIT_CODES_HELP}")
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
                  "directory (model.keras, edgecnn.json, report/).")
@click.option("--task", required=True,
              help="Data kind: images (neu), mnist, cwru, vibration, lecture-npz.")
@click.option("--data", "data", required=True, type=click.Path(exists=True),
              help="Training data folder or file.")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Model directory to write.")
@click.option("--arch", "architecture", default=None,
              help="Architecture from 'edgecnn models --archs' (default: the task's).")
@click.option("--epochs", type=int, default=None, help="Maximum epochs (early stopping).")
@click.option("--batch-size", type=int, default=None)
@click.option("--lr", "learning_rate", type=float, default=None, help="Initial learning rate.")
@click.option("--patience", type=int, default=None, help="Early-stopping patience (epochs).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--val-fraction", type=float, default=0.2, show_default=True)
@click.option("--no-augment", is_flag=True, help="Switch off the task's augmentation.")
@click.option("--image-size", type=int, default=None, help="Images: model input side.")
@click.option("--color", type=click.Choice(["gray", "bgr", "rgb"]), default=None)
@click.option("--interpolation", type=click.Choice(["area", "linear", "nearest", "cubic"]),
              default=None, help="Images: resize to the input size (task default: linear).")
@click.option("--window-length", type=int, default=None, help="Signals: samples per window.")
@click.option("--stride", type=int, default=None, help="Signals: training window stride.")
@click.option("--transform", type=click.Choice(["none", "log", "log1p", "db"]), default=None,
              help="Signals: spectrogram magnitude transform.")
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
                          "labelled data: accuracy, per-class metrics, confusion matrix.")
@click.argument("model")
@click.option("--data", "data", required=True, type=click.Path(exists=True))
@click.option("--format", "fmt", default=None,
              help="Bundle format to run (default: the int8 ONNX model); 'keras' for a "
                   "model directory.")
@click.option("--task", default=None, help="Data kind, if the model does not record it.")
@click.option("--stride", type=int, default=None,
              help="Signals: window stride (default: non-overlapping windows).")
@click.option("--threads", type=int, default=1, show_default=True)
@click.option("--report", "report_dir", type=click.Path(file_okay=False), default=None,
              help="Also write confusion.png and metrics.json here.")
@_loader_options
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None)
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
                  "Formats: onnx, onnx-int8, tflite, tflite-fp16, tflite-int8 (default: all).")
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
                   "full-resolution input; default 0).")
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
                  "which layers are to blame.")
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
                "Ctrl-C / SIGTERM stop cleanly and print the summary.")
def run() -> None:
    pass


def _runtime_options(f):
    """Options shared by `run camera` and `run vibration`."""
    options = [
        click.option("--format", "fmt", default=None,
                     help="Model file of the bundle to run (default: this machine's choice "
                          "from 'edgecnn bench BUNDLE --select', else onnx-int8)."),
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


def _run_common(bundle, sources, *, kind, fmt, threads, spinning, threshold, class_threshold,
                ignore_class, min_count, duration, max_items, log, sqlite, fsync, rotate_mb,
                probabilities, json_path, quiet):
    """One RunPlan per source (same model, decisions and limits), run in one process."""
    from edgecnn.deploy.decisions import parse_class_threshold
    from edgecnn.deploy.engine import EngineOptions
    from edgecnn.deploy.options import Decisions, Limits, Logging, ModelOptions, RunPlan
    from edgecnn.deploy.run import run_logged_many

    model = ModelOptions(fmt, EngineOptions(threads=threads, spinning=spinning))
    decisions = Decisions(min_count, threshold,
                          dict(parse_class_threshold(t) for t in class_threshold),
                          tuple(ignore_class), probabilities)
    plans = [(bundle, RunPlan(kind, source, model, decisions, Limits(duration, max_items)))
             for source in sources]
    logging = Logging(log, sqlite, fsync, rotate_mb, json_path)
    for summary in run_logged_many(plans, logging, echo=None if quiet else click.echo):
        click.echo(summary.format())


def _named_sources(values) -> list[tuple[str | None, str]]:
    from edgecnn.deploy.plans import check_unique_names, named_source

    named = [named_source(v) for v in values]
    check_unique_names([name or text for name, text in named])
    return named


SOURCE_HELP = ("Repeatable: one process watches every source. NAME=SOURCE names a source "
               "in its events and summary.")
PER_SOURCE = "Once for every source, or once per --source in order ('none': not for that one)."


@run.command("camera", help="Classify frames from camera indexes, video files, RTSP/HTTP "
                            "URLs or GStreamer pipelines (one or several, in one process).")
@click.argument("bundle")
@click.option("--source", "sources", required=True, multiple=True,
              help="0 | video.mp4 | rtsp://... | 'pipeline ! appsink'. " + SOURCE_HELP)
@click.option("--roi", multiple=True, metavar="x,y,w,h",
              help="Only look at this region. " + PER_SOURCE)
@click.option("--tiles", multiple=True, metavar="RxC",
              help="Classify R x C fixed tiles. " + PER_SOURCE)
@click.option("--grid", multiple=True, metavar="WxH:STRIDE",
              help="Classify a sliding grid of WxH windows. " + PER_SOURCE)
@click.option("--min-frames", "min_count", type=int, default=3, show_default=True,
              help="Frames a class must persist before it is an event.")
@click.option("--snapshots", type=click.Path(file_okay=False), default=None,
              help="Save a JPEG of each event frame here.")
@click.option("--show", is_flag=True, help="Preview window with overlay (q/Esc stops).")
@click.option("--max-frames", "max_items", type=int, default=None,
              help="Stop a source after N frames.")
@click.option("--frozen-frames", type=int, default=30, show_default=True,
              help="Identical frames in a row that mean a frozen source (0: off).")
@_runtime_options
def run_camera_command(bundle, sources, roi, tiles, grid, frozen_frames, snapshots, show,
                       realtime, **options):
    from edgecnn.deploy.errors import InputError
    from edgecnn.deploy.faults import FaultConfig
    from edgecnn.deploy.options import CameraSource
    from edgecnn.deploy.plans import per_source
    from edgecnn.deploy.tiles import parse_grid, parse_roi, parse_tiles

    named = _named_sources(sources)
    if show and len(named) > 1:
        raise InputError("--show previews one source; found "
                         f"{len(named)} --source options")
    n = len(named)
    cameras = [CameraSource(text, roi=r, tiles=t, grid=g, realtime=realtime,
                            faults=FaultConfig(frozen_frames=frozen_frames),
                            snapshots=snapshots, show=show, name=name)
               for (name, text), r, t, g in zip(named, per_source(roi, n, "--roi", parse_roi),
                                                per_source(tiles, n, "--tiles", parse_tiles),
                                                per_source(grid, n, "--grid", parse_grid))]
    _run_common(bundle, cameras, kind="camera", **options)


@run.command("vibration", help="Classify windows of recordings (.mat/.wav/.csv/.npy/.npz), "
                               "raw float32 samples on stdin (-) or tcp://host:port streams "
                               "(one or several, in one process).")
@click.argument("bundle")
@click.option("--source", "sources", required=True, multiple=True,
              help="recording | - | tcp://host:port. " + SOURCE_HELP)
@click.option("--hop", multiple=True, metavar="N",
              help="Samples between windows (default: about half a window). " + PER_SOURCE)
@click.option("--sample-rate", multiple=True, metavar="HZ",
              help="Rate of a stdin/TCP stream, or of a file that does not state it. "
                   + PER_SOURCE)
@click.option("--channel", multiple=True,
              help="Recording channel (default: the model's). " + PER_SOURCE)
@click.option("--min-windows", "min_count", type=int, default=1, show_default=True,
              help="Windows a class must persist before it is an event.")
@click.option("--max-windows", "max_items", type=int, default=None,
              help="Stop a source after N windows.")
@click.option("--clip-level", type=float, default=None,
              help="|sample| at which the sensor clips (default: detect flat peaks).")
@_runtime_options
def run_vibration_command(bundle, sources, hop, sample_rate, channel, clip_level, realtime,
                          **options):
    from edgecnn.deploy.options import VibrationSource
    from edgecnn.deploy.plans import per_source
    from edgecnn.deploy.vibration import SignalChecks

    named = _named_sources(sources)
    n = len(named)
    if sum(1 for _, text in named if text == "-") > 1:
        from edgecnn.deploy.errors import InputError

        raise InputError("stdin (-) can feed one --source only")
    vibrations = [VibrationSource(text, hop=h, sample_rate=r, channel=c, realtime=realtime,
                                  checks=SignalChecks(clip_level=clip_level), name=name)
                  for (name, text), h, r, c in zip(
                      named, per_source(hop, n, "--hop", lambda v: _number(v, int, "--hop")),
                      per_source(sample_rate, n, "--sample-rate",
                                 lambda v: _number(v, float, "--sample-rate")),
                      per_source(channel, n, "--channel"))]
    _run_common(bundle, vibrations, kind="vibration", **options)


def _number(text: str, kind, option: str):
    from edgecnn.deploy.errors import InputError

    try:
        return kind(text)
    except ValueError:
        raise InputError(f"{option} takes a {'whole ' if kind is int else ''}number; "
                         f"found {text!r}") from None


@cli.group(help="Read event logs written by `edgecnn run`.")
def events() -> None:
    pass


@events.command("summary", help="Counts per class and per hour of a JSONL log (with its "
                                "rotated files) or an SQLite event database.")
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
                           "ceiling measured in the same run.")
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
@click.option("--select", "select", is_flag=True,
              help="Only time the formats that passed parity, at --select-batches, and "
                   "record the fastest per batch size for this machine (in "
                   "$XDG_CONFIG_HOME/edgecnn/hosts/): the runtime's default format then.")
@click.option("--select-batches", default="1,32", show_default=True, metavar="N,N",
              help="Batch sizes that --select times.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="Also write all numbers, ceilings and machine info as JSON.")
def bench_command(bundle, json_path, no_keras, select, select_batches, **options):
    if select:
        from edgecnn.select import format_selection, select_formats

        result = select_formats(bundle, batches=_batch_sizes(select_batches),
                                threads=options["threads"],
                                seconds=min(options["max_seconds"], 1.0))
        click.echo(format_selection(result))
        _write_json(result, json_path)
        return
    from edgecnn.bench import bench, format_bench

    result = bench(bundle, keras=not no_keras, **options)
    click.echo(format_bench(result))
    _write_json(result, json_path)


def _batch_sizes(text: str) -> list[int]:
    from edgecnn.deploy.errors import InputError

    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InputError(f"--select-batches takes whole numbers like 1,32; "
                         f"found {text!r}") from None


@cli.command("models", help="List the shipped bundles (name, path, task, formats, "
                            "validation accuracy) and, with --archs, the architectures.")
@click.option("--archs", is_flag=True, help="List the model architectures of the registry.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None)
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
                          "sample video and the vibration runtime on a recording.")
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
