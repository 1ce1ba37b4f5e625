"""``edgecnn run camera | run vibration | events summary``: the line-side commands
(registered on the main group by ``edgecnn.cli``)."""

from __future__ import annotations

import click

from edgecnn.cli import (
    _trust,
    _trust_option,
    _writable,
    cli,
    examples,
)
from edgecnn.deploy.formats import PREFERENCE
from edgecnn.deploy.reconnect import DEFAULT_CONNECT_TIMEOUT, DEFAULT_STALL_SECONDS

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
                     help="Rotate the log when it would pass this size (MB); the newest 5 "
                          "rotated files are kept (LOG.1 ... LOG.5), older ones deleted."),
        click.option("--sqlite-keep-days", type=float, default=None,
                     help="Delete SQLite events older than this many days (hourly)."),
        click.option("--on-storage-error", type=click.Choice(["continue", "stop"]),
                     default="continue", show_default=True,
                     help="When the disk refuses events: keep classifying and retry "
                          "(a storage fault), or stop with exit 2."),
        click.option("--probabilities", is_flag=True,
                     help="Store all class probabilities in each event."),
        click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
                     callback=_writable, help="Write the run summary as JSON here."),
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
              help="Rate of a stdin/TCP stream (default: the model's; a stream at "
                   "another rate is resampled only when this says so, and is misread "
                   "otherwise), or of a file that does not state it. " + PER_SOURCE)
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
