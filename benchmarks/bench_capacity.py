"""Capacity of a line PC: the camera pipeline against the 2-core bound, one run.

    python benchmarks/bench_capacity.py [BUNDLE=neu] [--format F] [--runs 3]
                                        [--seconds 3] [--select] [--json out.json]
                                        [--cases small,raw,tiled,four,two-tiled]
                                        [--rss-exe /tmp/lean-venv/bin/edgecnn]

For each case it measures, back to back in the same run: decode-only (the source's
capture read loop, frames/s; as the pipeline decodes, MJPEG from its packets, and with
the capture's own BGR decoding, with the bounds of both), inference-only (the engine
runner on the frame's regions, one batched run per frame), the pipeline
(``multi.run_many``, every source in this process) and the ratio of the pipeline's rate
to the 2-core bound 2 / (t_decode + t_infer), t_infer at the batch the runtime uses (one
run on a frame's regions; for several sources: their total rate against the same
per-frame bound), and the lower bound of a decoder that works one frame at a time
(sources / t_decode; see ``run_case``). Preparation alone (fault checks, health features,
the regions' tensors: ``prepare_only``) is timed too, for the bound 2 / (t_decode +
t_prepare + t_infer) that any pipeline doing that work has. Cases: 200x200 MJPG and raw gray (Y800),
1800x1000 MJPG with 45 tiles of 200x200, four 200x200 MJPG sources, two tiled 1800x1000
sources; the tiled case also against a plain single-threaded loop (read, slice, one
``engine.predict`` on the 45 tiles). Then the CPU % of a paced 30 frames/s stream
(200x200 and tiled), peak RSS of ``edgecnn run camera`` with one and four sources (own
processes), and with ``--select`` each shipped bundle's format timings
(``edgecnn.deploy.selection``). The machine may be shared: the load average is recorded before and
after each case, and each case also reports the CPU its threads got (cores used) and the
share of the bound those cores allow (``ratio_to_cores_used``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from bench_runtime import _write_video as write_video

REPO = Path(__file__).resolve().parents[1]
NEU = REPO / "calibration_data" / "neu"
TILES = (5, 9)               # 45 tiles of 200 x 200 in an 1800 x 1000 frame


def _load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def _neu_images() -> list[np.ndarray]:
    files = sorted(NEU.glob("*/*.jpg"))
    if not files:
        sys.exit(f"no calibration images under {NEU}")
    return [cv2.imread(str(f), cv2.IMREAD_GRAYSCALE) for f in files]


def _tiled(images, k: int) -> np.ndarray:
    rows, cols = TILES
    picks = [images[(k * 7 + i) % len(images)] for i in range(rows * cols)]
    return np.vstack([np.hstack(picks[r * cols:(r + 1) * cols]) for r in range(rows)])


def decode_only(video: Path, color: str | None = None) -> dict:
    """The reading thread's decode alone: the capture as the source opens it for a
    consumer of ``color`` (MJPEG: packets decoded by imdecode, as the pipeline does now;
    None: the capture's own BGR decoding, the pipeline before it)."""
    from edgecnn.deploy.captures import PacketCapture, open_file

    cap = open_file(str(video), color)
    path = "packets" if isinstance(cap, PacketCapture) else "capture"
    n, buffer = 0, None
    start, cpu = time.perf_counter(), time.thread_time()
    while True:
        ok, buffer = cap.read(buffer)
        if not ok:
            break
        n += 1
    wall, cpu = time.perf_counter() - start, time.thread_time() - cpu
    cap.release()
    return {"frames": n, "ms": 1000 * wall / n, "cpu_ms": 1000 * cpu / n, "path": path}


def infer_only(engine, spec, regions: int, tile: np.ndarray, seconds: float) -> dict:
    """One batched runner run per frame on the frame's regions (preallocated buffers)."""
    from edgecnn.deploy.preprocess import preprocess_image

    runner = engine.runner(spec.input_shape, regions)
    for i in range(regions):
        preprocess_image(tile, spec, out=runner.inputs[i])
    for _ in range(3):
        runner.run()
    n, start, cpu = 0, time.perf_counter(), time.thread_time()
    while time.perf_counter() - start < seconds:
        runner.run()
        n += 1
    return {"ms": 1000 * (time.perf_counter() - start) / n,
            "cpu_ms": 1000 * (time.thread_time() - cpu) / n}


def prepare_only(bundle, video: Path, tiles=None, frames: int = 100) -> dict:
    """The per-frame work the pipeline must do besides decoding and inference, alone in
    one thread on decoded frames: fault checks, source-health features and the model
    tensors of every region (camera.FramePreparer, as the reading thread runs it)."""
    from edgecnn.deploy.camera import FramePreparer
    from edgecnn.deploy.captures import open_file
    from edgecnn.deploy.faults import FaultConfig, FrameFaultDetector
    from edgecnn.deploy.health import monitor_for

    spec = bundle.spec
    cap = open_file(str(video), spec.image.color)
    images = []
    while len(images) < frames:
        ok, image = cap.read(None)
        if not ok:
            break
        images.append(image)
    cap.release()
    health = monitor_for(bundle, "image")
    prepare = FramePreparer(spec, FrameFaultDetector(FaultConfig()), tiles=tiles,
                            features=health.features if health is not None else None)
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)   # as the pipeline holds OpenCV's pool
    try:
        slots = [prepare(images[i % len(images)], None) for i in range(3)]  # plans, checks
        start, cpu = time.perf_counter(), time.thread_time()
        for i, image in enumerate(images):
            slots[i % 3] = prepare(image, slots[i % 3])
        wall, cpu = time.perf_counter() - start, time.thread_time() - cpu
    finally:
        cv2.setNumThreads(threads)
    return {"ms": 1000 * wall / len(images), "cpu_ms": 1000 * cpu / len(images)}


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def pipeline(bundle, fmt, videos, tiles=None, realtime: bool = False,
             duration: float | None = None) -> dict:
    from edgecnn.deploy.faults import FaultConfig
    from edgecnn.deploy.multi import run_many
    from edgecnn.deploy.options import Logging, plan_from_keywords

    plans = [(bundle, plan_from_keywords("camera", str(v), name=f"cam{i}", fmt=fmt,
                                         tiles=tiles, min_frames=3, realtime=realtime,
                                         duration=duration, faults=FaultConfig()))
             for i, v in enumerate(videos)]
    with tempfile.TemporaryDirectory() as tmp:
        cpu, start = _cpu_s(), time.perf_counter()
        summaries = run_many(plans, Logging(log=str(Path(tmp) / "events.jsonl")))
        wall, cpu = time.perf_counter() - start, _cpu_s() - cpu
    processed = sum(s.processed for s in summaries)
    return {"frames_per_s": processed / wall, "processed": [s.processed for s in summaries],
            "dropped": sum(s.dropped for s in summaries), "wall_s": round(wall, 3),
            "cores_used": round(cpu / wall, 3), "cpu_ms_per_frame": 1000 * cpu / processed,
            "sources_named": sorted({s.source for s in summaries}),
            # per thread, CPU ms per frame (mean over the sources): the stepping thread
            # (inference, health, debouncing, events; and the preparation it took over),
            # each reading thread (decode, fault checks, preparation)
            "main_cpu_ms": _mean(s.extra.get("main_cpu_ms") for s in summaries),
            "reader_cpu_ms": _mean(s.extra.get("reader_cpu_ms") for s in summaries),
            "prepared_by_main": sum(s.extra.get("preprocessed_here") or 0
                                    for s in summaries),
            "inferred_by_reader": sum(s.extra.get("inferred_by_reader") or 0
                                      for s in summaries)}


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return round(sum(values) / len(values), 4) if values else None


def plain_loop(engine, spec, video: Path) -> dict:
    """Read, slice, one ``engine.predict`` on the tiles: one thread, nothing overlapped."""
    from edgecnn.deploy.preprocess import preprocess_image
    from edgecnn.deploy.tiles import plan_regions

    cap = cv2.VideoCapture(str(video))
    batch, regions, n = None, None, 0
    start = time.perf_counter()
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        if regions is None:
            regions = plan_regions(gray.shape, tiles=TILES)
            batch = np.empty((len(regions), *spec.input_shape), np.float32)
        for i, region in enumerate(regions):
            preprocess_image(region.crop(gray), spec, out=batch[i])
        engine.predict(batch)
        n += 1
    cap.release()
    return {"frames_per_s": n / (time.perf_counter() - start)}


def run_case(name, bundle, engine, fmt, videos, tile, regions, seconds, tiles=None) -> dict:
    """Decode-only, inference-only and the pipeline back to back, and the bounds.

    ``bound_2_cores_per_s`` is the issue's bound, 2 / (t_decode + t_infer), frames/s of
    all sources together: t_decode is one frame's decode (wall, the capture alone),
    t_infer one frame's inference at the batch the runtime uses (one runner run on the
    frame's ``regions``: 45 tiles of one frame per run; several sources do not share a
    run). ``bound_serial_decode_per_s`` is what the sources' reading threads can decode
    at all, sources / t_decode (a frame is decoded by one thread: one 1800x1000 source
    cannot go faster than its decoder, whatever the other core does); ``bound_per_s`` is
    the smaller of the two and ``ratio_to_bound`` the pipeline's share of it.

    Decode-only is timed both ways: as the pipeline decodes now (``decode_*``: MJPEG
    packets decoded by imdecode to the model's colour, ``decode_path``) and with the
    capture's own BGR decoding (``decode_bgr_*``, the pipeline before packets); the
    bounds and ratios with the BGR decode are the ``*_bgr`` keys.
    """
    load = _load()
    dec = decode_only(videos[0], bundle.spec.image.color)
    bgr = decode_only(videos[0])
    inf = infer_only(engine, bundle.spec, regions, tile, seconds)
    prep = prepare_only(bundle, videos[0], tiles)
    pipe = pipeline(bundle, fmt, videos, tiles)
    bound = 2000.0 / (dec["ms"] + inf["ms"])
    # the same with the per-frame work any pipeline of this design must do as well
    bound_prep = 2000.0 / (dec["ms"] + prep["ms"] + inf["ms"])
    bound_bgr = 2000.0 / (bgr["ms"] + inf["ms"])
    serial_bgr = len(videos) * 1000.0 / bgr["ms"]
    serial = len(videos) * 1000.0 / dec["ms"]
    # the same bound for the cores the run actually got (a shared machine gives less
    # than two): with c cores, c / (t_decode + t_infer) by CPU time
    cpu_bound = pipe["cores_used"] * 1000.0 / (dec["cpu_ms"] + inf["cpu_ms"])
    row = {"case": name, "sources": len(videos), "regions": regions,
           "infer_batch": f"{regions} region(s) of one frame per run",
           "decode_ms": round(dec["ms"], 4), "decode_per_s": round(1000 / dec["ms"], 1),
           "decode_cpu_ms": round(dec["cpu_ms"], 4), "decode_path": dec["path"],
           "decode_bgr_ms": round(bgr["ms"], 4),
           "decode_bgr_cpu_ms": round(bgr["cpu_ms"], 4),
           "infer_ms": round(inf["ms"], 4), "infer_per_s": round(1000 / inf["ms"], 1),
           "infer_cpu_ms": round(inf["cpu_ms"], 4),
           "prepare_ms": round(prep["ms"], 4), "prepare_cpu_ms": round(prep["cpu_ms"], 4),
           "pipeline_per_s": round(pipe["frames_per_s"], 1),
           "bound_with_prepare_per_s": round(bound_prep, 1),
           "ratio_to_bound_with_prepare": round(pipe["frames_per_s"] / bound_prep, 3),
           "bound_2_cores_per_s": round(bound, 1),
           "ratio_to_2_core_bound": round(pipe["frames_per_s"] / bound, 3),
           "bound_2_cores_per_s_bgr": round(bound_bgr, 1),
           "ratio_to_2_core_bound_bgr": round(pipe["frames_per_s"] / bound_bgr, 3),
           "bound_serial_decode_per_s": round(serial, 1),
           "bound_per_s": round(min(bound, serial), 1),
           "ratio_to_bound": round(pipe["frames_per_s"] / min(bound, serial), 3),
           "bound_serial_decode_per_s_bgr": round(serial_bgr, 1),
           "ratio_to_bound_bgr": round(pipe["frames_per_s"] / min(bound_bgr, serial_bgr),
                                       3),
           "ratio_to_cores_used": round(pipe["frames_per_s"] / cpu_bound, 3),
           # CPU ms per frame: the whole process, and beyond decode + inference alone
           "cpu_ms_per_frame": round(pipe["cpu_ms_per_frame"], 4),
           "overhead_cpu_ms": round(pipe["cpu_ms_per_frame"] - dec["cpu_ms"]
                                    - inf["cpu_ms"], 4),
           # ... and beyond decode, inference and the preparation work together
           "glue_cpu_ms": round(pipe["cpu_ms_per_frame"] - dec["cpu_ms"] - inf["cpu_ms"]
                                - prep["cpu_ms"], 4),
           "pipeline": pipe, "load_before": load, "load_after": _load()}
    return row


def paced_cpu(bundle, fmt, video: Path, tiles=None, seconds: float = 5.0) -> dict:
    run = pipeline(bundle, fmt, [video], tiles, realtime=True, duration=seconds)
    return {"cpu_percent": round(100 * run["cores_used"], 1),
            "frames_per_s": round(run["frames_per_s"], 1), "dropped": run["dropped"]}


def peak_rss_mb(bundle_name: str, videos, exe: str | None = None, tiles=None) -> float:
    """Peak RSS of ``edgecnn run camera`` in its own process (``exe``: an ``edgecnn`` of
    another environment, e.g. a lean one with the runtime's dependencies only; a venv
    that also has the GUI opencv-python loads more). Measured by /usr/bin/time (a small
    parent): the rusage of a child forked from this big benchmark process would count
    the pages it had before its exec."""
    exe = exe or Path(sys.executable).with_name("edgecnn")
    args = [str(exe), "run", "camera", bundle_name, "--quiet"]
    for i, v in enumerate(videos):
        args += ["--source", f"cam{i}={v}"]
    if tiles:
        args += ["--tiles", "x".join(map(str, tiles))]
    if not Path("/usr/bin/time").exists():
        return float("nan")
    proc = subprocess.run(["/usr/bin/time", "-v", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"edgecnn run camera failed: {proc.stderr}")
    line = next(l for l in proc.stderr.splitlines() if "Maximum resident set size" in l)
    return round(int(line.split(":")[1]) / 1024, 1)


CASES = ("small", "raw", "tiled", "four", "two-tiled")


def _line(row: dict) -> str:
    """One case as a line of text (the JSON has everything)."""
    pipe = row["pipeline"]
    text = (f"{row['case']:28s} decode {row['decode_ms']:.3f} ms ({row['decode_path']}; "
            f"BGR capture {row['decode_bgr_ms']:.3f})  infer "
            f"{row['infer_ms']:.3f} ms  pipeline {row['pipeline_per_s']:7.1f}/s  bound "
            f"{row['bound_2_cores_per_s']:7.1f}/s ({row['ratio_to_2_core_bound']:.2f}; BGR "
            f"{row['bound_2_cores_per_s_bgr']:.1f}/s, "
            f"{row['ratio_to_2_core_bound_bgr']:.2f}); "
            f"serial-decode bound {row['bound_serial_decode_per_s']:.1f}/s "
            f"({row['ratio_to_bound']:.2f} of the lower); prepare {row['prepare_ms']:.3f} "
            f"ms, bound with it {row['bound_with_prepare_per_s']:.1f}/s "
            f"({row['ratio_to_bound_with_prepare']:.2f}); CPU {row['cpu_ms_per_frame']:.3f}"
            f" ms/frame (main {pipe['main_cpu_ms']}, reader {pipe['reader_cpu_ms']}, "
            f"overhead {row['overhead_cpu_ms']:.3f}, glue {row['glue_cpu_ms']:.3f}); "
            f"cores {pipe['cores_used']}; "
            f"load {row['load_before'][0]}")
    if "x_plain_loop" in row:
        text += f"; plain loop {row['plain_loop_per_s']}/s, x{row['x_plain_loop']}"
    return text


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle", nargs="?", default="neu")
    parser.add_argument("--format", dest="fmt", default=None)
    parser.add_argument("--runs", type=int, default=3, help="repetitions of every case")
    parser.add_argument("--seconds", type=float, default=2.0,
                        help="inference-only timing per case")
    parser.add_argument("--frames", type=int, default=1500, help="200x200 video frames")
    parser.add_argument("--tiled-frames", type=int, default=300)
    parser.add_argument("--select", action="store_true",
                        help="also time every shipped bundle's formats (edgecnn.deploy.selection)")
    parser.add_argument("--json", dest="json_path", default=None)
    parser.add_argument("--cases", default=",".join(CASES),
                        help=f"comma-separated subset of {','.join(CASES)}")
    parser.add_argument("--rss-exe", default=None,
                        help="the edgecnn executable whose peak RSS is measured (e.g. "
                             "of a lean venv: pip install -e . into a fresh venv)")
    parser.add_argument("--no-paced", action="store_true", help="skip the paced runs")
    parser.add_argument("--no-rss", action="store_true", help="skip the RSS runs")
    parser.add_argument("--capture-decode", action="store_true",
                        help="the pipeline as before MJPEG packets: every frame decoded by "
                             "the capture (BGR), for before/after comparisons (in this "
                             "process only: no RSS runs)")
    args = parser.parse_args(argv)
    if args.capture_decode:
        from edgecnn.deploy import captures

        captures.imdecode_flag = lambda color: None   # no consumer colour: no packets
        args.no_rss = True          # the RSS runs are other processes: they would not be
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        parser.error(f"unknown case(s) {unknown}; expected some of {', '.join(CASES)}")
    from edgecnn.deploy.bundle import Bundle, shipped_bundles
    from edgecnn.deploy.engine import open_for_run

    bundle, engine, entry = open_for_run(args.bundle, "image", args.fmt)
    fmt = entry["format"]
    images = _neu_images()
    result = {"bundle": str(bundle.path), "format": fmt, "cpus": os.cpu_count(),
              "capture_decode": args.capture_decode,
              "load_start": _load(), "cases": [], "runs": args.runs}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        small = [images[i % len(images)] for i in range(args.frames)]
        mjpg = write_video(tmp / "small mjpg.avi", small)
        raw = write_video(tmp / "small raw.avi", small, "raw")
        tiled = write_video(tmp / "tiled mjpg.avi",
                            [_tiled(images, k) for k in range(args.tiled_frames)])
        paced = write_video(tmp / "paced.avi", small[:300], fps=30.0)
        paced_tiled = write_video(tmp / "paced tiled.avi",
                                  [_tiled(images, k) for k in range(150)], fps=30.0)
        tile = images[0]
        for _ in range(args.runs):
            todo = {
                "small": lambda: run_case("200x200 mjpg", bundle, engine, fmt, [mjpg], tile,
                                          1, args.seconds),
                "raw": lambda: run_case("200x200 raw gray", bundle, engine, fmt, [raw],
                                        tile, 1, args.seconds),
                "tiled": lambda: run_case("1800x1000 mjpg 45 tiles", bundle, engine, fmt,
                                          [tiled], tile, 45, args.seconds, TILES),
                "four": lambda: run_case("4 x 200x200 mjpg", bundle, engine, fmt,
                                         [mjpg] * 4, tile, 1, args.seconds),
                "two-tiled": lambda: run_case("2 x 1800x1000 mjpg 45 tiles", bundle,
                                              engine, fmt, [tiled] * 2, tile, 45,
                                              args.seconds, TILES)}
            for case in cases:
                row = todo[case]()
                if case == "tiled":
                    plain = plain_loop(engine, bundle.spec, tiled)["frames_per_s"]
                    row["plain_loop_per_s"] = round(plain, 1)
                    row["x_plain_loop"] = round(row["pipeline_per_s"] / plain, 3)
                result["cases"].append(row)
                print(_line(row), file=sys.stderr, flush=True)
        if not args.no_paced:
            result["paced_30_fps"] = {
                "200x200": paced_cpu(bundle, fmt, paced),
                "1800x1000 45 tiles": paced_cpu(bundle, fmt, paced_tiled, TILES),
                "load": _load()}
        if not args.no_rss:
            exe = args.rss_exe
            result["peak_rss_mb"] = {
                "edgecnn": str(exe or Path(sys.executable).with_name("edgecnn")),
                "one_source": peak_rss_mb(args.bundle, [mjpg], exe),
                "four_sources": peak_rss_mb(args.bundle, [mjpg] * 4, exe),
                "one_tiled_source": peak_rss_mb(args.bundle, [tiled], exe, TILES),
                "two_tiled_sources": peak_rss_mb(args.bundle, [tiled] * 2, exe, TILES)}
    if args.select:
        from edgecnn.deploy.selection import select_formats

        result["formats"] = {}
        for name, path in shipped_bundles().items():
            sel = select_formats(path, write=False)
            default = Bundle.open(path).default_format()
            result["formats"][name] = {
                b: {"default": default, "selected": row["chosen"],
                    "default_x_fastest": round(row["ms_per_batch"][default]
                                               / row["ms_per_batch"][row["fastest"]], 3),
                    "selected_x_fastest": round(row["ms_per_batch"][row["chosen"]]
                                                / row["ms_per_batch"][row["fastest"]], 3),
                    "ms": row["ms_per_batch"]}
                for b, row in sel["batches"].items()}
    result["load_end"] = _load()
    text = json.dumps(result, indent=2)
    if args.json_path:
        Path(args.json_path).write_text(text + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
