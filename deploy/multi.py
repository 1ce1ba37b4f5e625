"""Several sources in one process: one thread steps every source's pipeline in turn.

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
    from .camera import CameraPipeline
    from .vibration import VibrationPipeline

    pipeline = CameraPipeline if plan.kind == "camera" else VibrationPipeline
    return pipeline(bundle, plan, **kwargs)


def run_many(sources: Sequence[tuple[object, RunPlan]], logging: Logging = Logging(), *,
             stop: StopFlag | None = None,
             on_event: Callable[[dict], None] | None = None,
             sinks: Sequence = ()) -> list[RunSummary]:
    """Run every (bundle, plan) of ``sources`` in this process until all have ended or
    ``stop`` is set; one summary per source, in order. Events of all sources go to the
    same sinks, each naming its source.

    ``sinks`` are extra, caller-owned sinks (e.g. MQTT) after those ``logging`` names; one
    with a ``watch(loop)`` method is shown every source's RunLoop once it is open (for live
    status), one with ``finish(summaries)`` is called with the summaries before they are
    returned (to flush and add its counts)."""
    from .run import open_sinks

    stop = stop or StopFlag()
    with ExitStack() as stack:
        extra = list(sinks)
        sinks = open_sinks(logging, stack) + extra
        stack.enter_context(stop_on_signals(stop))
        pipelines = []
        try:
            for bundle, plan in sources:
                pipelines.append(open_pipeline(bundle, plan, sinks=sinks, on_event=on_event))
            for sink in extra:
                if hasattr(sink, "watch"):
                    for pipeline in pipelines:
                        sink.watch(pipeline.loop)
            summaries = _step_all(pipelines, stop)
            for sink in extra:
                if hasattr(sink, "finish"):
                    sink.finish(summaries)
            return summaries
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
