"""Several sources through the CLI, fair scheduling, the host format selection and a
camera process that does not load the vibration path (SciPy)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edgecnn.cli import main
from edgecnn.deploy.bundle import MANIFEST
from edgecnn.deploy.frames import Frame, FrameSource
from edgecnn.deploy.multi import run_many
from edgecnn.deploy.options import Logging, plan_from_keywords
from edgecnn.deploy.plans import named_source, per_source
from runtime_helpers import NEU_CLASSES, gray_frame, level_for_class, make_image_bundle, write_video


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_image_bundle(tmp_path_factory.mktemp("capacity") / "bundle", size=32)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("capacity videos")
    a = write_video(root / "line a.avi", [gray_frame(level_for_class(c))
                                          for c in (1, 2) for _ in range(4)])
    b = write_video(root / "line b.avi", [gray_frame(level_for_class(c))
                                          for c in (4, 3, 1) for _ in range(4)])
    return a, b


def _cli(capsys, *args) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def test_two_named_sources_through_the_cli(capsys, bundle, videos, tmp_path):
    a, b = videos
    log = tmp_path / "events.jsonl"
    code, out, err = _cli(capsys, "run", "camera", bundle, "--source", f"east={a}",
                          "--source", b, "--tiles", "1x2", "--tiles", "none",
                          "--min-frames", "2", "--log", log, "--json", tmp_path / "s.json")
    assert code == 0, err
    assert "camera run on east" in out and f"camera run on {b}" in out
    assert "[east]" in out                   # each printed event names its source
    summaries = json.loads((tmp_path / "s.json").read_text())["sources"]
    assert [s["source"] for s in summaries] == ["east", str(b)]
    assert [s["processed"] for s in summaries] == [8, 12]
    assert [s["extra"]["regions"] for s in summaries] == [2, 1]   # per-source tiles
    events = [json.loads(line) for line in log.read_text().splitlines()]
    east = [e for e in events if e["source"] == "east"]
    other = [e for e in events if e["source"] == str(b)]
    assert len(east) + len(other) == len(events)
    assert [e["class"] for e in east if e["tile"] == 0] == [NEU_CLASSES[1], NEU_CLASSES[2]]
    assert {e["tile"] for e in east} == {0, 1}
    assert [e["class"] for e in other] == [NEU_CLASSES[i] for i in (4, 3, 1)]
    assert all("tile" not in e for e in other)


def test_per_source_options_are_checked(capsys, bundle, videos):
    a, b = videos
    code, _, err = _cli(capsys, "run", "camera", bundle, "--source", a, "--source", b,
                        "--source", f"third={a}", "--tiles", "1x2", "--tiles", "2x2")
    assert code == 2 and "--tiles was given 2 times for 3 sources" in err
    code, _, err = _cli(capsys, "run", "camera", bundle, "--source", a, "--source", a)
    assert code == 2 and "two sources are named" in err and "Traceback" not in err
    code, _, err = _cli(capsys, "run", "camera", bundle, "--source", f"x={a}",
                        "--source", f"x={b}")
    assert code == 2 and "'x'" in err
    # one stream (or camera) under two names: the second could never open it
    code, _, err = _cli(capsys, "run", "camera", bundle, "--source", "x=udp://127.0.0.1:9",
                        "--source", "y=udp://127.0.0.1:9 ")
    assert code == 2 and "is given as two sources" in err and "Traceback" not in err
    code, _, err = _cli(capsys, "run", "camera", bundle, "--source", f"x={a}",
                        "--source", f"y={a}", "--max-frames", "2", "--quiet")
    assert code == 0, err                     # a file may be read twice


def test_source_names_and_values():
    assert named_source("cam1=rtsp://host/s?a=b") == ("cam1", "rtsp://host/s?a=b")
    assert named_source("rtsp://host/s?a=b") == (None, "rtsp://host/s?a=b")
    pipeline = "videotestsrc ! video/x-raw,width=200 ! appsink"
    assert named_source(pipeline) == (None, pipeline)
    assert named_source("0") == (None, "0")
    assert per_source(["2x2"], 3, "--tiles") == ["2x2"] * 3
    assert per_source(["a", "none"], 2, "--x") == ["a", None]
    assert per_source([], 2, "--x") == [None, None]


class AlwaysReady(FrameSource):
    """A source that always has the next frame ready (faster than anything downstream)."""

    name = "always ready"

    def __init__(self) -> None:
        super().__init__(slots=0)
        self.frame = Frame()
        self.frame.image = gray_frame(level_for_class(2))
        self.taken = 0

    def read(self, timeout: float = 0.5):
        frame = self.frame
        if frame.prepared is not self.prepare:
            frame.work = self.prepare(frame.image, frame.work, False)
            frame.prepared = self.prepare
        frame.index, frame.time = self.taken, time.monotonic()
        self.taken += 1
        return frame


def test_a_paced_source_is_served_beside_one_that_is_always_ready(bundle, tmp_path):
    slow = write_video(tmp_path / "paced.avi",
                       [gray_frame(level_for_class(c)) for c in (1, 4) for _ in range(6)])
    order = []
    fast, paced = run_many(
        [(bundle, plan_from_keywords("camera", AlwaysReady(), name="fast", min_frames=1,
                                     duration=2.0, probabilities=False)),
         (bundle, plan_from_keywords("camera", str(slow), name="paced", realtime=True,
                                     min_frames=1))],
        Logging(), on_event=lambda e: order.append(e["source"]))
    # the paced source (25 frames/s) ends after about 0.5 s, long before the other one:
    # had the always-ready source kept the stepping thread, it would have got at most
    # its last frame, every other one overwritten in its latest-frame slot (a loaded
    # machine drops a few anyway, one source alone too)
    assert paced.stop_reason == "end of source" and fast.stop_reason == "duration reached"
    assert paced.processed + paced.dropped == 12
    assert paced.processed >= 4, paced
    assert fast.processed > paced.processed
    assert order.count("paced") == 2 and "fast" in order


def _with_formats(src, tmp_path):
    """The test bundle with a second and a third format entry on the same model file:
    'onnx-int8' (the bundle's default) and 'tflite-fp16' (failed parity; never loaded)."""
    import shutil

    target = tmp_path / "formats bundle"
    shutil.copytree(src, target)
    manifest = json.loads((target / MANIFEST).read_text())
    entry = manifest["files"]["onnx"]
    manifest["files"]["onnx-int8"] = dict(entry, format="onnx-int8")
    manifest["files"]["tflite-fp16"] = dict(entry, format="tflite-fp16")
    manifest["verification"] = {"onnx": {"passed": True}, "onnx-int8": {"passed": True},
                                "tflite-fp16": {"passed": False}}
    (target / MANIFEST).write_text(json.dumps(manifest))
    return target


def test_bench_select_writes_the_host_file_and_the_runtime_follows_it(
        capsys, bundle, videos, tmp_path, monkeypatch):
    config = tmp_path / "config"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config))
    target = _with_formats(bundle, tmp_path)
    code, out, err = _cli(capsys, "bench", target, "--select", "--select-batches", "1,4",
                          "--max-seconds", "0.05", "--json", tmp_path / "select.json")
    assert code == 0, err
    assert "skipped tflite-fp16: failed parity" in out
    files = list((config / "edgecnn" / "hosts").glob("*/*.json"))
    assert len(files) == 1 and not list(target.glob("*host*"))
    host = json.loads(files[0].read_text())
    assert set(host["batches"]) == {"1", "4"}
    assert set(host["batches"]["1"]["ms_per_batch"]) == {"onnx", "onnx-int8"}
    assert host["fingerprint"] == files[0].parent.name

    def run(*extra):
        code, _, err = _cli(capsys, "run", "camera", target, "--source", videos[0],
                            "--quiet", "--json", tmp_path / "run.json", *extra)
        assert code == 0, err
        return json.loads((tmp_path / "run.json").read_text())["model_format"]

    # the choice is honoured whichever it is: make it the non-default one
    for row in host["batches"].values():
        row["chosen"] = "onnx"
    files[0].write_text(json.dumps(host))
    assert run() == "onnx"
    assert run("--format", "onnx-int8") == "onnx-int8"    # --format wins
    # the choice for about as many regions as a frame has: --tiles' count, and --grid's
    # windows (known from the file's first frame; they once followed batch 1's choice)
    host["batches"]["1"]["chosen"], host["batches"]["4"]["chosen"] = "onnx-int8", "onnx"
    files[0].write_text(json.dumps(host))
    assert run() == "onnx-int8" and run("--tiles", "2x2") == "onnx"
    assert run("--grid", "64x48:32") == "onnx"             # 6 windows of a 128x96 frame
    for row in host["batches"].values():                   # edited to one that failed parity
        row["chosen"] = "tflite-fp16"
    files[0].write_text(json.dumps(host))
    assert run() == "onnx-int8"
    files[0].unlink()
    assert run() == "onnx-int8"                            # no host file: the default

    monkeypatch.setenv("XDG_CONFIG_HOME", str(target))     # never inside the bundle
    code, _, err = _cli(capsys, "bench", target, "--select", "--max-seconds", "0.05")
    assert code == 2 and "inside the bundle" in err


def test_a_choice_holds_for_the_thread_count_it_was_timed_with(
        capsys, caplog, bundle, videos, tmp_path, monkeypatch):
    """Formats scale differently with threads: a run with --threads 2 does not follow the
    choice timed with one thread; ``bench --select --threads 2`` keeps its own file,
    which only runs with 2 threads follow; a file that says another count is ignored."""
    import logging

    config = tmp_path / "config"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config))
    target = _with_formats(bundle, tmp_path)
    hosts_dir = config / "edgecnn" / "hosts"
    for threads in ("1", "2"):
        code, _, err = _cli(capsys, "bench", target, "--select", "--select-batches", "1",
                            "--max-seconds", "0.05", "--threads", threads)
        assert code == 0, err
    one = [f for f in hosts_dir.glob("*/*.json") if ".threads-" not in f.name]
    two = list(hosts_dir.glob("*/*.threads-2.json"))
    assert len(one) == len(two) == 1
    assert json.loads(one[0].read_text())["threads"] == 1
    assert json.loads(two[0].read_text())["threads"] == 2

    def choose(path, fmt, **extra):
        host = json.loads(path.read_text())
        host["batches"]["1"]["chosen"] = fmt
        path.write_text(json.dumps({**host, **extra}))

    def run(*extra):
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            code, _, err = _cli(capsys, "run", "camera", target, "--source", videos[0],
                                "--quiet", "--json", tmp_path / "run.json", *extra)
        assert code == 0, err
        return json.loads((tmp_path / "run.json").read_text())["model_format"], caplog.text

    choose(one[0], "onnx")
    choose(two[0], "onnx-int8")
    assert run()[0] == "onnx" and run("--threads", "2")[0] == "onnx-int8"
    said = json.loads((tmp_path / "run.json").read_text())["extra"]["format_choice"]
    assert said == {"by": "host file", "host_file": str(two[0]), "threads": 2}
    choose(one[0], "onnx-int8")
    choose(two[0], "onnx")
    assert run()[0] == "onnx-int8" and run("--threads", "2")[0] == "onnx"
    two[0].unlink()                  # no 2-thread choice: the 1-thread one is not taken
    choose(one[0], "onnx")
    assert run()[0] == "onnx"
    fmt, log = run("--threads", "2")
    assert fmt == "onnx-int8" and "is for 1 intra-op thread, not 2" in log
    said = json.loads((tmp_path / "run.json").read_text())["extra"]["format_choice"]
    assert said == {"by": "bundle default", "threads": 2}
    assert "'edgecnn bench BUNDLE --select --threads 2' makes one" in log
    assert "is for 1" not in run("--threads", "2")[1]           # said once
    choose(one[0], "onnx", threads=2)     # a file saying another count is not followed
    fmt, log = run()
    assert fmt == "onnx-int8" and "timed with 2 intra-op threads, not 1 intra-op thread; " \
        "run 'edgecnn bench BUNDLE --select' again" in log
    two[0].write_bytes(b"\xff")          # unreadable: the advice names its thread count
    fmt, log = run("--threads", "2")
    assert fmt == "onnx-int8" and "--select --threads 2' again" in log


def _timing_on(monkeypatch, bundle, tmp_path):
    """First-start timing on (conftest turns it off), an empty config folder, and a copy
    of ``bundle`` with more formats: (config folder, bundle copy)."""
    monkeypatch.delenv("EDGECNN_SELECT")
    config = tmp_path / "config"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config))
    return config, _with_formats(bundle, tmp_path)


def _camera_run(capsys, caplog, target, video, tmp_path):
    """``edgecnn run camera`` of one video: the format it ran and what it logged."""
    import logging

    caplog.clear()
    with caplog.at_level(logging.WARNING):
        code, _, err = _cli(capsys, "run", "camera", target, "--source", video, "--quiet",
                            "--json", tmp_path / "run.json")
    assert code == 0, err
    assert "Traceback" not in err
    return json.loads((tmp_path / "run.json").read_text())["model_format"], caplog.text



def test_a_run_stopped_while_its_sources_open_begins_no_timing(bundle, tmp_path, monkeypatch):
    # SIGTERM while the first source's formats were timed: the next source would time its
    # own for seconds more before the stop is seen
    from edgecnn.deploy import selection
    from edgecnn.deploy.bundle import Bundle
    from edgecnn.deploy.runstats import StopFlag, stop_on_signals

    _, target = _timing_on(monkeypatch, bundle, tmp_path)
    started = []
    monkeypatch.setattr(selection, "_measure_in_child",
                        lambda *args, **kwargs: started.append(1) or {"batches": {}})
    flag = StopFlag()
    with stop_on_signals(flag):
        flag.set("SIGTERM")
        assert selection.first_start_selection(Bundle.open(target)) is None
    assert not started


def test_a_first_start_without_a_host_file_times_the_formats_and_keeps_the_choice(
        capsys, caplog, bundle, videos, tmp_path, monkeypatch):
    """No host file on this machine: the run times the formats that passed parity (in a
    child process), runs the fastest and keeps the choice, so the next start does not
    measure; a config folder that cannot be written still gets the measured format."""
    config, target = _timing_on(monkeypatch, bundle, tmp_path)

    def run():
        return _camera_run(capsys, caplog, target, videos[0], tmp_path)

    fmt, log = run()
    assert "first start of" in log and "(onnx, onnx-int8)" in log   # not the failed one
    files = list((config / "edgecnn" / "hosts").glob("*/*.json"))
    assert len(files) == 1 and f"kept in {files[0]}" in log
    host = json.loads(files[0].read_text())
    assert set(host["batches"]) == {"1", "32"}
    assert set(host["batches"]["1"]["ms_per_batch"]) == {"onnx", "onnx-int8"}
    assert fmt == host["batches"]["1"]["chosen"]
    assert run() == (fmt, "")                                   # kept: no second timing

    blocked = tmp_path / "not a folder"
    blocked.write_text("")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(blocked))
    fmt, log = run()
    assert "first start of" in log and "not kept" in log and fmt in ("onnx", "onnx-int8")
    monkeypatch.setenv("EDGECNN_SELECT", "off")                   # off: the default, silent
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "other config"))
    assert run() == ("onnx-int8", "")
    assert not (tmp_path / "other config").exists()


def test_an_unusable_host_file_is_timed_again_and_a_failed_format_never_runs(
        capsys, caplog, bundle, videos, tmp_path, monkeypatch):
    """A host file of the wrong shape or choosing a format a run may not pick (failed
    parity, absent) is timed again and rewritten; with the timing off, a format that
    passed parity runs instead, never the failed one."""
    config, target = _timing_on(monkeypatch, bundle, tmp_path)

    def run():
        return _camera_run(capsys, caplog, target, videos[0], tmp_path)

    run()
    host_path = next((config / "edgecnn" / "hosts").glob("*/*.json"))
    good = json.loads(host_path.read_text())
    for batches, said in (([1, 2], "no choice of format"), ("x", "no choice of format"),
                          ({"\u00b2": {"chosen": "onnx"}}, "no choice of format"),
                          ({"1": {"chosen": ["onnx"]}}, "no choice of format"),
                          ({"1": {"chosen": "tflite-fp16"}}, "chose 'tflite-fp16'"),
                          ({"1": {"chosen": "evil"}}, "chose 'evil'")):
        host_path.write_text(json.dumps({**good, "batches": batches}))
        fmt, log = run()
        assert said in log and fmt in ("onnx", "onnx-int8"), log
        assert "timing again the formats of" in log or "first start of" in log
        assert json.loads(host_path.read_text())["batches"].keys() == {"1", "32"}  # rewritten

    monkeypatch.setenv("EDGECNN_SELECT", "off")
    host_path.write_text(json.dumps({**good, "batches": {"1": {"chosen": "tflite-fp16"}}}))
    fmt, log = run()
    assert fmt == "onnx-int8" and "not using it" in log and "timing" not in log
    manifest = json.loads((target / MANIFEST).read_text())     # the default failed parity
    manifest["verification"]["onnx-int8"] = {"passed": False, "failures": ["edited"]}
    (target / MANIFEST).write_text(json.dumps(manifest))
    fmt, log = run()
    assert fmt == "onnx" and "not running onnx-int8" in log and "failed parity" in log
    # and the summary says it is a fallback, not the bundle's default
    said = json.loads((tmp_path / "run.json").read_text())["extra"]["format_choice"]
    assert said == {"by": "fallback", "instead_of": "onnx-int8", "threads": 1}

    monkeypatch.setenv("EDGECNN_SELECT", "sometimes")
    code, _, err = _cli(capsys, "run", "camera", target, "--source", videos[0], "--quiet")
    assert code == 2 and "EDGECNN_SELECT must be 'off'" in err and "Traceback" not in err


def test_the_timing_process_imports_nothing_from_the_working_folder(
        bundle, videos, tmp_path, monkeypatch):
    """The first start's child runs with ``python -P``: a numpy.py in the folder the run
    starts from (a service's writable working folder) is never imported."""
    monkeypatch.delenv("EDGECNN_SELECT")
    config = tmp_path / "config"
    target = _with_formats(bundle, tmp_path)
    cwd = tmp_path / "writable working folder"
    cwd.mkdir()
    marker = tmp_path / "imported"
    (cwd / "numpy.py").write_text(f"open({str(marker)!r}, 'w').write('x')\n"
                                  "raise ImportError('the working folder was imported')\n")
    exe = Path(sys.executable).with_name("edgecnn")
    if not exe.exists():
        pytest.skip("no edgecnn console script beside this python")
    proc = subprocess.run([str(exe), "run", "camera", str(target), "--source",
                           str(videos[0]), "--quiet"], capture_output=True, text=True,
                          cwd=cwd, timeout=300, env={**os.environ,
                                                     "XDG_CONFIG_HOME": str(config)})
    assert proc.returncode == 0, proc.stderr
    assert "first start of" in proc.stderr and "kept in" in proc.stderr, proc.stderr
    assert not marker.exists()


def test_serve_check_and_bench_say_what_a_run_would_pick_without_timing(
        capsys, bundle, videos, tmp_path, monkeypatch):
    monkeypatch.delenv("EDGECNN_SELECT")
    config = tmp_path / "config"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config))
    target = _with_formats(bundle, tmp_path)
    toml = tmp_path / "line.toml"
    toml.write_text(f"[[camera]]\nname = \"a\"\nbundle = {str(target)!r}\n"
                    f"source = {str(videos[0])!r}\n")
    code, out, err = _cli(capsys, "serve", "--check", toml)
    assert code == 0, err
    assert "[onnx-int8; the first start times its formats]" in out
    assert not config.exists()                                  # a check times nothing
    code, out, err = _cli(capsys, "bench", target, "--no-keras", "--max-seconds", "0.05",
                          "--formats", "onnx")
    assert code == 0, err
    assert "a run without --format runs here: onnx-int8 (no host file for 1 intra-op " \
        "thread: the bundle's default until the first run here times its formats" in out
    assert not config.exists()
    code, _, err = _cli(capsys, "bench", target, "--select", "--select-batches", "1,2",
                        "--max-seconds", "0.05")
    assert code == 0, err
    host_path = next((config / "edgecnn" / "hosts").glob("*/*.json"))
    host = json.loads(host_path.read_text())
    host["batches"] = {"1": {"chosen": "onnx"}, "2": {"chosen": "evil"}}
    host_path.write_text(json.dumps(host))
    code, out, err = _cli(capsys, "bench", target, "--no-keras", "--max-seconds", "0.05",
                          "--formats", "onnx")
    assert code == 0, err
    assert "runs here: onnx at batch 1, onnx-int8 at batch 32 (this machine's host file" \
        in out                                  # batch 32: nearest 2 chose 'evil': default
    code, _, err = _cli(capsys, "bench", target, "--select", "--select-batches", "1,5000")
    assert code == 2 and "batch sizes must be whole numbers 1-1024" in err


def test_bench_select_chooses_among_formats_and_refuses_what_it_would_ignore(
        capsys, bundle, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    target = _with_formats(bundle, tmp_path)
    code, out, err = _cli(capsys, "bench", target, "--select", "--select-batches", "1",
                          "--max-seconds", "0.05", "--formats", "onnx", "--json",
                          tmp_path / "one.json")
    assert code == 0, err
    assert set(json.loads((tmp_path / "one.json").read_text())["batches"]["1"]
               ["ms_per_batch"]) == {"onnx"}
    code, _, err = _cli(capsys, "bench", target, "--select", "--formats", "tflite-fp16")
    assert code == 2 and "cannot choose tflite-fp16 (failed parity" in err
    code, _, err = _cli(capsys, "bench", target, "--select", "--batch", "8")
    assert code == 2 and "--batch belong to the full bench" in err
    for seconds in ("nan", "inf", "0"):
        for extra in ((), ("--select",)):
            code, _, err = _cli(capsys, "bench", target, *extra, "--max-seconds", seconds)
            assert code == 2 and "--max-seconds must be a positive number" in err


def test_full_8_bit_int8_is_not_the_default_on_an_x86_cpu_without_vnni(
        bundle, tmp_path, monkeypatch, caplog):
    """ONNX Runtime's int8 kernels on x86 without VNNI add pairs of products in int16,
    which 8-bit weights can overflow: there the runtime's default skips such a file for
    the next format that passed parity, says so, and runs it only when asked by name."""
    import logging

    from edgecnn.deploy import hosts
    from edgecnn.deploy.bundle import Bundle
    from edgecnn.deploy.engine import open_for_run
    from edgecnn.deploy.selection import parity_passed

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))   # no host file
    monkeypatch.setattr(hosts.platform, "machine", lambda: "x86_64")
    target = _with_formats(bundle, tmp_path)
    manifest = json.loads((target / MANIFEST).read_text())
    manifest["files"]["onnx-int8"]["quantization"] = {"reduce_range": False}
    (target / MANIFEST).write_text(json.dumps(manifest))
    full = Bundle.open(target)

    monkeypatch.setattr(hosts, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    with caplog.at_level(logging.WARNING):
        assert hosts.selected_format(full) == ("onnx", None)
    assert "--reduce-range" in caplog.text and "--format onnx-int8" in caplog.text
    assert "onnx-int8" not in parity_passed(full)[0]          # bench --select skips it
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        _, _, entry = open_for_run(full, "image", "onnx-int8")  # by name: it runs
    assert entry["format"] == "onnx-int8" and "may not classify as export verified" in \
        caplog.text

    monkeypatch.setattr(hosts, "cpu_flags", lambda: frozenset({"avx2", "avx512_vnni"}))
    assert hosts.selected_format(full) == ("onnx-int8", None)
    monkeypatch.setattr(hosts, "cpu_flags", lambda: None)       # cannot tell: not assumed
    assert hosts.selected_format(full) == ("onnx", None)
    monkeypatch.setattr(hosts, "cpu_flags", lambda: frozenset({"avx2"}))
    seven_bit = Bundle.open(_with_formats(bundle, tmp_path / "seven"))
    assert hosts.selected_format(seven_bit) == ("onnx-int8", None)   # 7-bit: exact anywhere



def test_cpu_flags_come_from_numpy_where_there_is_no_proc_cpuinfo(monkeypatch):
    # Windows or macOS line PCs: numpy's own x86 feature detection, in cpuinfo's names
    from pathlib import Path

    import numpy as np

    import edgecnn.deploy.hosts as hosts

    real = Path.read_text

    def no_cpuinfo(self, *args, **kwargs):
        if str(self) == "/proc/cpuinfo":
            raise FileNotFoundError(2, "No such file or directory", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", no_cpuinfo)
    flags = hosts.cpu_flags.__wrapped__()
    features = np._core._multiarray_umath.__cpu_features__
    assert ("avx2" in flags) is bool(features.get("AVX2"))
    assert ("avx512_vnni" in flags) is bool(features.get("AVX512VNNI"))


PROBE = r"""
import sys
from edgecnn.cli import main
try:
    main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print("SCIPY" if any(m == "scipy" or m.startswith("scipy.") for m in sys.modules)
      else "NO-SCIPY", code)
"""


def test_a_camera_run_does_not_import_scipy(bundle, videos, tmp_path):
    proc = subprocess.run([sys.executable, "-c", PROBE, "run", "camera", str(bundle),
                           "--source", str(videos[0]), "--source", f"b={videos[1]}",
                           "--quiet"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "NO-SCIPY 0", proc.stdout


def test_the_shared_engine_serves_every_source(bundle, videos):
    """Two sources on one bundle and format run on one engine (one session)."""
    from edgecnn.deploy.camera import CameraPipeline

    shared: dict = {}
    pipes = [CameraPipeline(bundle, plan_from_keywords("camera", str(v)), engines=shared)
             for v in videos]
    try:
        assert pipes[0].engine is pipes[1].engine and len(shared) == 1
    finally:
        for p in pipes:
            p.close()
    assert np.isfinite(pipes[0].engine.predict(np.zeros((1, 32, 32, 1), np.float32))).all()


def test_tiles_with_one_resize_equal_tiles_one_by_one():
    """An 1800x1000 frame in 5x9 tiles of 200x200 for a 128x128 model: the batched
    preprocessing (one resize, tiles as views) is used and equals preprocess_image of
    each tile bit for bit; a layout it cannot do (overlapping grid) goes tile by tile."""
    import cv2

    from edgecnn.deploy.camera import FramePreparer
    from edgecnn.deploy.faults import FaultConfig, FrameFaultDetector
    from edgecnn.deploy.preprocess import preprocess_image
    from edgecnn.deploy.tiles import plan_regions
    from runtime_helpers import image_spec, neu_images

    spec = image_spec(128)
    tiles = [img for _, img in neu_images(8)][:45]
    frame = np.vstack([np.hstack(tiles[r * 9:(r + 1) * 9]) for r in range(5)])
    bgr = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    for plan, batched in (({"tiles": (5, 9)}, True), ({"grid": (200, 200, 150)}, False)):
        prepare = FramePreparer(spec, FrameFaultDetector(FaultConfig()), **plan)
        work = None
        for _ in range(3):            # first frame: checked both ways; then batched only
            work = prepare(bgr, work)
        regions = plan_regions(frame.shape, **plan)
        expected = np.stack([preprocess_image(r.crop(frame), spec) for r in regions])
        np.testing.assert_array_equal(work.tensor, expected)
        assert (prepare._batch is not None and prepare._batch.verified) is batched
        assert (work.resized is not None) is batched


def test_preparer_leaves_gray_conversion_and_health_features_to_an_idle_pipeline():
    """A BGR tiled frame prepared while the pipeline waits: the reading thread only checks
    faults (on the frame as decoded: the same verdicts as on its gray conversion); the
    gray frame, the health features and the tensors are then made by ``analyse`` /
    ``tensors`` and equal what the reading thread would have made."""
    import cv2

    from edgecnn.deploy.camera import FramePreparer
    from edgecnn.deploy.faults import FaultConfig, FrameFaultDetector
    from edgecnn.deploy.health import image_features
    from runtime_helpers import image_spec, neu_images

    spec = image_spec(128)
    tiles = [img for _, img in neu_images(8)][:45]
    frame = np.vstack([np.hstack(tiles[r * 9:(r + 1) * 9]) for r in range(5)])
    bgr = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    features = lambda image, resized=None: image_features(image, (128, 128), resized)  # noqa: E731
    lazy = FramePreparer(spec, FrameFaultDetector(FaultConfig()), tiles=(5, 9),
                         features=features)
    eager = FramePreparer(spec, FrameFaultDetector(FaultConfig()), tiles=(5, 9),
                          features=features, share=False)
    left = done = None
    for _ in range(3):
        left = lazy(bgr, left, waiting=True)
        done = eager(bgr, done, waiting=True)
        assert left.fault is None and not left.analysed and not left.ready
        assert done.analysed and done.ready
        lazy.analyse(left)
        assert left.features == done.features == features(frame)
        np.testing.assert_array_equal(left.pixels, frame)
        lazy.tensors(left)
        np.testing.assert_array_equal(left.tensor, done.tensor)
    black = np.zeros_like(bgr)
    for prepare in (lazy, eager):    # a fault is found on the BGR frame by either
        assert prepare(black, None, waiting=True).fault == "black"
        assert prepare(cv2.cvtColor(black, cv2.COLOR_BGR2GRAY), None).fault == "black"


def test_health_check_of_features_computed_elsewhere_equals_check():
    """``check_features`` (features made in the reading thread) gives the same
    transitions and medians as ``check`` on the frames; the median of the history equals
    numpy's for odd and even lengths."""
    from edgecnn.deploy.health import HealthMonitor, _median, image_features

    rng = np.random.default_rng(3)
    for n in range(1, 10):
        values = list(rng.normal(size=n) * 100)
        assert _median(values) == float(np.median(values))
    limits = {"dark": {"feature": "mean", "below": 40.0},
              "flat": {"feature": "std", "below": 0.5}}
    envelope = {"kind": "image", "size": [32, 32], "limits": limits}
    frames = [np.full((64, 64), level, np.uint8) for level in [120] * 4 + [10] * 8 + [120] * 8]
    for frame in frames:
        frame[(np.arange(64) // 4) % 2 == 1] += 20
    direct, split = HealthMonitor(envelope), HealthMonitor(envelope)
    got = []
    for frame in frames:
        a = direct.check(frame)
        b = split.check_features(image_features(frame, (32, 32)))
        assert a == b and direct.last == split.last
        got += [(c["fault"], c["state"]) for c in a]
    assert got == [("dark", "start"), ("dark", "end")]


def test_large_frames_get_a_shorter_read_ahead_ring_and_every_frame(tmp_path):
    """A video whose frames fill the ring budget is read ahead in 3 slots instead of
    prefetch + 2 (the memory of 2-5 MP frames); every frame still comes, in order."""
    from edgecnn.deploy.frames import VideoFileSource

    levels = list(range(20, 240, 10))
    video = write_video(tmp_path / "levels.avi", [gray_frame(v) for v in levels])
    with VideoFileSource(video, prefetch=4) as roomy:
        assert roomy.slots == 6
    with VideoFileSource(video, prefetch=4, ring_bytes=1) as src:
        assert src.slots == 3
        seen, slots = [], set()
        while (frame := src.read(1.0)) is not None or not src.exhausted:
            if frame is not None:
                seen.append((frame.index, int(round(frame.image.mean()))))
                slots.add(id(frame))
    assert [i for i, _ in seen] == list(range(len(levels)))
    assert all(abs(m - v) <= 2 for (_, m), v in zip(seen, levels))
    assert len(slots) <= 3 and src.stats.read == len(levels)


def test_a_host_file_that_cannot_be_read_is_a_warning_and_the_default(bundle, monkeypatch,
                                                                     caplog, tmp_path):
    import logging
    from pathlib import Path

    import edgecnn.deploy.hosts as hosts
    from edgecnn.deploy.bundle import Bundle

    def locked(self):
        raise PermissionError(13, "Permission denied", str(self))
    opened = Bundle.open(bundle)
    with monkeypatch.context() as patched:
        patched.setattr(Path, "is_file", locked)     # as under a folder we may not enter
        with caplog.at_level(logging.WARNING, logger="edgecnn.deploy"):
            assert hosts.read_selection(opened) is None
    assert "ignoring " in caplog.text and ": it cannot be read" in caplog.text
    monkeypatch.setattr(hosts, "_WARNED", set())
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))   # this test's own
    path = hosts.host_file(opened, 1)
    assert str(path).startswith(str(tmp_path))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("[" * 100_000)                   # nested past the parser's depth
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="edgecnn.deploy"):
        assert hosts.read_selection(opened) is None
    assert "it cannot be read" in caplog.text


def test_the_reading_thread_runs_the_model_while_the_pipeline_is_behind(tmp_path, monkeypatch):
    """A tiled video file whose pipeline is slower than its reading thread: once the ring
    is full, the reading thread runs the model on the frames it prepares (on the slot's
    own runner), and the pipeline classifies exactly the probabilities, events and frames
    it would have made itself; an engine that cannot take runs from two threads (set
    here as LiteRT's is) never gets one from the reading thread."""
    from edgecnn.deploy import camera
    from edgecnn.deploy.engine import OnnxEngine
    from runtime_helpers import neu_images

    images = [img for _, img in neu_images(2)]
    frames = [np.vstack([np.hstack([images[(k + 3 * r + c) % len(images)] for c in range(3)])
                         for r in range(2)]) for k in range(24)]
    video = write_video(tmp_path / "tiled line.avi", frames)
    bundle = make_image_bundle(tmp_path / "bundle", size=64, kind="conv")
    classify = camera.CameraPipeline._classify
    seen: list = []

    def slow(self, frame, probs, inference_s, done):
        seen.append((frame.index, probs.copy()))
        time.sleep(0.02)                  # the pipeline is behind its reading thread
        classify(self, frame, probs, inference_s, done)

    monkeypatch.setattr(camera.CameraPipeline, "_classify", slow)
    runs = {}
    for concurrent in (True, False):
        monkeypatch.setattr(OnnxEngine, "concurrent", concurrent)
        seen.clear()
        events: list = []
        summary = camera.run_camera(bundle, str(video), tiles=(2, 3), min_frames=1,
                                    probabilities=True, on_event=events.append)
        runs[concurrent] = (summary, list(seen), [
            {k: v for k, v in e.items() if k not in ("id", "time", "latency_ms")}
            for e in events])
    (ahead, by_reader, events), (alone, by_pipeline, alone_events) = runs[True], runs[False]
    assert ahead.processed == alone.processed == len(frames)
    assert alone.extra["inferred_by_reader"] == 0
    # every slot's first frame binds its runner in the pipeline; most later ones come run
    assert ahead.extra["inferred_by_reader"] >= len(frames) // 2
    assert [i for i, _ in by_reader] == [i for i, _ in by_pipeline] == list(range(len(frames)))
    for (_, a), (_, b) in zip(by_reader, by_pipeline):
        np.testing.assert_array_equal(a, b)
    assert events == alone_events and len(events) >= 6


def test_regions_that_misfit_after_tiny_frames_are_a_fault_not_an_exit():
    """The first frame decides whether --roi is the user's mistake (exit 2); a camera
    that starts with tiny frames (a fault, logged) is under way when its first real frame
    misfits: a ``resolution`` fault, as later size changes are (an exit then left the
    logged faults without their ends)."""
    from edgecnn.deploy.camera import FramePreparer
    from edgecnn.deploy.errors import InputError
    from edgecnn.deploy.faults import FaultConfig, FrameFaultDetector
    from edgecnn.deploy.tiles import Region
    from runtime_helpers import image_spec

    roi = Region(0, 0, 300, 300)
    frame = np.full((200, 200), 120, np.uint8)
    frame[::7] = 60                                    # texture: not flat or frozen
    with pytest.raises(InputError, match="does not fit"):
        FramePreparer(image_spec(32), FrameFaultDetector(FaultConfig()), roi=roi)(frame)
    after_tiny = FramePreparer(image_spec(32), FrameFaultDetector(FaultConfig()), roi=roi)
    assert after_tiny(np.full((4, 4), 120, np.uint8)).fault == "tiny"
    assert after_tiny(frame).fault == "resolution" and "does not fit" in after_tiny.misfit


def test_a_region_far_beyond_the_model_input_gets_one_note(caplog):
    import logging
    from dataclasses import replace

    from edgecnn.deploy.camera import FramePreparer
    from edgecnn.deploy.faults import FaultConfig, FrameFaultDetector
    from runtime_helpers import image_spec

    frame = np.full((800, 800), 120, np.uint8)
    frame[::7] = 60
    area = image_spec(32)
    linear = area.replace(image=replace(area.image, interpolation="linear"))
    with caplog.at_level(logging.WARNING):
        whole = FramePreparer(linear, FrameFaultDetector(FaultConfig()))
        whole(frame)
        whole(frame)
        whole(frame[:400])                   # another size: planned again, one note more
        FramePreparer(linear, FrameFaultDetector(FaultConfig()), tiles=(8, 8))(frame)
        FramePreparer(area.replace(image=replace(area.image, interpolation="area")),
                      FrameFaultDetector(FaultConfig()))(frame)   # averaged: no note
    notes = [r.getMessage() for r in caplog.records if "the model's 32x32 input" in r.getMessage()]
    assert len(notes) == 2 and "800x800, 25.0x" in notes[0] and "--tiles" in notes[0]


def test_one_device_or_endpoint_written_two_ways_is_one_source(tmp_path):
    from edgecnn.deploy.errors import InputError
    from edgecnn.deploy.plans import check_live_sources_once

    for pair in (["tcp://127.0.0.1:19030", "TCP://localhost:019030"], ["0", "00"],
                 ["rtsp://Cam/s", "rtsp://cam/s"]):
        with pytest.raises(InputError, match="is given as two sources"):
            check_live_sources_once(pair)
    check_live_sources_once(["tcp://127.0.0.1:19030", "tcp://127.0.0.1:19031", "0", "1",
                             "rtsp://cam/a", "rtsp://cam/b"])
    video = tmp_path / "v.avi"
    video.write_bytes(b"x")
    check_live_sources_once([str(video), str(video)])       # a file may be read twice
