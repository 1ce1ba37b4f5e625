"""The ``edgecnn`` command: a thin click layer over library functions.

Each command parses options, calls one library function and prints its result. Heavy
imports (TensorFlow, tf2onnx) happen inside the commands, so ``edgecnn --help`` and the
runtime start fast. EdgecnnError subclasses become one clean line on stderr and the
documented exit code: 0 ok, 1 check failed, 2 usage or input error.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import click

from edgecnn import __version__
from edgecnn.deploy.errors import EdgecnnError
from edgecnn.deploy.formats import FORMAT_NAMES, PREFERENCE
from edgecnn.deploy.reconnect import DEFAULT_CONNECT_TIMEOUT, DEFAULT_STALL_SECONDS
from edgecnn.deploy.spec import DEFAULT_CHANNEL
from edgecnn.export.defaults import CALIBRATION_SAMPLES, MAX_DROP_PP, MIN_AGREEMENT

EXIT_CODES_HELP = "Exit codes: 0 ok, 1 check failed, 2 usage or input error."


def examples(*lines: str) -> str:
    """A command's epilog: its example lines, kept as written (click's \\b)."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


def per_task(field: str, kinds=("image", "signal"), otherwise: str | None = None) -> str:
    """``[default: per task: images/neu 60, mnist 15, ...]`` for a training option, from the
    task table (edgecnn.tasks), so the help never disagrees with what training does.
    ``field`` is a TaskDefaults attribute or ``image.x`` / ``signal.x``; tasks without a
    value are "others" (``otherwise``)."""
    from edgecnn.tasks import TASK_LIST, TASKS

    names = {task.name: [task.name, *task.aliases] for task in TASK_LIST if task.kind in kinds}
    values = []
    for group in names.values():
        section, _, attribute = field.rpartition(".")
        task = TASKS[group[0]]
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
    f = click.option("--channel", default=DEFAULT_CHANNEL, show_default=True,
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
            if value not in (None, False) and not (name == "channel" and value == DEFAULT_CHANNEL)}


def _write_json(data: dict, path) -> None:
    if path:
        from edgecnn.report import write_json

        write_json(data, path)
        click.echo(f"results written to {path}")


def _trust_option(f):
    """--trusted-key: then a bundle must be signed by one of these keys (see `edgecnn sign`)."""
    return click.option("--trusted-key", "trusted_keys", multiple=True, metavar="PUB",
                        help="Only open bundles signed by this public key (repeatable; "
                             "adds to EDGECNN_TRUSTED_KEYS).")(f)


def _trust(trusted_keys):
    from edgecnn.deploy.signing import Trust

    return Trust.resolve(trusted_keys)


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
              default=None, help="Images: resize to the input size. "
                                 + per_task("image.interpolation", ("image",)))
@click.option("--fit", type=click.Choice(["stretch", "letterbox", "crop"]), default=None,
              help="Images of another aspect ratio: stretch, letterbox or crop to the input "
                   "(default: stretch if all are within 10 % of it, else letterbox).")
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
def train(json_path, augment, **options):
    from edgecnn.training import TrainConfig, train as run_training

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
              help=f"Bundle format to run: {', '.join(FORMAT_NAMES)} (default: the first "
                   f"the bundle has of {', '.join(PREFERENCE)}); 'keras' for a model "
                   "directory.")
@click.option("--task", default=None, help="Data kind, if the model does not record it.")
@click.option("--stride", type=int, default=None,
              help="Signals: window stride (default: non-overlapping windows).")
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
@_trust_option
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="Also write the metrics as JSON.")
def eval_command(model, data, fmt, json_path, report_dir, robustness, perturbations,
                 trusted_keys, **options):
    from edgecnn.evaluation import evaluate

    trust = _trust(trusted_keys)
    if robustness or perturbations:
        from edgecnn.robustness import evaluate_robustness, format_robustness, plot_robustness

        result = evaluate_robustness(model, data, fmt=fmt, families=perturbations,
                                     trust=trust, **options)
        click.echo(format_robustness(result))
        picture = plot_robustness(result, Path(report_dir or ".") / "robustness.png")
        click.echo(f"heat-map: {picture}")
        _write_json(result, json_path)
        return
    metrics = evaluate(model, data, fmt=fmt, trust=trust, **options)
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
                  f"Formats: {', '.join(FORMAT_NAMES)} (default: all).",
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
@click.option("--max-drop", type=float, default=MAX_DROP_PP, show_default=True,
              help="Parity: largest accepted accuracy drop (percentage points).")
@click.option("--min-agreement", type=float, default=MIN_AGREEMENT, show_default=True,
              help="Parity: smallest accepted top-1 agreement with float (0-1).")
@click.option("--max-calib-samples", type=int, default=CALIBRATION_SAMPLES,
              show_default=True,
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
@click.option("--max-drop", type=float, default=MAX_DROP_PP, show_default=True,
              help="Largest accepted accuracy drop vs float (percentage points).")
@click.option("--min-agreement", type=float, default=MIN_AGREEMENT, show_default=True,
              help="Smallest accepted top-1 agreement with float (0-1).")
@click.option("--formats", default=None, help="Comma-separated formats (default: all).")
@click.option("--task", default=None, help="Data kind, if the bundle does not record it.")
@_loader_options
@_trust_option
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="Also write the per-format metrics and parity fields as JSON.")
def parity(bundle, data, max_drop, min_agreement, formats, task, json_path, trusted_keys,
           **loader_options):
    from edgecnn.deploy.errors import CheckFailed
    from edgecnn.export import run_parity

    result = run_parity(bundle, data, max_drop=max_drop, min_agreement=min_agreement,
                        task=task, formats=formats, trust=_trust(trusted_keys),
                        **_given_loader_options(loader_options))
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
                     help="Model file of the bundle to run (default: this machine's choice "
                          "from 'edgecnn bench BUNDLE --select', else the bundle's default, "
                          f"the first it has of {', '.join(PREFERENCE)})."),
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
        click.option("--connect-timeout", type=float, default=DEFAULT_CONNECT_TIMEOUT,
                     show_default=True,
                     help="Seconds to wait for a live source (stream, camera, TCP sensor) "
                          "that is not up yet, retrying with backoff (files: no wait)."),
        click.option("--stall-seconds", type=float, default=DEFAULT_STALL_SECONDS,
                     show_default=True,
                     help="A connected source silent this long is a 'stalled' fault."),
        click.option("--log", "log", type=click.Path(dir_okay=False), default=None,
                     help="JSON Lines event log (appended)."),
        click.option("--sqlite", type=click.Path(dir_okay=False), default=None,
                     help="Also store events in this SQLite database (WAL)."),
        click.option("--fsync", type=click.Choice(["every", "interval", "never"]),
                     default="interval", show_default=True,
                     help="When log lines are forced to disk (interval: at most 1/s)."),
        click.option("--rotate-mb", type=float, default=None,
                     help="Rotate the log when it would pass this size (MB)."),
        click.option("--sqlite-keep-days", type=float, default=None,
                     help="Delete SQLite events older than this many days (hourly)."),
        click.option("--on-storage-error", type=click.Choice(["continue", "stop"]),
                     default="continue", show_default=True,
                     help="When the disk refuses events: keep classifying and retry "
                          "(a storage fault), or stop with exit 2."),
        click.option("--probabilities", is_flag=True,
                     help="Store all class probabilities in each event."),
        click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
                     help="Write the run summary as JSON here."),
        click.option("--quiet", is_flag=True, help="Do not print events as they happen."),
        click.option("--http", "http_listen", default=None, metavar="HOST:PORT",
                     help="Serve the live page, /api, /metrics and /healthz here "
                          "(127.0.0.1 unless --http-token is given)."),
        click.option("--http-token", default=None, envvar="EDGECNN_HTTP_TOKEN",
                     help="Token every request to --http must carry (Bearer header or "
                          "?token=); required for addresses other than loopback "
                          "[env EDGECNN_HTTP_TOKEN]."),
        click.option("--mqtt", default=None, metavar="URL",
                     help="Also publish events to MQTT: mqtt://[user:pass@]host:port/PREFIX "
                          "(mqtts:// for TLS; ?spool=DIR&ca=FILE&cert=FILE&key=FILE). "
                          "Needs edgecnn[mqtt]."),
    ]
    for option in reversed(options):
        f = option(f)
    return _trust_option(f)


def _run_common(bundle, kind: str, params: dict) -> None:
    """One RunPlan per source (same model, decisions and limits), run in one process."""
    from contextlib import ExitStack

    from edgecnn.deploy.bundle import Bundle
    from edgecnn.deploy.run import run_logged_many
    from edgecnn.runplans import runtime_settings

    quiet = params.pop("quiet")
    settings = runtime_settings(kind, params)
    bundle = Bundle.open(bundle, _trust(settings.trusted_keys))
    with ExitStack() as stack:
        sinks = []
        if settings.mqtt:
            from edgecnn.deploy.mqtt import MqttSinks, options_from_url

            sinks.append(stack.enter_context(MqttSinks(options_from_url(settings.mqtt))))
        summaries = run_logged_many([(bundle, plan) for plan in settings.plans],
                                    settings.logging, echo=None if quiet else click.echo,
                                    http=settings.http, sinks=sinks)
    for summary in summaries:
        click.echo(summary.format())


SOURCE_HELP = ("Repeatable: one process watches every source. NAME=SOURCE names a source "
               "in its events and summary.")
PER_SOURCE = "Once for every source, or once per --source in order ('none': not for that one)."


@run.command("camera", help="Classify frames from camera indexes, video files, RTSP/HTTP "
                            "URLs or GStreamer pipelines (one or several, in one process).",
             epilog=examples("edgecnn run camera neu --source 0 --log events.jsonl",
                             "edgecnn run camera neu --source line1=rtsp://cam1/stream "
                             "--source line2=rtsp://cam2/stream --tiles 2x2 --http "
                             "127.0.0.1:8080"))
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
@click.option("--snapshots-max-mb", type=float, default=None,
              help="Keep the snapshot folder under this size (oldest deleted first).")
@click.option("--snapshots-keep-days", type=float, default=None,
              help="Delete snapshots older than this many days.")
@click.option("--show", is_flag=True, help="Preview window with overlay (q/Esc stops).")
@click.option("--max-frames", "max_items", type=int, default=None,
              help="Stop a source after N frames.")
@click.option("--frozen-frames", type=int, default=30, show_default=True,
              help="Identical frames in a row that mean a frozen source (0: off).")
@_runtime_options
def run_camera_command(bundle, **params):
    _run_common(bundle, "camera", params)


@run.command("vibration", help="Classify windows of recordings (.mat/.wav/.csv/.npy/.npz), "
                               "raw float32 samples on stdin (-) or tcp://host:port streams "
                               "(one or several, in one process).",
             epilog=examples("edgecnn run vibration cwru --source recording.mat "
                             "--log events.jsonl",
                             "edgecnn run vibration cwru --source tcp://127.0.0.1:9000 "
                             "--sample-rate 12000"))
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
def run_vibration_command(bundle, **params):
    _run_common(bundle, "vibration", params)


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
@_trust_option
@click.option("--select", "select", is_flag=True,
              help="Only time the formats that passed parity, at --select-batches, and "
                   "record the fastest per batch size for this machine (in "
                   "$XDG_CONFIG_HOME/edgecnn/hosts/): the runtime's default format then.")
@click.option("--select-batches", default="1,32", show_default=True, metavar="N,N",
              help="Batch sizes that --select times.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="Also write all numbers, ceilings and machine info as JSON.")
def bench_command(bundle, json_path, no_keras, select, select_batches, trusted_keys,
                  **options):
    from edgecnn.deploy.bundle import Bundle

    bundle = Bundle.open(bundle, _trust(trusted_keys))
    if select:
        from edgecnn.select import format_selection, select_formats

        result = select_formats(bundle, batches=_batch_sizes(select_batches),
                                threads=options["threads"],
                                seconds=min(options["max_seconds"], 1.0))
        click.echo(format_selection(result))
        _write_json(result, json_path)
        return
    from edgecnn.bench import bench

    result = bench(bundle, keras=not no_keras, **options)
    click.echo(result.format())
    _write_json(result.to_dict(), json_path)


@cli.group(help="Ed25519 keys for signing bundles (needs edgecnn[sign]).",
           epilog=examples("edgecnn keys generate --out keys --name line1"))
def keys() -> None:
    pass


@keys.command("generate", help="Write a new key pair: NAME.key (private, mode 0600) and "
                               "NAME.pub (give it to --trusted-key). Never overwrites.",
              epilog=examples("edgecnn keys generate --out keys --name line1"))
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Folder for the two key files (created if missing).")
@click.option("--name", default="edgecnn", show_default=True, help="Key file name stem.")
def keys_generate(out, name):
    from edgecnn.deploy.signing import generate_keys

    private, public, key_id = generate_keys(out, name)
    click.echo(f"key {key_id}: private {private} (keep it secret), public {public}")


@cli.command("sign", help="Sign a bundle's manifest (which holds every file's sha256) with "
                          "a private key: writes edgecnn.json.sig into the bundle. Commands "
                          "given --trusted-key PUB accept it, and refuse it after any change.",
             epilog=examples("edgecnn sign bundles/steel --key keys/line1.key"))
@click.argument("bundle")
@click.option("--key", required=True, type=click.Path(dir_okay=False),
              help="Private key from 'edgecnn keys generate'.")
def sign_command(bundle, key):
    from edgecnn.deploy.signing import sign_bundle

    path, key_id = sign_bundle(bundle, key)
    click.echo(f"signed with key {key_id}: {path}")


def _batch_sizes(text: str) -> list[int]:
    from edgecnn.deploy.errors import InputError

    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InputError(f"--select-batches takes whole numbers like 1,32; "
                         f"found {text!r}") from None


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


@cli.command("demo", help="Run the main job on embedded defaults: train and export a quick "
                          "model, parity of the shipped NEU bundle, the camera runtime on a "
                          "sample video and the vibration runtime on a recording.",
             epilog=examples("edgecnn demo", "edgecnn demo --out /tmp/edgecnn-demo"))
@click.option("--out", default="demo-output", show_default=True,
              type=click.Path(file_okay=False), help="Folder for everything the demo writes.")
def demo_command(out):
    from edgecnn.demo import run_demo

    run_demo(out, echo=click.echo)


def _add_service_commands() -> None:
    from edgecnn.servecli import serve_command, service_group

    cli.add_command(serve_command)
    cli.add_command(service_group)


_add_service_commands()


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
