"""Several sources in one process: one thread steps every source's pipeline in turn.

Sources on the same bundle and format share one engine (one ONNX Runtime session).
Each source keeps its own reading thread (frames are decoded and prepared there; video
files of small frames share one, ``frames.SharedReading``), its own counters, faults,
events and summary; the stepping thread takes whatever is ready, source
after source, so no source starves another (a source with a frame ready is served at
least once per round). Camera frames taken in one round that wait for the same engine
go through it in one batched run (``CrossSourceBatches``), each source getting its row.
A finite source that ends leaves the others running; a stop
(SIGINT/SIGTERM, the duration) ends them all. A live source that is not up at the start
does not hold the others back: after one attempt it is a ``disconnected`` fault and keeps
being tried (``WaitingPipeline``), as a source that drops later is.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from contextlib import ExitStack, closing
from pathlib import Path
from typing import Callable, Sequence

from .errors import ConnectTimeout, EdgecnnError, StoppedWaiting, StorageError
from .events import SQLITE_MAGIC
from .loop import RunLoop
from .options import Logging, RunPlan
from .reconnect import StatusLog
from .runstats import RunSummary, StopFlag, stop_on_signals
from .shown import shown_url

IDLE_SLEEP_S = 0.002   # a round in which no source had anything ready
POLL_S = 0.5           # storage retries and fault checks between events
# the first attempt of a stream in a run of several sources: a UDP port nobody sends to
# held the start of every other source for OpenCV's 10 s open timeout; a source that
# takes longer is waited for in the background (``WaitingPipeline``)
FIRST_OPEN_S = 3.0


def open_pipeline(bundle, plan: RunPlan, **kwargs):
    # only the kind's own module: a camera run does not load the vibration path (SciPy)
    if plan.kind == "camera":
        from .camera import CameraPipeline as pipeline
    else:
        from .vibration import VibrationPipeline as pipeline
    return pipeline(bundle, plan, **kwargs)


class WaitingPipeline:
    """A source of a several-source run that was not up at the start: a ``disconnected``
    fault (start) at once, then the pipeline is opened in a thread of its own, waiting as
    long as it takes; once it is open it takes over (``disconnected`` ends). Until then it
    steps as an idle source; its summary says it never connected."""

    def __init__(self, bundle, plan: RunPlan, reason: str, stop: StopFlag, **kwargs):
        from .bundle import Bundle

        self.bundle = bundle if isinstance(bundle, Bundle) else Bundle.open(bundle)
        self.real = None
        self.snapshots = None
        self.error: str | None = None
        self._closing = threading.Lock()   # close() against an opening that ends late
        self._closed = False
        self._opened = None
        name = plan.source.name or shown_url(plan.source.source)
        camera = plan.kind == "camera"
        fmt = plan.model.fmt or _format_to_run(self.bundle, plan)
        summary = RunSummary(kind=plan.kind, source=name, bundle=str(self.bundle.path),
                             model_format=fmt, model_sha256=self.bundle.entry(fmt)["sha256"],
                             unit="frames" if camera else "windows")
        self._own = RunLoop(summary, limits=plan.limits, sinks=kwargs.get("sinks", ()),
                            stop=stop, on_event=kwargs.get("on_event"),
                            item="frame" if camera else "window")
        self._status = StatusLog()       # logged as a dropped source's faults are
        trying = not stop.is_set()   # else a stop came while it was awaited
        self._status.start("disconnected", f"not up at the start: {reason}"
                                           f"{'; still trying' if trying else ''}")
        self._own.source_changes(self._status.poll(), 0)
        forever = dataclasses.replace(plan.source, backoff=dataclasses.replace(
            plan.source.backoff, connect_timeout=1e9))
        self._thread = threading.Thread(
            target=self._open, args=(bundle, dataclasses.replace(plan, source=forever),
                                     stop, kwargs), daemon=True, name=f"edgecnn-wait-{name}")
        if trying:
            self._thread.start()

    @property
    def loop(self) -> RunLoop:
        real = self.real
        return real.loop if real is not None else self._own

    def _open(self, bundle, plan, stop, kwargs) -> None:
        # its own engines: the others' are in use, and this may open at any time
        try:
            real = open_pipeline(bundle, plan, stop=stop, **{**kwargs, "engines": {}})
        except EdgecnnError as exc:
            if not stop.is_set():
                self.error = str(exc)
                stop.set(f"cannot open: {exc}")
            return
        with self._closing:
            if self._closed:     # the run ended while this opened: let go of it at once
                real.close()
                return
            self._opened = real
        # the stepping thread takes it over (``_adopt``): the sinks are its own (an SQLite
        # store can only be written from the thread that opened it)

    def _adopt(self) -> None:
        """In the stepping thread, once the pipeline is open: ``disconnected`` ends, and
        the real loop takes the sinks, the preview and the counts so far (a counter of
        the metrics never goes back)."""
        real, own = self._opened, self._own
        self._status.end("disconnected", "connected")
        own.source_changes(self._status.poll(), 0)
        for sink in own.sinks:          # the live page joined after the start
            if sink not in real.loop.sinks:
                real.loop.sinks.append(sink)
        real.loop.preview = own.preview
        real.loop.source_faults.update(own.source_faults)
        self.snapshots = getattr(real, "snapshots", None)
        self.real = real

    def step(self, timeout: float) -> bool:
        if self.real is None and self._opened is not None:
            self._adopt()
        real = self.real
        if real is not None:
            return real.step(timeout)
        if timeout > 0:                  # the only source left: wait, do not spin
            self._own.stop.wait(timeout)
        return False

    def take(self, timeout: float):
        """``step``'s first half, as the real pipeline has it (see CameraPipeline.take);
        a pipeline without halves steps whole (the result is then a bool)."""
        if self.real is None and self._opened is not None:
            self._adopt()
        real = self.real
        take = getattr(real, "take", None)
        if take is None:
            return self.step(timeout)
        return take(timeout)

    def complete(self, *args) -> bool:
        return self.real.complete(*args)

    def close(self) -> None:
        # no waiting for the opening thread (it may sit in a 10 s open): what it opens
        # after this, it closes itself (``_closed``); the others' sources are not held
        # reading past the stop meanwhile
        self._own.stop.set(self._own.stop.reason or "stopped")
        with self._closing:
            self._closed = True
            opened = self._opened   # opened, maybe not yet taken over (``real``)
        if opened is not None:
            opened.close()

    def finish(self) -> RunSummary:
        if self.real is None:
            own = self._own
            self._status.end_all(own.ended_detail())   # "disconnected" ends with the run
            own.source_changes(self._status.poll(), 0)
            own.end_open_faults(0)
            summary = self._own.finish(stop_reason=f"never connected"
                                       f"{': ' + self.error if self.error else ''}")
            summary.extra["source_faults"] = dict(self._own.source_faults)
            return summary
        return self.real.finish()     # its counts hold the waiting one's (``_adopt``)


class _CurrentLoop:
    """A pipeline's RunLoop as it is when asked: a source not up at the start reports
    through a stand-in loop until it opens, then through its real one."""

    def __init__(self, pipeline) -> None:
        self._pipeline = pipeline

    @property
    def summary(self) -> RunSummary:
        return self._pipeline.loop.summary

    def status(self) -> dict:
        return self._pipeline.loop.status()


def _format_to_run(bundle, plan: RunPlan) -> str:
    """The format the source will run once it is up (``engine.open_for_run`` picks the
    same): this machine's choice for its batch size, else the bundle's default."""
    from .hosts import selected_format

    tiles = getattr(plan.source, "tiles", None)
    return selected_format(bundle, tiles[0] * tiles[1] if tiles else 1,
                           threads=plan.model.engine.threads)[0]


def run_many(sources: Sequence[tuple[object, RunPlan]], logging: Logging = Logging(), *,
             stop: StopFlag | None = None,
             on_event: Callable[[dict], None] | None = None,
             http=None, on_http: Callable[[str], None] | None = None,
             sinks: Sequence = (), keep_waiting: bool = False) -> list[RunSummary]:
    """Run every (bundle, plan) of ``sources`` in this process until all have ended or
    ``stop`` is set; one summary per source, in order. Events of all sources go to the
    same sinks, each naming its source. ``http`` (``httpview.HttpOptions``) serves the
    live page while the sources run; ``on_http`` is told its address.

    ``sinks`` are extra, caller-owned sinks (e.g. MQTT) after those ``logging`` names; one
    with a ``watch(loop)`` method is shown every source's RunLoop once it is open (for live
    status), one with ``finish(summaries)`` is called with the summaries before they are
    returned (to flush and add its counts).

    A live source that is down at the start holds nobody back: with several sources (or
    ``keep_waiting``, the service) it gets one connection attempt, then it is a
    ``disconnected`` fault and keeps being tried while the others run. One source alone
    waits up to its --connect-timeout and then fails. A stop while waiting ends the run
    cleanly, with a summary that says the source never connected."""
    stop = stop or StopFlag()
    if http is not None:
        http.address()   # a bad address or a missing token fails before any source opens
    fresh = [Path(p) for p in (logging.log, logging.sqlite)
             if p is not None and not Path(p).exists()]
    opened: list[Path] = []   # each sink's file, once this run's sink holds it
    try:
        return _run_opened(sources, logging, stop, on_event, http, on_http, sinks,
                           opened, keep_waiting or len(sources) > 1)
    finally:   # the fresh files this run opened (none once every source opened)
        _remove_unused([path for path in fresh if path in opened])


def _remove_unused(paths) -> None:
    """Logs this run created before a source failed to open: removed while they hold no
    event, so a failed start leaves no empty log behind (its ``.lock`` stays, see storage).
    Only files this run's own sinks opened come here (a log another run created meanwhile
    was refused, not taken), and one with an event in it stays whatever made it."""
    import sqlite3

    for path in paths:
        try:
            if path.stat().st_size and path.read_bytes()[:16] == SQLITE_MAGIC:
                with closing(sqlite3.connect(path)) as db:
                    if db.execute("SELECT EXISTS (SELECT 1 FROM events)").fetchone()[0]:
                        continue
            elif path.stat().st_size:
                continue
        except (OSError, sqlite3.Error):
            continue
        for item in (path, *(path.with_name(path.name + s) for s in ("-wal", "-shm",
                                                                      "-journal"))):
            try:
                item.unlink(missing_ok=True)
            except OSError:
                pass


def _first_try(plan: RunPlan, waiting: bool) -> RunPlan:
    """The plan for opening a source: when the run goes on without it, one connection
    attempt (then ``WaitingPipeline`` keeps trying), so a dead camera delays nobody."""
    backoff = getattr(plan.source, "backoff", None)
    if not waiting or backoff is None:
        return plan
    once = dataclasses.replace(backoff, connect_timeout=0.0, first_open=FIRST_OPEN_S)
    return dataclasses.replace(plan, source=dataclasses.replace(plan.source, backoff=once))


def _run_opened(sources, logging, stop, on_event, http, on_http, sinks, opened: list,
                waiting: bool):
    from .run import open_sinks

    with ExitStack() as stack:
        guard = open_sinks(logging, stack, stop, on_event, opened)
        extra = list(sinks)
        stack.enter_context(stop_on_signals(stop))
        pipelines = []
        closed: set[int] = set()   # ids of the pipelines closed already (summed up)
        engines: dict = {}   # one engine per bundle, format and options (engine.open_for_run)
        # small-frame files of several cameras: one reading thread (frames.SharedReading)
        reading = _shared_reading() if len(sources) > 1 else None
        try:
            for bundle, plan in sources:
                # each source stops on its own at its end, all of them on ``stop``
                own_stop = StopFlag(parent=stop)
                kwargs = {"sinks": [guard, *extra], "on_event": on_event}
                shared = {"reading": reading} if plan.kind == "camera" else {}
                try:
                    pipeline = open_pipeline(bundle, _first_try(plan, waiting), stop=own_stop,
                                             engines=engines, **shared, **kwargs)
                except (ConnectTimeout, StoppedWaiting) as exc:
                    if not (waiting or stop.is_set()):
                        raise
                    pipeline = WaitingPipeline(bundle, plan, str(exc), own_stop, **kwargs)
                pipelines.append(pipeline)
                guard.watch(getattr(pipeline, "snapshots", None))
            if http is not None:   # a port in use fails the start: no fresh log is left
                _serve(http, pipelines, stack, on_http)
            opened.clear()   # from here on the logs are the run's, whatever happens
            for pipeline in pipelines:
                pipeline.loop.begin()
            for sink in extra:
                if hasattr(sink, "watch"):
                    for pipeline in pipelines:
                        sink.watch(_CurrentLoop(pipeline))
            summaries = _step_all(pipelines, stop, guard, closed)
            for sink in extra:
                if hasattr(sink, "finish"):
                    sink.finish(summaries)
        finally:
            for pipeline in pipelines:
                if id(pipeline) not in closed:
                    pipeline.close()
    report = guard.report()
    for summary in summaries:
        summary.extra.update(report)
    if guard.failure:
        error = StorageError(f"{guard.failure}; run stopped (--on-storage-error stop), "
                             f"{guard.unstored} event(s) not stored")
        error.summaries = summaries    # the caller still writes its --json of them
        raise error
    return summaries


def _shared_reading():
    from .frames import SharedReading  # OpenCV: not for a run of recordings alone

    return SharedReading()


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


def _summed_up(pipeline, closed: set[int]) -> RunSummary:
    """A pipeline's summary once its source is closed: its reading thread has ended then
    and told its CPU time (``reader_cpu_ms``), and its capture is let go at once."""
    closed.add(id(pipeline))
    pipeline.close()
    return pipeline.finish()


def _step_all(pipelines, stop: StopFlag, guard, closed: set[int]) -> list[RunSummary]:
    live = list(pipelines)
    single = len(live) == 1
    batches = CrossSourceBatches()
    next_poll = 0.0
    ended: dict[int, RunSummary] = {}    # summed up when it ended: its own time, not the run's
    while live and not stop.is_set():
        now = time.monotonic()
        if now >= next_poll:             # storage retries also while no event comes
            guard.poll()
            next_poll = now + POLL_S
        busy = False
        waiting = []                     # frames taken this round that await the model
        for pipeline in list(live):
            if not pipeline.loop.running():
                live.remove(pipeline)
                ended[id(pipeline)] = _summed_up(pipeline, closed)
                continue
            take = None if single else getattr(pipeline, "take", None)
            if take is None:
                busy |= pipeline.step(0.2 if single else 0.0)
                continue
            taken = take(0.0)
            if isinstance(taken, bool):
                busy |= taken
            else:
                waiting.append((pipeline, taken))
                busy = True
        if waiting:
            batches.run(waiting)
        if not busy and not single:
            time.sleep(IDLE_SLEEP_S)
    return [ended.get(id(pipeline)) or _summed_up(pipeline, closed) for pipeline in pipelines]


class CrossSourceBatches:
    """One model run for the frames of several sources that wait for the same engine in a
    round: each such frame (one region: a whole frame or an ROI) is copied into a batch
    runner of the engine for that many frames (made once per size), run once, and each
    source gets its row. A tiled frame is already a batch (its tiles), and copying 45
    tiles would cost more than a run saves: it runs alone, as does a frame whose engine
    nobody else waits for. At 200x200 four frames in one run take 0.06-0.07 ms of the
    model each, one run per frame 0.08-0.09 ms (the shipped NEU model, this 2-core PC)."""

    def __init__(self) -> None:
        self._runners: dict = {}

    def run(self, waiting) -> None:
        groups: dict = {}
        for pipeline, frame in waiting:
            runner = frame.work.runner
            key = (id(runner.engine), runner.inputs.shape[1:]) \
                if runner.batch == 1 else ("alone", id(frame))
            groups.setdefault(key, []).append((pipeline, frame))
        for key, members in groups.items():
            started = time.thread_time()
            runner = members[0][1].work.runner
            if len(members) > 1:
                batch = self._runners.get((key, len(members)))
                if batch is None:
                    batch = self._runners[(key, len(members))] = runner.engine.runner(
                        runner.inputs.shape[1:], len(members))
                for i, (_, frame) in enumerate(members):
                    batch.inputs[i] = frame.work.runner.inputs[0]
                runner = batch
            begun = time.monotonic()
            probs = runner.run()
            done = time.monotonic()
            # each frame's share of the run and of this thread's CPU (the copies and a
            # new batch size's runner included), so per-source sums stay the model's time
            share = 1.0 / len(members)
            cpu = (time.thread_time() - started) * share
            for i, (pipeline, frame) in enumerate(members):
                pipeline.complete(frame, probs[i:i + 1] if len(members) > 1 else probs,
                                  (done - begun) * share, done, cpu)
