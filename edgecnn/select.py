"""``edgecnn bench BUNDLE --select``: time every format that passed parity on this machine
and record the fastest per batch size in this machine's host file (``deploy/hosts.py``).

Formats are timed in interleaved rounds (each round times every format once; the best
round counts), so a neighbour's burst on a shared machine hits all formats alike rather
than the one that happened to run then. Within 5 % of the fastest, the format needing
fewer packages is chosen (``hosts.choose``).
"""

from __future__ import annotations

import os
import time

import numpy as np

from edgecnn.deploy.bundle import Bundle
from edgecnn.deploy.engine import EngineOptions, engine_for_file
from edgecnn.deploy.errors import EdgecnnError, InputError
from edgecnn.deploy.hosts import (
    TIE_SHARE,
    choose,
    int8_exact_here,
    missing_packages,
    packages_for,
    write_selection,
)

DEFAULT_BATCHES = (1, 32)


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
    from edgecnn.bench import check_seconds, choose_formats

    bundle = bundle if isinstance(bundle, Bundle) else Bundle.open(bundle)
    check_seconds(seconds)
    wanted = None if formats is None else choose_formats(bundle, formats)
    batches = sorted({int(b) for b in batches})
    if not batches or batches[0] < 1:
        raise InputError(f"--select batch sizes must be whole numbers >= 1; found {batches}")
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
            engine = engine_for_file(bundle.file(fmt), fmt, options)
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
    result = {"bundle": str(bundle.path), "threads": threads, "tie_share": TIE_SHARE,
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
    lines = [f"format selection for {result['bundle']} "
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
