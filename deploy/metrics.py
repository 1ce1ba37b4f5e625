"""Prometheus text exposition of a run's counters (format 0.0.4), written here: a handful
of counters, a gauge and one histogram per source do not need a client library."""

from __future__ import annotations

from bisect import bisect_right

from .runstats import LatencyHistogram

# seconds: inference of one frame's batch on a small line PC runs from tens of microseconds
INFERENCE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                     0.25, 1.0)


def _label(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**labels) -> str:
    return "{" + ",".join(f'{k}="{_label(v)}"' for k, v in labels.items()) + "}"


def histogram_buckets(histogram: LatencyHistogram, buckets=INFERENCE_BUCKETS):
    """(cumulative count per bucket bound in seconds, count, approximate sum in seconds)."""
    edges_s = [e / 1000.0 for e in LatencyHistogram.EDGES_MS]
    cumulative = []
    running = 0
    counts = histogram.counts
    # counts[i] holds values in (edges[i-1], edges[i]]: bin i lies at or below edges[i]
    index = 0
    for bound in buckets:
        last = bisect_right(edges_s, bound)
        while index < min(last, len(counts)):
            running += counts[index]
            index += 1
        cumulative.append(running)
    total = histogram.n
    centre = [(edges_s[max(i - 1, 0)] * edges_s[min(i, len(edges_s) - 1)]) ** 0.5
              for i in range(len(counts))]
    approx_sum = sum(c * m for c, m in zip(counts, centre) if c)
    return cumulative, total, approx_sum


def _source_stats(pipeline):
    """The source's counters (``FrameSource``/``SampleSource`` stats), also through a
    source that was not up at the start; None before it connected."""
    real = getattr(pipeline, "real", pipeline)
    source = getattr(real, "src", None) if real is not None else None
    return getattr(source, "stats", None)


def prometheus_text(hub) -> str:
    lines = []

    def family(name: str, kind: str, help_text: str) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")

    pipelines = hub.pipelines
    family("edgecnn_frames_total", "counter",
           "Frames (camera) or windows (vibration) taken from the source.")
    for name, p in pipelines.items():
        lines.append(f"edgecnn_frames_total{_labels(source=name)} {p.loop.items}")
    family("edgecnn_processed_total", "counter", "Frames or windows classified.")
    for name, p in pipelines.items():
        lines.append(f"edgecnn_processed_total{_labels(source=name)} "
                     f"{p.loop.summary.processed}")
    family("edgecnn_events_total", "counter", "Defect events by class.")
    for name, p in pipelines.items():
        for label in p.bundle.labels:
            lines.append(f"edgecnn_events_total{_labels(source=name, **{'class': label})} "
                         f"{p.loop.events.get(label, 0)}")
    family("edgecnn_faults_total", "counter",
           "Episodes of input and health faults (black, frozen, clipped, defocus ...), "
           "by fault.")
    for name, p in pipelines.items():
        for fault, count in sorted(p.loop.faults.items()):
            lines.append(f"edgecnn_faults_total{_labels(source=name, fault=fault)} {count}")
    family("edgecnn_source_faults_total", "counter",
           "Times the source stalled, disconnected or was realigned, by fault.")
    for name, p in pipelines.items():
        for fault in ("stalled", "disconnected", "realigned"):
            lines.append(f"edgecnn_source_faults_total{_labels(source=name, fault=fault)} "
                         f"{p.loop.source_faults.get(fault, 0)}")
    stats = {name: _source_stats(p) for name, p in pipelines.items()}
    family("edgecnn_reconnects_total", "counter", "Reconnections of the source after a drop.")
    for name, s in stats.items():
        lines.append(f"edgecnn_reconnects_total{_labels(source=name)} "
                     f"{getattr(s, 'reconnects', 0)}")
    family("edgecnn_dropped_total", "counter",
           "Frames a live source delivered that were replaced by a newer one before "
           "they could be classified.")
    for name, s in stats.items():
        lines.append(f"edgecnn_dropped_total{_labels(source=name)} {getattr(s, 'dropped', 0)}")
    family("edgecnn_source_up", "gauge",
           "1 while the source delivers without a source fault, else 0.")
    for name in pipelines:
        up, _ = hub.health(name)
        lines.append(f"edgecnn_source_up{_labels(source=name)} {int(up)}")
    family("edgecnn_inference_seconds", "histogram", "Model inference time per frame/window.")
    for name, p in pipelines.items():
        cumulative, count, total = histogram_buckets(p.loop.inference)
        for bound, value in zip(INFERENCE_BUCKETS, cumulative):
            lines.append(f"edgecnn_inference_seconds_bucket{_labels(source=name, le=repr(bound))}"
                         f" {value}")
        lines.append(f'edgecnn_inference_seconds_bucket{_labels(source=name, le="+Inf")} {count}')
        lines.append(f"edgecnn_inference_seconds_sum{_labels(source=name)} {total:.9f}")
        lines.append(f"edgecnn_inference_seconds_count{_labels(source=name)} {count}")
    return "\n".join(lines) + "\n"
