"""Hostile and broken input: refused with one clear message before it costs memory,
hangs or changes a setting's meaning (NaN options, huge declared sizes, pipes)."""

from __future__ import annotations

import io
import math
import os
import struct

import numpy as np
import pytest

from edgecnn.deploy.errors import InputError, SourceError
from edgecnn.deploy.options import Limits, Logging
from edgecnn.deploy.reconnect import Backoff
from edgecnn.deploy.recordings import read_recording
from edgecnn.deploy.vibration import SignalChecks


@pytest.mark.parametrize("make", [
    lambda v: Limits(duration=v), lambda v: Logging(rotate_mb=v),
    lambda v: Backoff(stall_seconds=v), lambda v: SignalChecks(clip_level=v),
    lambda v: Backoff(connect_timeout=v)])
def test_nan_is_refused_where_it_would_switch_a_check_off(make):
    # NaN passes "<= 0": a --duration nan ran forever, --stall-seconds nan never saw a stall
    with pytest.raises(InputError):
        make(math.nan)


def test_infinite_and_tiny_settings_are_refused_or_kept_as_meant():
    for make in (lambda: Limits(duration=math.inf), lambda: Logging(rotate_mb=math.inf),
                 lambda: Logging(rotate_mb=1e-7), lambda: Backoff(stall_seconds=math.inf)):
        with pytest.raises(InputError):
            make()
    assert Backoff(connect_timeout=math.inf).connect_timeout == math.inf   # wait forever


def test_a_hop_of_more_than_a_hundred_windows_is_refused():
    from edgecnn.deploy.stft import StreamingSpectrogram
    from runtime_helpers import signal_spec

    spec = signal_spec(1024)
    StreamingSpectrogram(spec, hop=100 * 1024)
    with pytest.raises(InputError, match="at most 102400"):
        StreamingSpectrogram(spec, hop=100 * 1024 + 1)


def test_a_small_npy_declaring_a_huge_array_is_refused_before_allocating(tmp_path):
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f8", "fortran_order": False, "shape": (10 ** 11,)})
    path = tmp_path / "huge.npy"
    path.write_bytes(header.getvalue() + bytes(800))
    with pytest.raises(SourceError, match="declares 100000000000 float64 values"):
        read_recording(path, sample_rate=12000)


def test_a_wav_with_zero_bits_per_sample_is_a_clean_error(tmp_path):
    path = tmp_path / "bits0.wav"
    path.write_bytes(b"RIFF" + struct.pack("<I", 36) + b"WAVEfmt " +
                     struct.pack("<IHHIIHH", 16, 1, 1, 12000, 0, 0, 0) + b"data" +
                     struct.pack("<I", 0))
    with pytest.raises(SourceError, match="bits0.wav"):
        read_recording(path, sample_rate=12000)


def test_a_csv_beyond_the_reader_size_is_refused_unread(tmp_path, monkeypatch):
    import edgecnn.deploy.recordings as recordings

    path = tmp_path / "long.csv"
    path.write_text("0.1\n" * 3000)
    monkeypatch.setattr(recordings, "MAX_CSV_BYTES", 10_000)
    with pytest.raises(SourceError, match="save long recordings as .npy"):
        read_recording(path, sample_rate=12000)


def test_a_pipe_among_the_images_is_skipped_not_read(tmp_path):
    import cv2

    from edgecnn.data.images import load_image_folder
    from runtime_helpers import neu_images

    for cls, image in neu_images(per_class=2)[:4]:
        (tmp_path / cls).mkdir(exist_ok=True)
        cv2.imwrite(str(tmp_path / cls / f"{len(os.listdir(tmp_path / cls))}.png"), image)
    os.mkfifo(tmp_path / cls / "pipe.jpg")     # would block a read forever
    data = load_image_folder(tmp_path)
    assert len(data.labels) == 4


def test_a_config_nested_past_the_parser_is_an_input_error(tmp_path):
    from edgecnn.serviceconfig import load_config

    path = tmp_path / "deep.toml"
    path.write_text("x = " + "[" * 2000 + "]" * 2000 + "\n")
    with pytest.raises(InputError, match="nested too deep"):
        load_config(path)


def test_samples_beyond_float32_are_a_nonfinite_window(tmp_path):
    """A float64 recording of 1e300s is finite to numpy and infinite to the model's
    float32 tensor: a nonfinite fault, not a health fault with a null value and numpy
    overflow warnings."""
    from edgecnn.deploy.vibration import SignalChecks, window_faults

    rng = np.random.default_rng(0)
    window = rng.normal(size=2048)
    assert window_faults(window, SignalChecks(), 600) == []
    assert window_faults(window * 1e300, SignalChecks(), 600) == ["nonfinite"]


def test_a_summary_never_replaces_an_event_log_or_store(tmp_path):
    import sqlite3

    from edgecnn.report import write_json

    log = tmp_path / "events.jsonl"
    log.write_text('{"id": "1", "time": "2026-12-04T10:00:00Z", "type": "defect", '
                   '"class": "crazing"}\n')
    store = tmp_path / "events.db"
    sqlite3.connect(store).close()
    with sqlite3.connect(store) as db:
        db.execute("create table t (x)")
    before = log.read_bytes(), store.read_bytes()
    for json_path, message in ((log, "is an event log"), (store, "is an SQLite database")):
        with pytest.raises(InputError, match=message):
            Logging(log=str(tmp_path / "new.jsonl"), json_path=str(json_path))
        with pytest.raises(InputError, match=message):
            write_json({"a": 1}, json_path)
    assert (log.read_bytes(), store.read_bytes()) == before
    for a, b in (("log", "json_path"), ("log", "sqlite"), ("sqlite", "json_path")):
        with pytest.raises(InputError, match="name the same file"):
            Logging(**{a: str(tmp_path / "x"), b: str(tmp_path / "." / "x")})
    summary = tmp_path / "summary.json"
    write_json({"a": 1}, summary)
    write_json({"a": 2}, summary)                    # an earlier summary: replaced
    Logging(log=str(log), json_path=str(summary))


def test_regions_per_frame_are_bounded_and_an_roi_must_show_something():
    from edgecnn.deploy.tiles import MAX_REGIONS, Region, plan_regions

    assert len(plan_regions((1000, 1800), tiles=(5, 9))) == 45
    assert len(plan_regions((200, 200), grid=(64, 64, 32))) == 36   # 6 x 6, the edge too
    with pytest.raises(InputError, match=f"makes 18769 windows .* at most {MAX_REGIONS}"):
        plan_regions((200, 200), grid=(64, 64, 1))
    with pytest.raises(InputError, match="makes 4900 tiles per frame"):
        plan_regions((4000, 4000), tiles=(70, 70))
    with pytest.raises(InputError, match="is 1x1 pixels: expected at least 8x8"):
        plan_regions((200, 200), roi=Region(5, 5, 1, 1))


def test_mqtt_tls_files_and_broker_topics_are_checked_at_the_start(tmp_path):
    from edgecnn.deploy.mqtt import MqttOptions, options_from_url

    picture = tmp_path / "ca.png"
    picture.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    with pytest.raises(InputError, match=r"MQTT ca .*ca.png: expected PEM file"):
        options_from_url(f"mqtts://127.0.0.1:8883/line?ca={picture}")
    with pytest.raises(InputError, match="MQTT cert/key"):
        MqttOptions("mqtts://127.0.0.1:8883/line", cert=str(picture), key=str(picture))
    with pytest.raises(InputError, match=r"starts with '\$'"):
        options_from_url("mqtt://127.0.0.1:1883/$SYS/line")
    for value in ("nan", "inf"):
        with pytest.raises(InputError, match="flush_timeout >= 0"):
            options_from_url(f"mqtt://127.0.0.1:1883/line?flush_timeout={value}")


def test_a_stream_scheme_the_vibration_runtime_does_not_read_is_named(tmp_path):
    from edgecnn.deploy.samples import open_sample_source

    for url in ("udp://127.0.0.1:9000", "mqtt://127.0.0.1/x", "http://127.0.0.1/x"):
        with pytest.raises(InputError, match=url.split(":")[0] + r":// streams are not read"):
            open_sample_source(url, 12000.0)
    folder = tmp_path / "runs"
    folder.mkdir()
    with pytest.raises(SourceError, match="is a folder: expected one recording file"):
        open_sample_source(str(folder), 12000.0)
