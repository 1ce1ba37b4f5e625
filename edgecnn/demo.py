"""``edgecnn demo`` / ``make demo``: the main job end to end on embedded defaults.

No arguments, no network: a quick model trained on the shipped calibration images and
exported to int8, the parity table of the shipped NEU bundle, the camera runtime on a
sample video made from calibration images, and the vibration runtime on a calibration
recording. Everything it writes goes to one output folder, named at the end.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from edgecnn.deploy.errors import DataError
from edgecnn.console import stderr_line



def _calibration_root() -> Path:
    from edgecnn.export.calibration import calibration_root

    root = calibration_root()
    if not (root / "neu").is_dir() or not (root / "cwru").is_dir():
        raise DataError(f"the demo needs the shipped calibration_data/ (looked in {root}); "
                        "run it from a clone of edgecnn or set EDGECNN_CALIBRATION_DATA")
    return root


def run_demo(out: str | Path = "demo-output", *, echo: Callable[[str], None] = print,
             log: Callable[[str], None] = stderr_line, epochs: int = 30) -> dict:
    """Run the five demo steps, writing into ``out``; returns where everything is."""
    from edgecnn.deploy.bundle import shipped_bundles
    from edgecnn.deploy.samplevideo import make_sample_video
    from edgecnn.deploy.options import Logging, plan_from_keywords
    from edgecnn.deploy.run import run_logged
    from edgecnn.export import export_model
    from edgecnn.export.parity import run_parity
    from edgecnn.training import TrainConfig, train

    calib = _calibration_root()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    shipped = shipped_bundles()
    missing = sorted({"neu", "cwru"} - set(shipped))
    if missing:
        raise DataError(f"shipped bundle(s) {', '.join(missing)} are not installed "
                        f"(expected in edgecnn/deploy/bundles/)")
    started = time.perf_counter()
    where: dict[str, str] = {}

    def step(number: int, title: str) -> None:
        echo(f"\n== {number}/5  {title}  ({time.perf_counter() - started:.0f} s)")

    step(1, f"train a small edge-image model on {calib / 'neu'} ({epochs} epochs)")
    echo("   (120 calibration images: this shows the workflow; its accuracy is on images it "
         "trained on, not a test score)")
    trained = train(TrainConfig(task="neu", data=str(calib / "neu"), out=str(out / "model"),
                                image_size=64, epochs=epochs), log=log)
    echo(f"   validation accuracy {trained.metrics['accuracy'] * 100:.1f} % "
         f"(n={trained.metrics['n']}); report: {out / 'model' / 'report'}")
    where["trained model"] = str(out / "model")

    step(2, "export it to float32 and int8 ONNX, verified against Keras")
    exported = export_model(out / "model", out / "bundle", formats="onnx,onnx-int8", log=log)
    echo(exported.format())
    where["exported bundle"] = str(out / "bundle")

    step(3, "accuracy parity of the shipped NEU bundle (float vs int8) on calibration images")
    parity = run_parity("neu", calib / "neu", log=log)
    echo(parity.format())

    step(4, "camera runtime: shipped NEU int8 bundle on a sample line video")
    video = make_sample_video(out / "line video.avi", calib / "neu", per_class=3, hold=5)
    camera_log = out / "camera-events.jsonl"
    summary = run_logged("neu", plan_from_keywords("camera", str(video), min_frames=3),
                         Logging(log=str(camera_log)), echo=lambda line: echo("   " + line))
    echo(summary.format())
    where["camera events"] = str(camera_log)

    step(5, "vibration runtime: shipped CWRU int8 bundle on a calibration recording")
    recording = sorted((calib / "cwru").glob("12k_Drive_End_IR014_*.mat"))[0]
    vibration_log = out / "vibration-events.jsonl"
    summary = run_logged("cwru", plan_from_keywords("vibration", str(recording)),
                         Logging(log=str(vibration_log)), echo=lambda line: echo("   " + line))
    echo(summary.format())
    where["vibration events"] = str(vibration_log)

    echo(f"\ndemo finished in {time.perf_counter() - started:.0f} s; everything is in {out}:")
    for name, path in where.items():
        echo(f"  {name:<17} {path}")
    echo(f"  summary of events: edgecnn events summary {camera_log}")
    return where
