"""Recordings as users have them: any .mat variable name, any sample rate, one windowing rule."""

import logging
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import scipy.io.wavfile

from edgecnn.data import load_dataset
from edgecnn.data.windows import (
    data_sample_rate,
    measurement_stride,
    probe_sample_rates,
    spec_for_rate,
)
from edgecnn.deploy.errors import DataError, InputError, SourceError
from edgecnn.deploy.recordings import read_recording
from edgecnn.deploy.spec import SignalSpec
from edgecnn.tasks import get_task

CALIB = Path(__file__).resolve().parents[1] / "calibration_data"
IR007 = "12k_Drive_End_IR007_0_105.mat"


def _real(n=24000):
    return read_recording(CALIB / "cwru" / IR007).samples[:n]


def test_a_mat_file_with_one_array_of_any_name_is_read(tmp_path):
    scipy.io.savemat(tmp_path / "run7.mat", {"acc_z": _real().reshape(-1, 1),
                                             "note": np.array([[3.0]])})
    recording = read_recording(tmp_path / "run7.mat", sample_rate=12000)
    assert recording.channel == "acc_z" and len(recording.samples) == 24000
    np.testing.assert_allclose(recording.samples, _real())


def test_several_arrays_need_a_channel_and_the_message_lists_them(tmp_path):
    scipy.io.savemat(tmp_path / "two.mat", {"h1": _real(), "h2": -_real()})
    with pytest.raises(SourceError, match=r"h1, h2; choose one with --channel NAME"):
        read_recording(tmp_path / "two.mat", sample_rate=12000)
    chosen = read_recording(tmp_path / "two.mat", channel="h2", sample_rate=12000)
    np.testing.assert_allclose(chosen.samples, -_real())
    with pytest.raises(SourceError, match="'h3'"):
        read_recording(tmp_path / "two.mat", channel="h3", sample_rate=12000)


def test_a_cwru_file_without_the_wanted_channel_never_reads_another(tmp_path):
    scipy.io.savemat(tmp_path / "x.mat", {"X1_FE_time": _real()})
    with pytest.raises(SourceError, match="_DE_time"):
        read_recording(tmp_path / "x.mat", sample_rate=12000)


def test_window_rule_keeps_durations_at_other_rates():
    base = get_task("vibration").signal
    assert (base.sample_rate, base.window_length, base.nperseg) == (12000.0, 4096, 256)
    fast = spec_for_rate(base, 48000.0)
    assert (fast.window_length, fast.nperseg, fast.noverlap) == (16384, 1024, 128)
    assert fast.window_length / fast.sample_rate == pytest.approx(4096 / 12000)
    assert spec_for_rate(base, 51200.0).window_length == 16384
    assert spec_for_rate(base, 48000.0, window_length=8192).window_length == 8192
    assert spec_for_rate(base, 12000.0) == base
    assert measurement_stride(fast) == 4096


def test_mixed_rates_train_at_the_lowest_with_a_note(caplog):
    with caplog.at_level(logging.WARNING, logger="edgecnn.data"):
        assert data_sample_rate([48000.0, 48000.0, 12000.0]) == 12000.0
    assert "content above 6000 Hz is dropped" in caplog.text


def _rig(folder: Path, rate: float) -> Path:
    """A generic rig: files named anything, one variable named anything, rates in labels.csv."""
    folder.mkdir()
    rows = ["file,label,sample_rate"]
    for label, name in (("normal", "normal_0_97.mat"), ("inner", IR007)):
        samples = read_recording(CALIB / "cwru" / name).samples[:30000]
        samples = np.concatenate([samples, samples])  # 60 000 samples: room for a time split
        scipy.io.savemat(folder / f"{label}.mat", {"ch": samples})
        rows.append(f"{label}.mat,{label},{rate:g}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    return folder


def test_probe_and_resampling_note_for_a_fast_rig(tmp_path, caplog):
    rig = _rig(tmp_path / "rig", 48000.0)
    assert probe_sample_rates(rig, "manifest") == [48000.0, 48000.0]
    spec = SignalSpec(sample_rate=12000.0, window_length=4096)
    with caplog.at_level(logging.WARNING, logger="edgecnn.data"):
        samples = load_dataset("vibration", rig, spec)
    assert "resampled to the model's 12000 Hz: everything above 6000 Hz is dropped" \
        in caplog.text
    assert samples.sample_rate == 12000.0 and len(samples) > 0


def test_vibration_training_follows_the_data_rate(tmp_path):
    from edgecnn.training import TrainConfig, train

    rig = _rig(tmp_path / "rig", 24000.0)
    lines = []
    result = train(TrainConfig(task="vibration", data=str(rig), out=str(tmp_path / "m"),
                               architecture="tiny-test", epochs=1), log=lines.append)
    signal = result.model_dir.spec.signal
    assert (signal.sample_rate, signal.window_length, signal.nperseg) == (24000.0, 8192, 512)
    assert any("training at that rate" in line for line in lines)
    from edgecnn.evaluation import evaluate

    metrics = evaluate(tmp_path / "m", rig, log=lines.append)
    # eval cuts the folder by the one measurement rule: a quarter window, both files
    per_file = (60000 - 8192) // measurement_stride(signal) + 1
    assert metrics["n"] == 2 * per_file


def test_cwru_task_keeps_its_12k_rate(tmp_path):
    folder = tmp_path / "c"
    folder.mkdir()
    shutil.copyfile(CALIB / "cwru" / IR007, folder / IR007)
    assert get_task("cwru").follow_data_rate is False
    assert get_task("cwru").signal.sample_rate == 12000.0


def test_eval_reads_the_channel_the_model_was_trained_on(tmp_path):
    from edgecnn.evaluation import evaluate
    from edgecnn.training import TrainConfig, train

    rig = _rig(tmp_path / "rig", 12000.0)
    for name in ("normal", "inner"):  # a second axis beside the first, as a triaxial rig has
        ch = scipy.io.loadmat(rig / f"{name}.mat")["ch"].ravel()
        scipy.io.savemat(rig / f"{name}.mat", {"acc_x": -ch, "acc_y": ch})
    with pytest.raises(Exception, match="choose one with --channel NAME"):
        read_recording(rig / "inner.mat", sample_rate=12000)
    train(TrainConfig(task="vibration", data=str(rig), out=str(tmp_path / "m"),
                      architecture="tiny-test", epochs=1, channel="acc_y"), log=lambda _: None)
    metrics = evaluate(tmp_path / "m", rig, log=lambda _: None)  # no --channel: acc_y
    assert metrics["n"] > 0 and metrics["skipped"] == 0
    assert evaluate(tmp_path / "m", rig, channel="acc_x", log=lambda _: None)["n"] == metrics["n"]


def test_dead_sensor_files_are_not_trained_on_and_lost_classes_are_named(tmp_path, caplog):
    rig = _rig(tmp_path / "rig", 12000.0)
    np.save(rig / "dead.npy", np.zeros(60000))
    np.save(rig / "short.npy", _real(3000))
    with open(rig / "labels.csv", "a") as manifest:
        manifest.write("dead.npy,inner,12000\nshort.npy,outer,12000\n")
    spec = SignalSpec(sample_rate=12000.0, window_length=4096)
    with caplog.at_level(logging.WARNING, logger="edgecnn.data"):
        samples = load_dataset("vibration", rig, spec)
    reasons = {s.path: s.reason for s in samples.skipped}
    assert "one flat value (0) throughout (a dead or disconnected sensor?)" in reasons["dead.npy"]
    assert "too short" in reasons["short.npy"]
    assert samples.class_names == ("inner", "normal")
    assert "NOTE: 1 class(es) left out, no usable sample: outer (1 file(s), none usable)" \
        in caplog.text
    # measuring a model on a flat recording is fair (a dead sensor must not look like a fault)
    measured = load_dataset("vibration", rig, spec, labels=("inner", "normal", "outer"))
    assert "dead.npy" in measured.sources


def test_a_wav_file_without_a_format_chunk_is_refused_in_one_line(tmp_path):
    import struct

    (tmp_path / "t.wav").write_bytes(b"RIFF" + struct.pack("<I", 16) + b"WAVE" + b"LIST"
                                     + struct.pack("<I", 4) + b"INFO")
    with pytest.raises(SourceError, match="not a valid WAV file: expected a RIFF/WAVE file"):
        read_recording(tmp_path / "t.wav")


def test_csv_dialects_of_spreadsheets_and_loggers_read_the_same_samples(tmp_path):
    x = np.round(_real(2000), 6)
    t = np.arange(len(x)) / 12000.0

    def text(values, point=".", sep=""):
        return [f"{v:.6f}".replace(".", point) for v in values]

    files = {
        "comma-decimal.csv": "\n".join(text(x, ",")),                      # one column, de-DE
        "semicolon.csv": "time;value\n" + "\n".join(
            f"{a};{b}" for a, b in zip(text(t, ","), text(x, ","))),       # Excel, de-DE
        "semicolon-point.csv": "time;value\n" + "\n".join(
            f"{a};{b}" for a, b in zip(text(t), text(x))),
        "tabs.csv": '"time"\t"value"\n' + "\n".join(
            f"{a}\t{b}" for a, b in zip(text(t), text(x))),                # quoted header
        "spaces.csv": "# sample_rate=12000\n" + "\n".join(
            f"{a}  {b}" for a, b in zip(text(t), text(x))),
        "plain.csv": "time,value\n" + "\n".join(f"{a},{b}" for a, b in zip(text(t), text(x))),
    }
    for name, body in files.items():
        (tmp_path / name).write_text(body + "\n")
        channel = "0" if name == "comma-decimal.csv" else ("1" if name == "spaces.csv"
                                                            else "value")
        recording = read_recording(tmp_path / name, channel=channel, sample_rate=12000)
        np.testing.assert_allclose(recording.samples, x, atol=1e-9, err_msg=name)
    # two integer columns stay two columns (ADC counts, no fractions)
    (tmp_path / "counts.csv").write_text("12,345\n13,-340\n11,290\n")
    counts = read_recording(tmp_path / "counts.csv", channel="1", sample_rate=12000)
    assert counts.samples.tolist() == [345.0, -340.0, 290.0]


def test_a_channel_a_one_column_file_does_not_have_is_refused(tmp_path):
    x = _real(100)
    (tmp_path / "acc_x.csv").write_text("acc_x\n" + "\n".join(f"{v:.6f}" for v in x) + "\n")
    (tmp_path / "bare.csv").write_text("\n".join(f"{v:.6f}" for v in x) + "\n")
    np.save(tmp_path / "one.npy", x)
    for name, channel in (("acc_x.csv", "acc_x"), ("acc_x.csv", "DE"), ("acc_x.csv", "0"),
                          ("bare.csv", "0"), ("one.npy", "0"), ("one.npy", "DE")):
        read_recording(tmp_path / name, channel=channel, sample_rate=12000)   # what it has
    for name, channel, says in (("acc_x.csv", "acc_y", "one column ('acc_x'); it has no "
                                                       "channel 'acc_y'"),
                                ("bare.csv", "2", "no channel '2'"),
                                ("one.npy", "1", "no channel index 1")):
        with pytest.raises(SourceError, match=re.escape(says)):
            read_recording(tmp_path / name, channel=channel, sample_rate=12000)


def test_a_bare_manifest_entry_naming_several_files_is_refused(tmp_path):
    from edgecnn.deploy.errors import DataError

    rig = tmp_path / "rig"
    for day in ("day1", "day2"):
        (rig / day).mkdir(parents=True)
        np.save(rig / day / "run1.npy", _real(12000))
    (rig / "labels.csv").write_text("file,label,sample_rate\nrun1.npy,inner,12000\n")
    spec = SignalSpec(sample_rate=12000.0, window_length=4096)
    with pytest.raises(DataError, match=r"the entry 'run1.npy' matches 2 files "
                                        r"\(day1/run1.npy, day2/run1.npy\)"):
        load_dataset("vibration", rig, spec, labels=("inner", "normal"))


def test_a_triaxial_matrix_in_a_mat_file_gives_one_column(tmp_path):
    x = _real()
    scipy.io.savemat(tmp_path / "tri.mat", {"data": np.stack([x, -x, 2 * x], axis=1)})
    with pytest.raises(SourceError, match=r"the array 'data' \(24000x3\) holds 3 channels: "
                                          r"give one with --channel data:0..2"):
        read_recording(tmp_path / "tri.mat", sample_rate=12000)
    second = read_recording(tmp_path / "tri.mat", channel="data:1", sample_rate=12000)
    np.testing.assert_allclose(second.samples, -x)
    assert second.channel == "data:1"
    np.testing.assert_allclose(read_recording(tmp_path / "tri.mat", channel="2",
                                              sample_rate=12000).samples, 2 * x)
    scipy.io.savemat(tmp_path / "rows.mat", {"acc": np.stack([x, -x, 2 * x])})  # 3 x N
    np.testing.assert_allclose(read_recording(tmp_path / "rows.mat", channel="acc:2",
                                              sample_rate=12000).samples, 2 * x)


def test_a_matlab_v73_file_is_named_as_such(tmp_path):
    (tmp_path / "new.mat").write_bytes(b"MATLAB 7.3 MAT-file, Platform: GLNXA64" + b"\0" * 600)
    with pytest.raises(SourceError, match=r"MATLAB v7.3 \(HDF5\) file: .*'-v7'"):
        read_recording(tmp_path / "new.mat", sample_rate=12000)


def test_a_blank_line_between_samples_is_refused_but_blank_layout_lines_are_kept(tmp_path):
    x = np.round(_real(300), 6)
    lines = [f"{v:.6f}" for v in x]
    (tmp_path / "gap.csv").write_text("\n".join(lines[:100] + [""] + lines[100:]) + "\n")
    with pytest.raises(SourceError, match=r"gap.csv: line 101 is blank between samples"):
        read_recording(tmp_path / "gap.csv", sample_rate=12000)
    # before the first sample, after the header and after the last one: layout
    (tmp_path / "layout.csv").write_text("# sample_rate=12000\n\nvalue\n\n"
                                         + "\n".join(lines) + "\n\n\n")
    recording = read_recording(tmp_path / "layout.csv")
    np.testing.assert_allclose(recording.samples, x, atol=1e-9)


def test_excel_csv_with_a_bom_and_quoted_decimal_commas_reads_every_sample(tmp_path):
    x = np.round(_real(500), 6)
    plain = "\n".join(f"{v:.6f}" for v in x) + "\n"
    (tmp_path / "bom.csv").write_text("\ufeff" + plain, encoding="utf-8")
    (tmp_path / "bom-header.csv").write_text("\ufeffaccel\n" + plain, encoding="utf-8")
    t = np.arange(len(x)) / 12000.0
    quoted = "\n".join(f'"{a:.6f}","{b:.6f}"'.replace(".", ",") for a, b in zip(t, x))
    (tmp_path / "quoted-comma.csv").write_text('"time","accel"\n' + quoted + "\n")
    (tmp_path / "quoted-semicolon.csv").write_text(quoted.replace('","', '";"') + "\n")
    for name, channel in (("bom.csv", "0"), ("bom-header.csv", "accel"),
                          ("quoted-comma.csv", "accel"), ("quoted-semicolon.csv", "1")):
        recording = read_recording(tmp_path / name, channel=channel, sample_rate=12000)
        np.testing.assert_allclose(recording.samples, x, atol=1e-9, err_msg=name)


def test_rates_a_thousand_fold_off_are_refused_and_rate_conflicts_skip_the_file(
        tmp_path, caplog):
    from edgecnn.deploy.errors import DataError, InputError
    from edgecnn.deploy.samples import StdinSource

    with pytest.raises(DataError, match=r"differ 1875-fold .*is one given in kHz\? Rates "
                                        r"are in Hz"):
        data_sample_rate([48000.0, 25.6])
    with pytest.raises(DataError, match=r"windows hold 16 samples, fewer than 64: is the rate "
                                        r"given in kHz\?"):
        spec_for_rate(SignalSpec(), 25.6)
    assert spec_for_rate(SignalSpec(), 25.6, window_length=256).window_length == 256
    with pytest.raises(InputError, match=r"25.6 Hz is 2000x below the model's 51200 Hz"):
        StdinSource(51200.0, stream_rate=25.6, fd=0)
    rig = _rig(tmp_path / "rig", 12000.0)
    np.save(rig / "big.npy", _real(60000) * 1e39)       # beyond float32
    np.save(rig / "dead.npy", np.full(60000, 0.3))
    scipy.io.wavfile.write(rig / "stated.wav", 48000, _real(60000).astype(np.float32))
    with open(rig / "labels.csv", "a") as manifest:
        manifest.write("big.npy,inner,12000\ndead.npy,normal,12000\n"
                       "stated.wav,inner,12000\n")
    spec = SignalSpec(sample_rate=12000.0, window_length=4096)
    with caplog.at_level(logging.WARNING, logger="edgecnn.data"):
        measured = load_dataset("vibration", rig, spec, labels=("inner", "normal"))
    reasons = {s.path: s.reason for s in measured.skipped}
    assert "beyond float32" in reasons["big.npy"] and np.isfinite(measured.items).all()
    assert reasons["stated.wav"].endswith("is sampled at 48000 Hz but labels.csv says "
                                          "12000 Hz; correct one of them"), reasons
    assert "NOTE: 1 recording(s) are one flat value throughout" in caplog.text
    assert "dead.npy" in measured.sources
    # upsampled to a faster model: said, as the runtime says it
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="edgecnn.data"):
        load_dataset("vibration", _rig(tmp_path / "slow", 12000.0),
                     SignalSpec(sample_rate=24000.0, window_length=8192),
                     labels=("inner", "normal"))
    assert "resampled up to the model's 24000 Hz: the model's band above 6000 Hz stays " \
           "empty" in caplog.text


def test_no_usable_recordings_point_at_the_skip_reasons_not_at_the_task(tmp_path):
    from edgecnn.data.samples import no_samples_message

    for i in range(2):
        np.save(tmp_path / f"r{i}.npy", _real(100))
    (tmp_path / "labels.csv").write_text("file,label\nr0.npy,a\nr1.npy,b\n")
    said = no_samples_message(tmp_path, 2, "signal")
    assert "it holds 2 .npy files; the reasons the files were skipped are above" in said
    assert "--task" not in said and ".csv" not in said
    assert "is --task right?" in no_samples_message(tmp_path, 2, "image")


def test_a_labels_csv_from_a_semicolon_spreadsheet_is_read(tmp_path):
    rig = _rig(tmp_path / "rig", 12000.0)
    (rig / "labels.csv").write_text("\ufefffile;label;sample_rate\nnormal.mat;normal;12000,0\n"
                                    "inner.mat;inner;12000\n", encoding="utf-8")
    samples = load_dataset("vibration", rig, SignalSpec(sample_rate=12000.0,
                                                        window_length=4096))
    assert samples.class_names == ("inner", "normal") and samples.skipped == []


def test_labels_csv_from_excel_on_windows_with_full_paths_is_read(tmp_path, caplog):
    rig = _rig(tmp_path / "rig", 12000.0)
    # Excel's plain "CSV" on a German PC: Windows-1252; a script that wrote full paths
    (rig / "labels.csv").write_bytes(
        f"file,label,sample_rate\n{rig / 'normal.mat'},Außenring,12000\n"
        f"inner.mat,Innenring,12000\n".encode("cp1252"))
    with caplog.at_level(logging.WARNING, logger="edgecnn.deploy"):
        samples = load_dataset("vibration", rig, SignalSpec(sample_rate=12000.0,
                                                            window_length=4096))
    assert samples.class_names == ("Außenring", "Innenring") and samples.skipped == []
    assert caplog.text.count("is not UTF-8; read as Windows-1252") == 1
    (rig / "labels.csv").write_text(f"file,label\n{tmp_path / 'elsewhere.mat'},x\n")
    with pytest.raises(DataError, match="elsewhere.mat is outside the data folder"):
        load_dataset("vibration", rig, SignalSpec(sample_rate=12000.0, window_length=4096))


@pytest.mark.parametrize("rate", ["inf", "1e999", "nan", "2e7", "0"])
def test_a_sample_rate_beyond_any_sensor_is_refused_in_one_line(tmp_path, rate):
    rig = _rig(tmp_path / "rig", 12000.0)
    (rig / "labels.csv").write_text(f"file,label,sample_rate\nnormal.mat,normal,{rate}\n"
                                    "inner.mat,inner,12000\n")
    with pytest.raises(DataError, match=f"line 2: sample_rate: expected a positive number "
                                        f"of Hz up to 1e\\+07; found '{rate}'"):
        load_dataset("vibration", rig, SignalSpec(sample_rate=12000.0, window_length=4096))
    stated = tmp_path / "stated.csv"
    stated.write_text(f"# sample_rate={rate}\n" + "\n".join(f"{v:.6f}" for v in _real(5000)))
    with pytest.raises(SourceError, match="states an invalid sample rate"):
        read_recording(stated)
    with pytest.raises(InputError, match="sample rate: expected a positive number of Hz"):
        read_recording(CALIB / "cwru" / IR007, sample_rate=float(rate))



def test_a_csv_rate_line_with_a_unit_or_decimal_comma_is_read_and_one_without_a_number_ignored(
        tmp_path, caplog):
    body = "\n".join(f"{v:.6f}" for v in _real(5000))
    for line, rate in (("# sample_rate: 12000 Hz", 12000.0), ("# fs=25,6 kHz", 25600.0),
                       ("# sample_rate=25600,0", 25600.0), ("# Fs: 51.2kHz", 51200.0)):
        (tmp_path / "r.csv").write_text(f"{line}\n{body}\n")
        assert read_recording(tmp_path / "r.csv").sample_rate == rate, line
    for ambiguous in ("# fs: 12,000 Hz", "# sample_rate=1,024"):   # 12 Hz or 12 kHz?
        (tmp_path / "r.csv").write_text(f"{ambiguous}\n{body}\n")
        assert read_recording(tmp_path / "r.csv", sample_rate=12000.0).sample_rate == 12000.0
    (tmp_path / "r.csv").write_text(f"# sample_rate=see manual\n{body}\n")
    with caplog.at_level(logging.WARNING, logger="edgecnn.deploy"):
        assert read_recording(tmp_path / "r.csv", sample_rate=12000.0).sample_rate == 12000.0
    assert "'# sample_rate=see manual' is not a number of Hz" in caplog.text
    # a workbook saved under .csv is named as such, not read as Windows-1252 text
    (tmp_path / "book.csv").write_bytes(b"PK\x03\x04\x14\x00\x06\x00" + bytes(range(256)) * 4)
    with pytest.raises(SourceError, match="is not a text CSV .*an Excel workbook"):
        read_recording(tmp_path / "book.csv", sample_rate=12000.0)


def test_a_channels_by_samples_array_and_non_utf8_csvs_read_the_same_samples(tmp_path):
    x = _real(6000)
    np.save(tmp_path / "rows.npy", np.stack([x, -x]))          # a row per channel
    for channel, sign in (("0", 1), ("1", -1)):
        recording = read_recording(tmp_path / "rows.npy", channel=channel, sample_rate=12000)
        np.testing.assert_array_equal(recording.samples, sign * x)
    text = "# sample_rate=12000\nBeschleunigung m/s²\n" + \
        "\n".join(f"{v:.6f}".replace(".", ",") for v in x) + "\n"
    for encoding in ("cp1252", "utf-16", "utf-8"):
        path = tmp_path / f"{encoding}.csv"
        path.write_bytes(text.encode(encoding))   # Python's utf-16 starts with a BOM
        recording = read_recording(path)
        assert recording.sample_rate == 12000 and recording.channel == "Beschleunigung m/s²"
        np.testing.assert_allclose(recording.samples, x, atol=5e-7)


def test_a_recording_of_several_columns_says_how_to_choose_one(tmp_path):
    # no --channel given: the message says how to give one, not which default was missed
    x = _real(5000)
    (tmp_path / "h.csv").write_text("# sample_rate=12000\nacc_de,acc_fe\n" + "\n".join(
        f"{a:.6f},{-a:.6f}" for a in x))
    np.save(tmp_path / "two.npy", np.stack([x, -x], axis=1))
    with pytest.raises(SourceError, match=r"holds 2 columns \(acc_de, acc_fe\); choose one "
                                          r"with --channel NAME or --channel INDEX"):
        read_recording(tmp_path / "h.csv")
    with pytest.raises(SourceError, match=r"choose one with --channel INDEX, 0..1$"):
        read_recording(tmp_path / "two.npy", sample_rate=12000.0)
    assert read_recording(tmp_path / "h.csv", channel="acc_fe").samples[0] == \
        pytest.approx(-x[0], abs=1e-6)


def test_a_label_manifest_error_names_the_files_own_line(tmp_path):
    # a DAQ's comment and a blank line above the header: line 6 is line 6
    from edgecnn.data.recording_labels import ManifestRule

    (tmp_path / "labels.csv").write_text("# exported by DAQ\n\nfile,label\na.csv,IR\n\n"
                                         "b.csv,\n")
    with pytest.raises(DataError, match=r"labels.csv line 6: expected a file and a label"):
        ManifestRule(tmp_path / "labels.csv")


def test_a_generic_mat_files_fs_variable_gives_its_rate(tmp_path):
    x = _real(6000)
    scipy.io.savemat(tmp_path / "run.mat", {"vib": x, "Fs": 25600.0})
    recording = read_recording(tmp_path / "run.mat")
    assert recording.sample_rate == 25600.0 and recording.samples.size == x.size
    scipy.io.savemat(tmp_path / "tri.mat", {"acc": np.stack([x, -x, x], axis=1),
                                            "sample_rate": 51200})
    assert read_recording(tmp_path / "tri.mat", channel="acc:1").sample_rate == 51200.0
    with pytest.raises(InputError, match="sampled at 25600 Hz but --sample-rate says 12000"):
        read_recording(tmp_path / "run.mat", sample_rate=12000.0)


def test_a_csv_cut_mid_line_is_read_without_its_last_line_and_a_bad_row_inside_still_fails(
        tmp_path, caplog):
    x = _real(5000)
    rows = "\n".join(f"{a:.6f},{-a:.6f}" for a in x)
    (tmp_path / "cut.csv").write_text(f"# sample_rate=12000\nde,fe\n{rows}\n0.123,")
    with caplog.at_level(logging.WARNING, logger="edgecnn.deploy"):
        recording = read_recording(tmp_path / "cut.csv", channel="fe")
    assert recording.samples.size == 5000 and "ends in a cut line ('0.123,'" in caplog.text
    (tmp_path / "bad.csv").write_text(f"# sample_rate=12000\nde,fe\n0.1,oops\n{rows}\n")
    with pytest.raises(SourceError, match="cannot read recording"):
        read_recording(tmp_path / "bad.csv", channel="fe")
