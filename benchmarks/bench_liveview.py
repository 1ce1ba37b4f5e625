"""What the live view costs the pipeline: frames/s of a camera run without a viewer and
with one viewer fetching the annotated frame as fast as the page does (every 0.2 s).

    python benchmarks/bench_liveview.py [BUNDLE] [--frames 3000] [--runs 3] [--json out.json]

Runs alternate (none, viewer, none, viewer, ...) on the same MJPG video of the NEU
calibration images, in one invocation; the ratio of the best runs is reported with the
load average. Not a test: numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from bench_runtime import _neu_frames, _write_video
from edgecnn.deploy.httpview import HttpOptions
from edgecnn.deploy.multi import run_many
from edgecnn.deploy.options import Logging, plan_from_keywords


def one_run(bundle: str, video: Path, viewer: bool) -> dict:
    urls, done = [], threading.Event()
    fetched = [0]

    def watch():
        while not urls and not done.is_set():
            time.sleep(0.01)
        while not done.is_set():
            try:
                with urllib.request.urlopen(urls[0].split("?")[0] + "frame/cam.jpg",
                                            timeout=5) as response:
                    response.read()
                    fetched[0] += 1
            except OSError:
                pass
            done.wait(0.2)

    thread = threading.Thread(target=watch, daemon=True) if viewer else None
    if thread:
        thread.start()
    summary, = run_many([(bundle, plan_from_keywords("camera", str(video), name="cam",
                                                     min_frames=1, threshold=0.0))],
                        Logging(), http=HttpOptions("127.0.0.1:0"), on_http=urls.append)
    done.set()
    if thread:
        thread.join()
    return {"viewer": viewer, "frames_per_s": round(summary.fps, 1),
            "frames": summary.processed, "previews_fetched": fetched[0]}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle", nargs="?", default="neu")
    parser.add_argument("--frames", type=int, default=3000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        video = _write_video(Path(tmp) / "frames.avi", _neu_frames(args.frames), "mjpg")
        rows = []
        for _ in range(args.runs):
            for viewer in (False, True):
                rows.append(one_run(args.bundle, video, viewer))
                print(rows[-1], flush=True)
    best = {v: max(r["frames_per_s"] for r in rows if r["viewer"] is v) for v in (False, True)}
    result = {"bundle": args.bundle, "runs": rows, "best_no_viewer": best[False],
              "best_viewer": best[True], "viewer_share": round(best[True] / best[False], 3),
              "load_average": [round(v, 2) for v in os.getloadavg()]}
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
