"""Several sources in one process: one thread steps every source's pipeline in turn.

Sources on the same bundle and format share one engine (one ONNX Runtime session).
Each source keeps its own reading thread (frames are decoded and prepared there), its own
counters, faults, events and summary; the stepping thread takes whatever is ready, source
after source, so no source starves another (a source with a frame ready is served at
least once per round). A finite source that ends leaves the others running; a stop
(SIGINT/SIGTERM, the duration) ends them all.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from typing import Callable, Sequence

from .errors import StorageError
from .options import Logging, RunPlan
from .runstats import RunSummary, StopFlag, stop_on_signals

IDLE_SLEEP_S = 0.002   # a round in which no source had anything ready
POLL_S = 0.5           # storage retries and fault checks between events


def open_pipeline(bundle, plan: RunPlan, **kwargs):
    # only the kind's own module: a camera run does not load the vibration path (SciPy)
    if plan.kind == "camera":
        from .camera import CameraPipeline as pipeline
    else:
        from .vibration import VibrationPipeline as pipeline
    return pipeline(bundle, plan, **kwargs)


def run_many(sources: Sequence[tuple[object, RunPlan]], logging: Logging = Logging(), *,
             stop: StopFlag | None = None,
             on_event: Callable[[dict], None] | None = None,
             http=None, on_http: Callable[[str], None] | None = None,
             sinks: Sequence = ()) -> list[RunSummary]:
    """Run every (bundle, plan) of ``sources`` in this process until all have ended or
    ``stop`` is set; one summary per source, in order. Events of all sources go to the
    same sinks, each naming its source. ``http`` (``httpview.HttpOptions``) serves the
    live page while the sources run; ``on_http`` is told its address.

    ``sinks`` are extra, caller-owned sinks (e.g. MQTT) after those ``logging`` names; one
    with a ``watch(loop)`` method is shown every source's RunLoop once it is open (for live
    status), one with ``finish(summaries)`` is called with the summaries before they are
    returned (to flush and add its counts)."""
    from .run import open_sinks

    stop = stop or StopFlag()
    if http is not None:
        http.address()   # a bad address or a missing token fails before any source opens
    with ExitStack() as stack:
        guard = open_sinks(logging, stack, stop, on_event)
        extra = list(sinks)
        stack.enter_context(stop_on_signals(stop))
        pipelines = []
        engines: dict = {}   # one engine per bundle, format and options (engine.open_for_run)
        try:
            for bundle, plan in sources:
                # each source stops on its own at its end, all of them on ``stop``
                pipeline = open_pipeline(bundle, plan, sinks=[guard, *extra],
                                         on_event=on_event, stop=StopFlag(parent=stop),
                                         engines=engines)
                pipelines.append(pipeline)
                guard.watch(getattr(pipeline, "snapshots", None))
            for sink in extra:
                if hasattr(sink, "watch"):
                    for pipeline in pipelines:
                        sink.watch(pipeline.loop)
            if http is not None:
                _serve(http, pipelines, stack, on_http)
            summaries = _step_all(pipelines, stop, guard)
            for sink in extra:
                if hasattr(sink, "finish"):
                    sink.finish(summaries)
        finally:
            for pipeline in pipelines:
                pipeline.close()
    report = guard.report()
    for summary in summaries:
        summary.extra.update(report)
    if guard.failure:
        raise StorageError(f"{guard.failure}; run stopped (--on-storage-error stop), "
                           f"{guard.unstored} event(s) not stored")
    return summaries


def _serve(http, pipelines, stack: ExitStack, on_http) -> None:
    from .httpview import LiveServer, page_url
    from .live import LiveHub

    hub = LiveHub(pipelines)
    for pipeline in pipelines:
        pipeline.loop.sinks.append(hub)   # the hub sees every event, after the log
    stack.callback(hub.close)
    server = LiveServer(http, hub)
    stack.callback(server.close)
    if on_http is not None:
        on_http(page_url(server))


def _step_all(pipelines, stop: StopFlag, guard) -> list[RunSummary]:
    live = list(pipelines)
    single = len(live) == 1
    next_poll = 0.0
    while live and not stop.is_set():
        now = time.monotonic()
        if now >= next_poll:             # storage retries also while no event comes
            guard.poll()
            next_poll = now + POLL_S
        busy = False
        for pipeline in list(live):
            if not pipeline.loop.running():
                live.remove(pipeline)
                continue
            busy |= pipeline.step(0.2 if single else 0.0)
        if not busy and not single:
            time.sleep(IDLE_SLEEP_S)
    return [pipeline.finish() for pipeline in pipelines]
