"""Streaming STFT == offline scipy spectrogram on real calibration recordings."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal as sps

from edgecnn.deploy.errors import InputError
from edgecnn.deploy.preprocess import (
    StreamResampler,
    magnitude_spectrogram,
    preprocess_windows,
    resample,
    window_starts,
)
from edgecnn.deploy.recordings import read_recording
from edgecnn.deploy.spec import SignalSpec
from edgecnn.deploy.stft import StreamingSpectrogram, TensorWriter, default_hop
from runtime_helpers import CALIBRATION

RECORDING = CALIBRATION / "cwru" / "12k_Drive_End_IR007_0_105.mat"
NORMAL_48K = CALIBRATION / "cwru" / "normal_0_97.mat"


@pytest.fixture(scope="module")
def samples() -> np.ndarray:
    rec = read_recording(RECORDING)
    assert rec.sample_rate == 12000.0
    return rec.samples


def _stream(spec, hop, x, seed=0):
    """Push ``x`` in random-sized chunks; return [(start, sxx copy, samples copy)]."""
    st = StreamingSpectrogram(spec, hop)
    rng = np.random.default_rng(seed)
    out, pos = [], 0
    while pos < len(x):
        n = int(rng.integers(1, 3 * spec.window_length // 2))
        for w in st.push(x[pos:pos + n]):
            out.append((w.index, w.start, w.sxx.copy(), w.samples.copy()))
        pos += n
    return st, out


@pytest.mark.parametrize("hop_kind", ["reuse-default", "reuse-step", "no-reuse", "gap"])
def test_streaming_equals_scipy_spectrogram(samples, hop_kind):
    spec = SignalSpec()   # the defaults training uses: 10000-sample windows, 256/32 tukey
    hop = {"reuse-default": None, "reuse-step": spec.hop, "no-reuse": 1000,
           "gap": 12345}[hop_kind]
    st, windows = _stream(spec, hop, samples)
    assert st.reuse == (hop_kind.startswith("reuse"))
    expected = window_starts(len(samples), spec.window_length, st.hop)
    assert [w[1] for w in windows] == list(expected)
    assert [w[0] for w in windows] == list(range(len(expected)))
    for index, start, sxx, window in windows[:: max(1, len(windows) // 25)]:
        segment = samples[start:start + spec.window_length]
        np.testing.assert_array_equal(window, segment)
        # what the model trained on: scipy.signal.spectrogram with the spec's parameters
        _, _, ref = sps.spectrogram(segment, fs=spec.sample_rate, window=spec.window,
                                    nperseg=spec.nperseg, noverlap=spec.noverlap,
                                    detrend=spec.detrend, scaling=spec.scaling,
                                    mode=spec.mode)
        assert sxx.shape == ref.shape == spec.shape[:2]
        np.testing.assert_allclose(sxx, ref, rtol=1e-6, atol=1e-6 * ref.max())
    if st.reuse:   # columns were shared, not recomputed per window
        frames = spec.shape[1]
        assert st.segments_computed < len(windows) * frames


@pytest.mark.parametrize("options", [dict(mode="psd", scaling="density"),
                                     dict(detrend="linear", transform="log"),
                                     dict(detrend="none", nperseg=255, noverlap=10,
                                          window="hann", transform="db", mean=-40.0,
                                          std=12.0)])
def test_other_spec_parameters_and_tensor(samples, options):
    spec = SignalSpec(window_length=4096, **options)
    x = samples[:30000]
    writer = TensorWriter(spec)
    tensor = np.zeros(spec.shape, np.float32)
    for hop in (default_hop(spec), 1500):
        _, windows = _stream(spec, hop, x, seed=hop)
        assert len(windows) == len(window_starts(len(x), spec.window_length, hop))
        for _, start, sxx, _ in windows:
            segment = x[start:start + spec.window_length]
            ref = magnitude_spectrogram(segment, spec)
            np.testing.assert_allclose(sxx, ref, rtol=1e-6, atol=1e-9 * ref.max())
            writer.write(sxx, tensor)
            np.testing.assert_allclose(tensor, preprocess_windows(segment, spec),
                                       rtol=1e-6, atol=1e-6)


def test_48k_recording_resampled_like_offline():
    """The normal clip is 48 kHz: the file source resamples it exactly as training does."""
    from edgecnn.deploy.samples import RecordingSource

    src = RecordingSource(NORMAL_48K, sample_rate=12000.0)
    rec = read_recording(NORMAL_48K)
    assert rec.sample_rate == 48000.0
    np.testing.assert_array_equal(src.samples, resample(rec.samples, 48000.0, 12000.0))
    chunks = []
    while (chunk := src.read()) is not None:
        chunks.append(chunk.samples)
    assert src.exhausted
    np.testing.assert_array_equal(np.concatenate(chunks), src.samples)


def test_reset_starts_a_new_window_sequence(samples):
    spec = SignalSpec(window_length=2048)
    st = StreamingSpectrogram(spec, 1024)
    first = [w.start for w in st.push(samples[:5000])]
    assert first == [0, 1024, 2048]
    st.reset(10000)   # 5000 samples were lost
    after = [(w.start, w.sxx.copy()) for w in st.push(samples[10000:14000])]
    assert [s for s, _ in after] == [10000, 11024]
    np.testing.assert_allclose(after[0][1], magnitude_spectrogram(samples[10000:12048], spec),
                               rtol=1e-6)


def test_stream_resampler_matches_offline_resample(samples):
    x = samples[:20000]
    for rate_from, rate_to in ((48000.0, 12000.0), (44100.0, 12000.0), (8000.0, 12000.0)):
        resampler = StreamResampler(rate_from, rate_to)
        rng = np.random.default_rng(1)
        pieces, pos = [], 0
        while pos < len(x):
            n = int(rng.integers(1, 2000))
            pieces.append(resampler(x[pos:pos + n]))
            pos += n
        streamed = np.concatenate(pieces)
        offline = resample(x, rate_from, rate_to)
        d = resampler.delay
        n = min(len(offline), len(streamed) - d) - 60   # the offline tail sees the end
        np.testing.assert_allclose(streamed[d:d + n], offline[:n], rtol=1e-9, atol=1e-12)


def test_bad_hop_is_an_input_error():
    with pytest.raises(InputError, match="hop"):
        StreamingSpectrogram(SignalSpec(), 0)


@pytest.mark.parametrize("transform", ["none", "log", "log1p", "db"])
def test_window_values_are_the_training_tensor(samples, transform):
    """``values`` (cached per column when columns are shared) == preprocess_windows."""
    spec = SignalSpec(window_length=4096, transform=transform, mean=0.5, std=3.0)
    x = samples[:20000]
    for hop in (spec.hop, 2 * spec.hop, 1000):
        st = StreamingSpectrogram(spec, hop)
        for w in st.push(x):
            tensor = w.values.astype(np.float32)[..., np.newaxis]
            expected = preprocess_windows(x[w.start:w.start + spec.window_length], spec)
            np.testing.assert_allclose(tensor, expected, rtol=1e-6, atol=1e-6)
