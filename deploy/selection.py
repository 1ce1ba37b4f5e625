"""Which format runs fastest here: ``edgecnn bench BUNDLE --select``, and the runtime's
own short measurement at the first start of a bundle on a machine without a host file.
Both time every format that passed parity on this machine and record the fastest per
batch size in this machine's host file (``hosts.py``).

Formats are timed in interleaved rounds (each round times every format once; the best
round counts), so a neighbour's burst on a shared machine hits all formats alike rather
than the one that happened to run then. Within 5 % of the fastest, the format needing
fewer packages is chosen (``hosts.choose``).
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np

from .bundle import MANIFEST, Bundle, sha256_file
from .engine import EngineOptions, engine_for_file
from .errors import BundleError, EdgecnnError, InputError
from .hosts import (
    TIE_SHARE,
    choose,
    host_file,
    int8_exact_here,
    missing_packages,
    packages_for,
    select_command,
    write_selection,
)

DEFAULT_BATCHES = (1, 32)
# the largest batch timed (a frame of 32x32 tiles); a larger one runs the choice of this
MAX_BATCH = 1024


def check_seconds(seconds: float) -> None:
    if not (isinstance(seconds, (int, float)) and math.isfinite(seconds) and seconds > 0):
        raise InputError(f"--max-seconds must be a positive number of seconds; found {seconds}")


def choose_formats(bundle: Bundle, formats) -> list[str]:
    """The formats named in ``formats`` (a comma list or a sequence; None: all the
    bundle has), each once; a name the bundle lacks is a BundleError."""
    if formats is None:
        return bundle.formats
    if isinstance(formats, str):
        formats = formats.split(",")
    chosen = list(dict.fromkeys(f.strip() for f in formats if f.strip()))
    missing = [f for f in chosen if f not in bundle.files]
    if missing or not chosen:
        raise BundleError(f"bundle {bundle.path} has no {', '.join(missing) or 'formats'} "
                          f"model; it has: {', '.join(bundle.formats)}")
    return chosen


def parity_passed(bundle: Bundle) -> tuple[list[str], dict[str, str]]:
    """(formats whose manifest verification passed, {format: why it is left out})."""
    verification = bundle.manifest.get("verification") or {}
    passed, skipped = [], {}
    for fmt in bundle.formats:
        record = verification.get(fmt)
        if not isinstance(record, dict):
            skipped[fmt] = "no parity record in the manifest"
        elif not record.get("passed"):
            skipped[fmt] = "failed parity at export"
        elif missing_packages(fmt):
            skipped[fmt] = "needs " + ", ".join(missing_packages(fmt))
        elif (why := int8_exact_here(bundle.manifest["files"][fmt])) is not None:
            skipped[fmt] = why
        else:
            passed.append(fmt)
    return passed, skipped


def _time_round(runner, seconds: float) -> float:
    """The fastest of about ``seconds`` of runs: on a shared machine most runs of a
    batch are preempted somewhere, so the mean and even the median measure the
    neighbours; the fastest run is the format's own speed."""
    times = []
    deadline = time.perf_counter() + seconds
    while len(times) < 5 or time.perf_counter() < deadline:
        t0 = time.perf_counter()
        runner.run()
        times.append(time.perf_counter() - t0)
    return float(min(times))


def select_formats(bundle, *, batches=DEFAULT_BATCHES, threads: int = 1,
                   seconds: float = 1.0, rounds: int = 5, write: bool = True,
                   formats=None) -> dict:
    """Time each runnable format that passed parity at each batch size (``seconds`` of
    runs per format and batch, over ``rounds`` interleaved rounds); the choice per batch
    size; written to the host file unless ``write`` is False (then no ``host_file``).
    ``formats`` (names) limits the choice to those; each must have passed parity."""
    bundle = bundle if isinstance(bundle, Bundle) else Bundle.open(bundle)
    check_seconds(seconds)
    wanted = None if formats is None else choose_formats(bundle, formats)
    batches = sorted({int(b) for b in batches})
    if not batches or batches[0] < 1 or batches[-1] > MAX_BATCH:
        raise InputError(f"--select batch sizes must be whole numbers 1-{MAX_BATCH}; found "
                         f"{batches}")
    formats, skipped = parity_passed(bundle)
    if wanted is not None:
        refused = {f: skipped[f] for f in wanted if f in skipped}
        if refused:
            raise InputError("--select cannot choose " + "; ".join(
                f"{f} ({why})" for f, why in refused.items()))
        formats, skipped = [f for f in formats if f in wanted], {}
    if not formats:
        raise InputError(f"bundle {bundle.path} has no format that passed parity and can "
                         f"run here ({'; '.join(f'{f}: {w}' for f, w in skipped.items())})")
    options = EngineOptions(threads=threads)
    runners = {}
    for fmt in formats:
        try:
            engine = engine_for_file(bundle.path / bundle.file_entry(fmt).file, fmt, options,
                                     content=bundle.model_bytes(fmt))   # what was hashed
            rng = np.random.default_rng(0)
            for b in batches:
                runner = engine.runner(bundle.spec.input_shape, b)
                runner.inputs[...] = rng.random(runner.inputs.shape, dtype=np.float32)
                for _ in range(3):
                    runner.run()
                runners[fmt, b] = runner
        except EdgecnnError as exc:
            skipped[fmt] = str(exc)
    formats = [f for f in formats if f not in skipped]
    if not formats:
        raise InputError(f"no format of {bundle.path} could be opened here: {skipped}")
    load_before = os.getloadavg()
    best: dict[tuple[str, int], float] = {}
    for _ in range(max(rounds, 1)):
        for b in batches:
            for fmt in formats:
                t = _time_round(runners[fmt, b], seconds / max(rounds, 1))
                best[fmt, b] = min(best.get((fmt, b), t), t)
    result = {"bundle": str(bundle.path.resolve()), "threads": threads, "tie_share": TIE_SHARE,
              "load_average": [round(v, 2) for v in (*load_before, *os.getloadavg())],
              "skipped": skipped, "packages": {f: list(packages_for(f)) for f in formats},
              "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "batches": {}}
    for b in batches:
        ms = {f: round(1000 * best[f, b], 4) for f in formats}
        fastest = min(ms, key=ms.get)
        result["batches"][str(b)] = {"ms_per_batch": ms, "fastest": fastest,
                                     "chosen": choose(ms)}
    if write:
        result["host_file"] = str(write_selection(bundle, result))
    return result


def format_selection(result: dict) -> str:
    threads = result.get("threads", 1)
    lines = [f"format selection for {result['bundle']} with {threads} intra-op "
             f"thread{'s' if threads != 1 else ''} "
             f"(load average {' '.join(map(str, result['load_average'][:3]))})"]
    for b, row in result["batches"].items():
        ms = row["ms_per_batch"]
        fastest = ms[row["fastest"]]
        lines.append(f"  batch {b}:")
        for fmt, t in sorted(ms.items(), key=lambda kv: kv[1]):
            mark = "  <- chosen" if fmt == row["chosen"] else ""
            lines.append(f"    {fmt:<12} {t:9.4f} ms  x{t / fastest:5.2f}{mark}")
    for fmt, why in result["skipped"].items():
        lines.append(f"  skipped {fmt}: {why}")
    if "host_file" in result:
        lines.append(f"host file: {result['host_file']}")
    return "\n".join(lines)


# The runtime's own measurement, at the first start of a bundle on a machine without a host
# file: short, as it delays the first frame (bench --select measures 1 s per format and
# batch size). It runs in a child process, so the run does not keep the memory of the
# formats it does not run (LiteRT for an ONNX choice). EDGECNN_SELECT=off skips it: the
# bundle's default format then (an existing host file is still followed).
FIRST_START_SECONDS = 0.4
FIRST_START_ROUNDS = 4
SELECT_ENV = "EDGECNN_SELECT"
_OFF = ("off", "0", "no", "false")
_ON = ("", "on", "1", "yes", "true")
# measured in this process where the host file could not be written (a read-only home):
# one measurement per process and bundle, not one per source
_MEASURED: dict[str, dict] = {}


def measuring_off() -> bool:
    value = os.environ.get(SELECT_ENV, "").strip().lower()
    if value not in _OFF + _ON:
        raise InputError(f"{SELECT_ENV} must be 'off' (run the bundle's default format "
                         f"without timing) or 'on'; found {os.environ[SELECT_ENV]!r}")
    return value in _OFF


def _wait_for(child: subprocess.Popen, timeout: float) -> tuple[str, str]:
    """The child's output; SIGINT/SIGTERM meanwhile end the child at once and then go to
    the handler before (the run's: its stop), so a stop does not wait for the timing."""
    interrupted: list[int] = []
    previous = {}
    if threading.current_thread() is threading.main_thread():
        def handler(signum, frame):
            interrupted.append(signum)
            child.kill()
            before = previous[signum]
            if callable(before):
                before(signum, frame)
            elif before == signal.SIG_DFL:   # nobody handles it: what it would have done
                signal.signal(signum, signal.SIG_DFL)
                os.kill(os.getpid(), signum)

        previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    from .runstats import stopping

    deadline = time.monotonic() + timeout
    try:
        while True:
            try:   # in short waits: a source opened in a thread of its own gets no signal,
                # and sees its run stop here (retrying communicate loses no output)
                out, err = child.communicate(timeout=min(0.25, max(0.0, deadline
                                                                   - time.monotonic())))
                break
            except subprocess.TimeoutExpired:
                if stopping() and not interrupted:
                    interrupted.append(signal.SIGTERM)
                    child.kill()
                elif time.monotonic() >= deadline:
                    child.kill()
                    child.communicate()
                    raise EdgecnnError(f"the timing took more than {timeout:.0f} s") from None
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    if interrupted:
        raise EdgecnnError(f"stopped by {signal.Signals(interrupted[0]).name}")
    return out, err


def _measure_in_child(bundle: Bundle, batches: tuple[int, ...], timeout: float,
                      threads: int = 1) -> dict:
    """``select_formats`` of ``bundle`` with ``threads`` intra-op threads in a child
    process (``python -P -m`` this module: no import from the working folder), on the
    manifest this process verified (its sha256 is checked there)."""
    command = [sys.executable, "-P", "-m", __name__, str(bundle.path.resolve()),
               ",".join(map(str, batches)), sha256_file(bundle.path / MANIFEST), str(threads)]
    try:
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 stdin=subprocess.DEVNULL, text=True)
    except OSError as exc:
        raise EdgecnnError(f"cannot start {sys.executable}: {exc.strerror}") from None
    out, err = _wait_for(child, timeout)
    if child.returncode != 0:
        lines = [line for line in err.splitlines() if line.strip()]
        raise EdgecnnError(lines[-1] if lines else f"exit code {child.returncode}")
    try:
        result = json.loads(out.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        raise EdgecnnError("the timing process printed no result") from None
    if not isinstance(result, dict) or not isinstance(result.get("batches"), dict):
        raise EdgecnnError("the timing process printed no result")
    return result


def first_start_selection(bundle: Bundle, batch: int = 1, again: bool = False,
                          threads: int = 1) -> dict | None:
    """Time the bundle's formats that passed parity and can run here (at batch 1, 32 and
    ``batch``, with the run's ``threads``), keep the choice in this machine's host file
    and return it as the host file holds it; None where there is nothing to choose (one
    format), EDGECNN_SELECT=off, or the timing failed or was stopped (then a warning: the
    bundle's default runs). ``again``: the host file there was unusable (said so
    already)."""
    from .runstats import stopping

    if measuring_off() or stopping():    # a stopped run does not begin a timing
        return None
    candidates, _ = parity_passed(bundle)
    if len(candidates) < 2:
        return None
    key = str(host_file(bundle, threads))
    if key in _MEASURED:
        return _MEASURED[key]
    batches = tuple(sorted({*DEFAULT_BATCHES, min(max(int(batch), 1), MAX_BATCH)}))
    logger = logging.getLogger(__name__)
    seconds = FIRST_START_SECONDS * len(candidates) * len(batches)
    what = "timing again the formats of %s" if again else \
        "first start of %s on this machine: timing its formats"
    logger.warning("note: " + what + " that passed parity (%s) for about %.0f s to run the "
                   "fastest, once%s ('%s' measures longer; %s=off skips this)", bundle.path,
                   ", ".join(candidates), max(seconds, 1),
                   f" for {threads} intra-op threads" if threads != 1 else "",
                   select_command(threads), SELECT_ENV)
    try:
        result = _measure_in_child(bundle, batches, timeout=max(30.0, 4 * seconds + 15),
                                   threads=threads)
    except EdgecnnError as exc:
        logger.warning("could not time the formats of %s (%s); running its default "
                       "format", bundle.path, exc)
        return None
    nearest = min(batches, key=lambda b: (abs(b - batch), b))
    row = result["batches"][str(nearest)]
    times = ", ".join(f"{f} {t:.3f} ms" for f, t in
                      sorted(row["ms_per_batch"].items(), key=lambda kv: kv[1]))
    left_out = {f: why for f, why in (result.get("skipped") or {}).items()
                if f in candidates}   # passed parity, yet could not be opened
    try:
        where = f"kept in {write_selection(bundle, result)}"
    except InputError as exc:
        where = f"not kept ({exc}): timed again at the next start"
        _MEASURED[key] = result
    logger.warning("note: running %s of %s%s (per batch of %d here: %s%s); %s",
                   row["chosen"], bundle.path,
                   f" with {threads} intra-op threads" if threads != 1 else "", nearest, times,
                   "".join(f"; left out {f}: {why}" for f, why in left_out.items()), where)
    return result


def _main(argv: list[str]) -> int:
    """The child of ``_measure_in_child``: BUNDLE BATCHES MANIFEST_SHA256 THREADS -> one
    JSON line."""
    from .signing import Trust

    try:
        path, batches, sha, threads = argv
        bundle = Bundle.open(path, Trust())   # the parent checked its signature
        if sha256_file(bundle.path / MANIFEST) != sha:
            raise BundleError(f"the manifest of {bundle.path} changed since the run opened it")
        result = select_formats(bundle, batches=[int(b) for b in batches.split(",")],
                                seconds=FIRST_START_SECONDS, rounds=FIRST_START_ROUNDS,
                                threads=int(threads), write=False)
    except (EdgecnnError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
