"""`edgecnn run camera|vibration` and `edgecnn events summary`: clean errors, clean stops."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from edgecnn.cli import main
from runtime_helpers import (
    CALIBRATION,
    gray_frame,
    level_for_class,
    make_image_bundle,
    make_signal_bundle,
    neu_images,
    write_video,
)

RECORDING = CALIBRATION / "cwru" / "12k_Drive_End_B007_1_119.mat"


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli run")
    image = make_image_bundle(root / "image bundle", size=32)
    sig = make_signal_bundle(root / "signal bundle", window_length=2048)
    video = write_video(root / "line video.avi",
                        [gray_frame(level_for_class(c)) for c in [1] * 4 + [3] * 4])
    return root, image, sig, video


def _cli(capsys, *args) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def test_camera_and_events_summary(capsys, work, tmp_path):
    root, image, _, video = work
    log = tmp_path / "events.jsonl"
    code, out, err = _cli(capsys, "run", "camera", image, "--source", video, "--log", log,
                          "--min-frames", "2", "--json", tmp_path / "s.json",
                          "--ignore-class", "crazing", "--threads", "1", "--no-spinning")
    assert code == 0, err
    assert "inclusion" in out and "pitted_surface" in out and "latency p50" in out
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["read"] == summary["processed"] == 8
    assert summary["events"] == {"inclusion": 1, "pitted_surface": 1}
    code, out, _ = _cli(capsys, "events", "summary", log)
    assert code == 0 and "2 events" in out and "inclusion" in out
    code, out, _ = _cli(capsys, "events", "summary", log, "--json")
    assert json.loads(out)["by_class"] == {"inclusion": 1, "pitted_surface": 1}


def test_vibration_on_a_calibration_recording(capsys, work, tmp_path):
    _, _, sig, _ = work
    db = tmp_path / "events.db"
    code, out, err = _cli(capsys, "run", "vibration", sig, "--source", RECORDING,
                          "--hop", "1024", "--threshold", "0", "--sqlite", db, "--quiet")
    assert code == 0, err
    assert "vibration run" in out and "end of source" in out
    code, out, _ = _cli(capsys, "events", "summary", db)
    assert code == 0 and "events from" in out


def _bad_cases(root, image, sig, video):
    tampered = make_image_bundle(root / "tampered", size=32)
    with open(tampered / "model.onnx", "ab") as handle:
        handle.write(b"\0")
    text = root / "not a video.avi"
    text.write_text("hello")
    return [
        (["run", "camera", image, "--source", root / "missing.mp4"], "not a file"),
        (["run", "camera", image, "--source", text], "cannot open"),
        (["run", "camera", image, "--source", "rtsp://127.0.0.1:9/none",
          "--connect-timeout", "0"], "cannot open"),
        (["run", "camera", sig, "--source", video], "vibration (signal) model"),
        (["run", "vibration", image, "--source", RECORDING], "holds an image model"),
        (["run", "camera", tampered, "--source", video], "does not match its manifest"),
        (["run", "camera", root / "no bundle", "--source", video], "no bundle"),
        (["run", "camera", image, "--source", video, "--roi", "1,2,3"], "--roi"),
        (["run", "camera", image, "--source", video, "--roi", "0,0,500,500"], "does not fit"),
        (["run", "camera", image, "--source", video, "--ignore-class", "good"],
         "unknown class"),
        (["run", "camera", image, "--source", video, "--class-threshold", "scratches"],
         "CLASS=0.9"),
        (["run", "camera", image, "--source", video, "--format", "tflite"], "no 'tflite'"),
        (["run", "vibration", sig, "--source", root / "missing.mat"], "does not exist"),
        (["run", "vibration", sig, "--source", text], "unsupported recording"),
        (["run", "vibration", sig, "--source", "tcp://nohost"], "tcp://host:port"),
        (["events", "summary", root / "none.jsonl"], "does not exist"),
    ]


def test_bad_input_exits_2_without_traceback(capsys, work):
    root, image, sig, video = work
    for args, message in _bad_cases(root, image, sig, video):
        code, out, err = _cli(capsys, *args)
        assert code == 2, (args, out, err)
        assert err.startswith("error: ") and message in err, (args, err)
        assert "Traceback" not in err + out


def test_bad_bundle_in_a_real_process(work):
    root, image, sig, video = work
    proc = subprocess.run([sys.executable, "-c", "from edgecnn.cli import main; main()",
                           "run", "vibration", str(image), "--source", str(RECORDING)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "error:" in proc.stderr


def test_a_file_that_is_no_video_is_one_line_without_decoder_noise(work, tmp_path):
    root, image, _, _ = work
    (tmp_path / "text.jpg").write_text("not a picture\n")
    proc = subprocess.run([sys.executable, "-c", "from edgecnn.cli import main; main()",
                           "run", "camera", str(image), "--source", str(tmp_path / "text.jpg")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_cleanly_with_summary(work, tmp_path, sig):
    root, _, _, _ = work
    bundle = make_image_bundle(tmp_path / "conv", size=64, kind="conv")
    frames = [img for _, img in neu_images(1)] * 40   # 240 frames, 10 s at 25 fps
    video = write_video(tmp_path / "long.avi", frames, fps=25.0)
    log = tmp_path / "events.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-c", "from edgecnn.cli import main; main()", "run", "camera",
         str(bundle), "--source", str(video), "--realtime", "--min-frames", "1",
         "--threshold", "0", "--log", str(log), "--fsync", "every",
         "--json", str(tmp_path / "s.json")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()            # first event printed: the run is live
        assert first.strip(), proc.stderr.read() if proc.poll() is not None else ""
        time.sleep(0.3)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err and sig.name in out
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["stop_reason"] == sig.name and 0 < summary["read"] < 240
    lines = log.read_text().splitlines()
    assert lines and all(json.loads(line)["type"] in ("defect", "fault") for line in lines)
