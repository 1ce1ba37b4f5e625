"""Vibration runtime on calibration recordings, stdin and a TCP stream that drops."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading

import numpy as np
import pytest

from edgecnn.deploy.bundle import Bundle
from edgecnn.deploy.engine import open_engine
from edgecnn.deploy.preprocess import preprocess_windows, resample, window_starts
from edgecnn.deploy.reconnect import Backoff
from edgecnn.deploy.recordings import read_recording
from edgecnn.deploy.vibration import SignalChecks, run_vibration, window_faults
from runtime_helpers import CALIBRATION, CWRU_CLASSES, make_signal_bundle

RECORDING = CALIBRATION / "cwru" / "12k_Drive_End_OR021@6_1_235.mat"
NORMAL_48K = CALIBRATION / "cwru" / "normal_0_97.mat"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_signal_bundle(tmp_path_factory.mktemp("vib bundle") / "signal model",
                              window_length=2048)


@pytest.fixture(scope="module")
def spec(bundle):
    return Bundle.open(bundle).spec


def test_every_window_classified_like_offline(bundle, spec):
    """Each event's probabilities equal the engine on preprocess_windows of that window."""
    rec = read_recording(NORMAL_48K)
    x = resample(rec.samples, rec.sample_rate, spec.signal.sample_rate)
    hop = 512
    got = []
    summary = run_vibration(bundle, str(NORMAL_48K), hop=hop, min_windows=1, threshold=0.0,
                            probabilities=True, on_event=got.append)
    starts = window_starts(len(x), spec.signal.window_length, hop)
    assert summary.read == summary.processed == len(starts)
    assert summary.stop_reason == "end of source" and summary.extra["hop"] == hop
    engine = open_engine(bundle)
    offline = engine.predict(preprocess_windows(
        np.stack([x[s:s + spec.signal.window_length] for s in starts]), spec))
    defects = [e for e in got if e["type"] == "defect"]
    assert defects
    for event in defects:
        k = event["window"]
        assert event["region"] == [int(starts[k]), spec.signal.window_length]
        probs = np.array([event["probabilities"][c] for c in CWRU_CLASSES])
        np.testing.assert_allclose(probs, offline[k], atol=1e-5)
    # events fire only when the top class changes (min_windows=1, threshold 0)
    top = offline.argmax(1)
    changes = 1 + int(np.count_nonzero(top[1:] != top[:-1]))
    assert len(defects) == changes


def test_faults_nan_clipping_flatline(tmp_path, bundle, spec):
    x = read_recording(RECORDING).samples.copy()
    x[3000:3010] = np.nan                  # a few NaN samples
    x[10000:10400] = 0.0                   # 33 ms of zeros: under the 50 ms flatline limit,
    x[15000:16000] = 0.0                   # 83 ms flat: a flatline  (but a window that
    # starts or ends inside either is one: the sensor dies or comes back within it)
    # a burst that saturates the sensor at +/-6.65 g (as CWRU's OR021 files do)
    x[20000:20040] = np.clip(x[20000:20040] * 50, -6.65, 6.65)
    path = tmp_path / "bad signal.npy"
    np.save(path, x)
    got = []
    summary = run_vibration(bundle, str(path), sample_rate=12000.0, hop=2048,
                            min_windows=1, threshold=0.0, on_event=got.append)
    length = spec.signal.window_length
    starts = window_starts(len(x), length, 2048)
    nan_windows = [s for s in starts if s <= 3009 and s + length > 3000]
    def flat(s, a, b):   # inside the window >= 50 ms, or >= 50/8 ms at its start or end
        return (min(s + length, b) - max(s, a) >= 600 or (a <= s < b and b - s >= 75)
                or (a < s + length <= b and s + length - a >= 75))
    flat_windows = [s for s in starts if flat(s, 15000, 16000) or flat(s, 10000, 10400)]
    assert any(flat(s, 10000, 10400) for s in starts)
    assert summary.faults["nonfinite"] == len(nan_windows) >= 1
    # neither is classified: a dead sensor's spectrogram says nothing about the bearing
    assert summary.processed == len(starts) - len(nan_windows) - len(flat_windows)
    assert len(flat_windows) >= 1
    assert summary.faults["flatline"] >= 1 and summary.faults["clipped"] >= 1
    kinds = [e["fault"] for e in got if e["type"] == "fault"]
    assert {"nonfinite", "flatline", "clipped"} <= set(kinds)
    flagged = [e for e in got if e["type"] == "defect" and e.get("clipped")]
    assert all(e["region"][0] <= 20039 and e["region"][0] + length > 20000 for e in flagged)
    # explicit clip level
    checks = SignalChecks(clip_level=6.6)
    assert window_faults(x[20000:22048], checks, 600) == ["clipped"]
    assert window_faults(x[25000:27048], checks, 600) == []
    # a dead sensor holding a non-zero value is flat, not also clipped at its constant
    held = x[25000:27048].copy()
    held[800:] = 0.73
    assert window_faults(held, SignalChecks(), 600) == ["flatline"]


def test_a_sensor_dying_inside_a_window_is_no_defect(tmp_path, bundle, spec):
    # the step into the constant reads as an impact: windows that end (or start) in a
    # stuck run shorter than 50 ms are not classified either, at every phase of the run
    x = read_recording(RECORDING).samples.copy()
    length = spec.signal.window_length
    for offset in range(0, length, length // 8):
        y = x.copy()
        y[12000 + offset:] = 0.0
        got = []
        np.save(tmp_path / "dying.npy", y)
        run_vibration(bundle, str(tmp_path / "dying.npy"), sample_rate=12000.0, hop=length // 4,
                      min_windows=1, threshold=0.0, on_event=got.append)
        last = [e for e in got if e["type"] == "defect"][-1]
        assert last["region"][0] + length <= 12000 + offset + 75, offset
    clean = window_faults(x[:length], SignalChecks(), 600)
    assert clean == []


def test_a_dead_sensor_raises_a_fault_and_no_defect(tmp_path, bundle):
    for name, value in (("dead", 0.0), ("stuck", 0.05)):  # a broken cable; a stuck ADC
        path = tmp_path / f"{name}.npy"
        np.save(path, np.full(36000, value))
        got = []
        summary = run_vibration(bundle, str(path), sample_rate=12000.0, on_event=got.append)
        assert summary.faults["flatline"] >= 1 and summary.processed == 0
        assert not [e for e in got if e["type"] == "defect"], name


def test_stdin_stream_through_the_cli(tmp_path, bundle, spec):
    x = read_recording(RECORDING).samples
    log = tmp_path / "stdin events.jsonl"
    summary_path = tmp_path / "summary.json"
    proc = subprocess.run(
        [sys.executable, "-c", "from edgecnn.cli import main; main()", "run", "vibration",
         str(bundle), "--source", "-", "--sample-rate", "12000", "--hop", "1024",
         "--threshold", "0", "--log", str(log), "--json", str(summary_path)],
        input=x.astype("<f4").tobytes() + b"\x00\x01", capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    summary = json.loads(summary_path.read_text())
    assert summary["read"] == len(window_starts(len(x), spec.signal.window_length, 1024))
    assert summary["corrupt"] == 1                     # the 2 stray bytes at the end
    assert summary["stop_reason"] == "end of source"
    lines = log.read_text().splitlines()
    assert len(lines) == sum(summary["events"].values()) >= 1
    assert b"windows" in proc.stdout and b"Traceback" not in proc.stderr


class _SampleServer:
    """Serves float32 samples: the first client gets ``first`` then is cut off, the next
    client gets ``second`` and the connection stays open."""

    def __init__(self, first: np.ndarray, second: np.ndarray):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.payloads = [first.astype("<f4").tobytes(), second.astype("<f4").tobytes()]
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        held = []
        for i, payload in enumerate(self.payloads):
            conn, _ = self.sock.accept()
            conn.sendall(payload)
            if i == 0:
                conn.close()        # network drop
            else:
                held.append(conn)   # keep streaming connection open
        self.done.wait(30)
        for conn in held:
            conn.close()
        self.sock.close()


def test_tcp_stream_reconnects_and_reports_the_gap(bundle, spec):
    x = read_recording(RECORDING).samples
    first, second = x[:10000], x[10000:30000]
    server = _SampleServer(first, second)
    length, hop = spec.signal.window_length, 2048
    expected = len(window_starts(len(first), length, hop)) + \
        len(window_starts(len(second), length, hop))
    got = []
    try:
        summary = run_vibration(bundle, f"tcp://127.0.0.1:{server.port}", hop=hop,
                                min_windows=1, threshold=0.0, max_windows=expected,
                                backoff=Backoff(0.01, 0.05), on_event=got.append,
                                duration=30)
    finally:
        server.done.set()
    assert summary.stop_reason == "max windows reached"
    assert summary.read == expected and summary.faults["gap"] == 1
    assert summary.reconnects == 1
    gaps = [e for e in got if e.get("fault") == "gap"]
    assert len(gaps) == 1
    # windows after the gap never straddle it: they start at the first sample after it
    after = [e for e in got if e["type"] == "defect" and e["window"] >= gaps[0]["window"]]
    assert all(e["region"][0] >= len(first) for e in after)


def test_unreachable_tcp_source_is_a_source_error(bundle):
    from edgecnn.deploy.errors import SourceError

    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    with pytest.raises(SourceError, match="cannot connect"):
        run_vibration(bundle, f"tcp://127.0.0.1:{port}", backoff=Backoff(connect_timeout=0))


def test_realtime_pacing_reads_at_the_signal_rate(tmp_path, bundle, spec):
    x = read_recording(RECORDING).samples[:6000]           # 0.5 s at 12 kHz
    path = tmp_path / "half second.npy"
    np.save(path, x)
    fast = run_vibration(bundle, str(path), sample_rate=12000.0, hop=1024)
    paced = run_vibration(bundle, str(path), sample_rate=12000.0, hop=1024, realtime=True)
    assert paced.read == fast.read == len(window_starts(6000, spec.signal.window_length, 1024))
    assert paced.elapsed_s >= 0.4          # paced: cannot finish before the signal's length
    assert paced.extra["signal_s"] == pytest.approx(0.5)


def test_run_notes_resampling_and_a_recording_shorter_than_a_window(tmp_path, bundle, caplog):
    import logging

    short = tmp_path / "short.npy"
    np.save(short, read_recording(RECORDING).samples[:1000])
    with caplog.at_level(logging.WARNING, logger="edgecnn.deploy"):
        summary = run_vibration(bundle, str(short), sample_rate=12000.0)
        run_vibration(bundle, str(NORMAL_48K), max_windows=2)
    assert summary.read == 0
    assert "holds 1000 samples at 12000 Hz, less than one window of" in caplog.text
    assert "at 48000 Hz is resampled to the model's 12000 Hz: everything above 6000 Hz is " \
           "dropped" in caplog.text
