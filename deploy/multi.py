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

from .options import Logging, RunPlan
from .runstats import RunSummary, StopFlag, stop_on_signals

IDLE_SLEEP_S = 0.002   # a round in which no source had anything ready


def open_pipeline(bundle, plan: RunPlan, **kwargs):
    # only the kind's own module: a camera run does not load the vibration path (SciPy)
    if plan.kind == "camera":
        from .camera import CameraPipeline as pipeline
    else:
        from .vibration import VibrationPipeline as pipeline
    return pipeline(bundle, plan, **kwargs)


def run_many(sources: Sequence[tuple[object, RunPlan]], logging: Logging = Logging(), *,
             stop: StopFlag | None = None,
             on_event: Callable[[dict], None] | None = None) -> list[RunSummary]:
    """Run every (bundle, plan) of ``sources`` in this process until all have ended or
    ``stop`` is set; one summary per source, in order. Events of all sources go to the
    same sinks, each naming its source."""
    from .run import open_sinks

    stop = stop or StopFlag()
    with ExitStack() as stack:
        sinks = open_sinks(logging, stack)
        stack.enter_context(stop_on_signals(stop))
        pipelines = []
        engines: dict = {}   # one engine per bundle, format and options (engine.open_for_run)
        try:
            for bundle, plan in sources:
                pipelines.append(open_pipeline(bundle, plan, sinks=sinks, on_event=on_event,
                                               engines=engines))
            return _step_all(pipelines, stop)
        finally:
            for pipeline in pipelines:
                pipeline.close()


def _step_all(pipelines, stop: StopFlag) -> list[RunSummary]:
    live = list(pipelines)
    single = len(live) == 1
    while live and not stop.is_set():
        busy = False
        for pipeline in list(live):
            if not pipeline.loop.running():
                live.remove(pipeline)
                continue
            busy |= pipeline.step(0.2 if single else 0.0)
        if not busy and not single:
            time.sleep(IDLE_SLEEP_S)
    for pipeline in pipelines:
        if stop.is_set():
            pipeline.loop.stop.set(stop.reason)
    return [pipeline.finish() for pipeline in pipelines]
