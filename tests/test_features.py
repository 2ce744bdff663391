"""ser_cli.features: the C++ spectrogram against a float64 NumPy reference, normalisation,
streaming, and the errors a user can cause."""

from __future__ import annotations

import numpy as np
import pytest

from ser_cli import features
from ser_cli.errors import ConfigError
from ser_cli.features import FeatureConfig, SpectrogramStream, normalize, spectrogram
import signals


def reference(x, n_bins=400) -> np.ndarray:
    """float64 ``|rfft(frame * hamming, n=1600)[:n_bins]|``, (n_bins, n_frames)."""
    x = np.asarray(x, dtype=np.float64)
    n = features.n_frames(x.size)
    if n == 0:
        return np.zeros((n_bins, 0))
    frames = np.lib.stride_tricks.sliding_window_view(x, 640)[::160][:n]
    return np.abs(np.fft.rfft(frames * np.hamming(640), n=1600, axis=1)[:, :n_bins]).T


def assert_matches_reference(x, tol=1e-5):
    got = spectrogram(x)
    ref = reference(x)
    assert got.shape == ref.shape and got.dtype == np.float32 and got.flags.c_contiguous
    if ref.size:
        # The frame's peak over its whole spectrum (0 - 8 kHz): float32 rounding error scales
        # with the frame's energy, wherever it lies, not with what falls below 4 kHz.
        peak = reference(x, 801).max(axis=0)
        err = np.abs(got - ref).max(axis=0)
        assert np.all(err <= tol * peak + 1e-30), float((err / np.maximum(peak, 1e-30)).max())


SIGNALS = {
    "noise": lambda: signals.noise(1.0, seed=1),
    "loud-noise": lambda: signals.noise(0.5, amplitude=1000.0, seed=2),
    "tone-1k": lambda: signals.tone(1000.0, 0.5),
    "tone-off-bin": lambda: signals.tone(1234.5, 0.5, phase=0.3),
    "tone-above-4k": lambda: signals.tone(6000.0, 0.5),
    "chirp": lambda: signals.chirp(50.0, 7900.0, 1.0),
    "square-full-scale": lambda: signals.square(440.0, 0.5),
    "vowel": lambda: signals.vowel(duration_s=0.5),
    "silence": lambda: signals.silence(0.3),
    "impulse": lambda: np.eye(1, 2000, 777, dtype=np.float32)[0],
}


@pytest.mark.parametrize("name", sorted(SIGNALS))
def test_matches_float64_rfft(name):
    assert_matches_reference(SIGNALS[name]())


def test_float64_input_is_converted():
    x = signals.noise(0.2, seed=3).astype(np.float64)
    assert np.array_equal(spectrogram(x), spectrogram(x.astype(np.float32)))


def test_silence_is_exactly_zero():
    assert not spectrogram(signals.silence(0.2)).any()


def test_1khz_tone_peaks_in_bin_100():
    spec = spectrogram(signals.tone(1000.0, 1.0))
    assert np.all(spec.argmax(axis=0) == 100)


@pytest.mark.parametrize(
    "n, frames", [(0, 0), (1, 0), (639, 0), (640, 1), (641, 1), (799, 1), (800, 2),
                  (16000, 97), (640 + 160 * 7, 8), (640 + 160 * 8, 9), (640 + 160 * 15, 16)]
)
def test_shapes(n, frames):
    x = signals.noise(n / 16000, seed=4) if n else np.zeros(0, np.float32)
    spec = spectrogram(x)
    assert spec.shape == (400, frames) and spec.dtype == np.float32
    assert features.n_frames(n) == frames
    assert_matches_reference(x)


def test_non_contiguous_input_is_copied():
    x = signals.noise(0.4, seed=5)
    assert np.array_equal(spectrogram(x[::2]), spectrogram(np.ascontiguousarray(x[::2])))


def test_threads_give_identical_results():
    x = signals.noise(1.5, seed=6)  # 147 frames: several groups of 8 plus a partial group
    one = spectrogram(x, threads=1)
    for t in (2, 3, 7, None):
        assert np.array_equal(spectrogram(x, threads=t), one)


def test_frame_is_independent_of_position():
    # A frame computed alone (the partial-group path) equals the same frame inside a long run.
    x = signals.chirp(duration_s=0.5)
    whole = spectrogram(x)
    for i in (0, 5, 8, 13, whole.shape[1] - 1):
        alone = spectrogram(x[160 * i : 160 * i + 640])
        assert np.array_equal(alone[:, 0], whole[:, i])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_stream_equals_whole(seed):
    rng = np.random.default_rng(seed)
    x = signals.noise(1.0, seed=seed) + signals.tone(300.0, 1.0)
    sizes = rng.integers(0, [50, 481, 2000, 5000][seed], size=200)
    stream = SpectrogramStream()
    parts, pos = [], 0
    for s in sizes:
        parts.append(stream.push(x[pos : pos + s]))
        pos += s
        if pos >= x.size:
            break
    parts.append(stream.push(x[pos:]))
    got = np.concatenate(parts, axis=1)
    whole = spectrogram(x)
    assert np.array_equal(got, whole)
    assert stream.n_frames == whole.shape[1] and stream.n_samples == x.size
    assert all(p.shape[0] == 400 and p.dtype == np.float32 for p in parts)


def test_stream_small_blocks():
    x = signals.noise(0.1, seed=7)
    stream = SpectrogramStream(threads=1)
    parts = [stream.push(x[i : i + 100]) for i in range(0, x.size, 100)]
    assert [p.shape[1] for p in parts[:10]] == [0] * 6 + [1, 1, 0, 1]
    assert np.array_equal(np.concatenate(parts, axis=1), spectrogram(x))


# --- the 0 - 8 kHz band ----------------------------------------------------------------------


def reference_wide(x) -> np.ndarray:
    """float64 ``|rfft(frame * hamming, n=800)[:400]|``: 0 - 7980 Hz, 20 Hz per row."""
    x = np.asarray(x, dtype=np.float64)
    n = features.n_frames(x.size)
    if n == 0:
        return np.zeros((400, 0))
    frames = np.lib.stride_tricks.sliding_window_view(x, 640)[::160][:n]
    return np.abs(np.fft.rfft(frames * np.hamming(640), n=800, axis=1)[:, :400]).T


@pytest.mark.parametrize("name", sorted(SIGNALS))
def test_wide_band_matches_float64_rfft(name):
    x = SIGNALS[name]()
    got, ref = spectrogram(x, fmax=8000), reference_wide(x)
    assert got.shape == ref.shape and got.dtype == np.float32 and got.flags.c_contiguous
    if ref.size:
        err = np.abs(got - ref).max(axis=0)
        assert np.all(err <= 1e-5 * reference(x, 801).max(axis=0) + 1e-30)


def test_wide_band_rows_are_20_hz():
    # 6 kHz is row 300 of the wide band, beyond the default's 400 rows; 4 kHz (row 200) is
    # the bin neither kernel call reaches, computed on its own
    for hz, row in ((1000.0, 50), (4000.0, 200), (6000.0, 300), (7900.0, 395)):
        assert np.all(spectrogram(signals.tone(hz, 0.5), fmax=8000).argmax(axis=0) == row)


def test_wide_band_low_rows_are_the_default_even_bins():
    x = signals.vowel(duration_s=0.5)
    assert np.array_equal(spectrogram(x, fmax=8000)[:200], spectrogram(x)[0::2])


def test_wide_band_is_split_and_thread_invariant():
    x = signals.noise(1.5, seed=8) + signals.chirp(50.0, 7900.0, 1.5)
    whole = spectrogram(x, fmax=8000, threads=1)
    for t in (2, 3, None):
        assert np.array_equal(spectrogram(x, fmax=8000, threads=t), whole)
    for i in (0, 7, whole.shape[1] - 1):
        assert np.array_equal(spectrogram(x[160 * i : 160 * i + 640], fmax=8000)[:, 0], whole[:, i])
    stream, parts = SpectrogramStream(fmax=8000), []
    for start in range(0, x.size, 1234):
        parts.append(stream.push(x[start : start + 1234]))
    assert np.array_equal(np.concatenate(parts, axis=1), whole)


@pytest.mark.parametrize("fmax", [3000, 8000.0, True, "8000", None])
def test_bad_fmax_is_rejected(fmax):
    with pytest.raises(ConfigError, match="fmax="):
        spectrogram(np.zeros(1000, np.float32), fmax=fmax)
    with pytest.raises(ConfigError, match="fmax="):
        SpectrogramStream(fmax=fmax)
    with pytest.raises(ConfigError, match="FeatureConfig: fmax="):
        FeatureConfig(fmax=fmax)


def test_default_fmax_is_left_out_of_saved_configs():
    # so every config, cache key and fingerprint made before the option existed stays the same
    from ser_cli.model import config_dict

    assert "fmax" not in config_dict(FeatureConfig())
    assert config_dict(FeatureConfig(fmax=8000))["fmax"] == 8000


# --- normalize --------------------------------------------------------------------------------


def test_normalize_max_range_and_formula():
    spec = spectrogram(signals.vowel(duration_s=0.5))
    y = normalize(spec, "max")
    assert y.dtype == np.float32 and y.shape == spec.shape
    assert y.min() >= 0 and y.max() == pytest.approx(1.0)
    x = spec / spec.max()
    expected = np.log1p(255 * x) / np.log1p(255)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)


def test_normalize_minmax_range_and_formula():
    spec = spectrogram(signals.chirp(duration_s=0.5)).astype(np.float64)
    y = normalize(spec, "minmax", mu=100.0)
    assert y.min() == pytest.approx(-1.0) and y.max() == pytest.approx(1.0)
    x = 2 * (spec - spec.min()) / (spec.max() - spec.min()) - 1
    expected = np.sign(x) * np.log1p(100 * np.abs(x)) / np.log1p(100)
    # float32 rounding of the affine map (~1e-7) is amplified by the mu-law slope at 0,
    # mu / ln(1 + mu) ~ 22, hence the absolute tolerance.
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode, value", [("max", 0.0), ("minmax", -1.0)])
def test_normalize_silence_is_finite(mode, value):
    y = normalize(np.zeros((3, 400, 200), np.float32), mode)
    assert np.all(y == value)


def test_normalize_batch_scales_each_segment_alone():
    rng = np.random.default_rng(8)
    batch = np.abs(rng.standard_normal((2, 3, 400, 20))).astype(np.float32)
    batch[0, 1] *= 1000.0
    batch[1, 2] = 0.0
    for mode in ("max", "minmax"):
        y = normalize(batch, mode)
        assert y.shape == batch.shape
        for i in range(2):
            for j in range(3):
                assert np.array_equal(y[i, j], normalize(batch[i, j], mode))


def test_normalize_empty_time_axis():
    assert normalize(np.zeros((400, 0), np.float32)).shape == (400, 0)


# --- configuration and errors -----------------------------------------------------------------


def test_feature_config_defaults_are_the_paper():
    cfg = FeatureConfig()
    assert (cfg.sample_rate, cfg.win_length, cfg.hop_length, cfg.n_fft, cfg.n_bins) == (
        16000, 640, 160, 1600, 400)
    assert cfg.normalization == "max" and cfg.mu == 255.0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"sample_rate": 22050}, "sample_rate=22050"),
        ({"hop_length": 128}, "hop_length=128"),
        ({"win_length": 640.0}, "win_length=640.0"),
        ({"n_fft": 2048}, "n_fft=2048"),
        ({"n_bins": 401}, "n_bins=401"),
        ({"normalization": "log"}, "normalization='log'"),
        ({"mu": 0.0}, "mu=0.0"),
        ({"mu": float("nan")}, "mu=nan"),
    ],
)
def test_feature_config_rejects(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        FeatureConfig(**kwargs)


@pytest.mark.parametrize(
    "samples, match",
    [
        (np.zeros((2, 1000), np.float32), r"1-D .*shape \(2, 1000\).*mix channels down"),
        (np.zeros(1000, np.int16), r"dtype int16.*x / 32768"),
        (np.zeros(1000, np.complex64), "dtype complex64"),
        (np.zeros(1000, bool), "dtype bool"),
        (np.array(["a"] * 1000, dtype=object), "dtype object"),
        (np.r_[np.zeros(700, np.float32), np.nan], r"NaN or Inf \(first at index 700"),
        (np.r_[np.zeros(5, np.float32), np.inf, -np.inf], "index 5"),
    ],
)
def test_spectrogram_rejects_bad_samples(samples, match):
    with pytest.raises(ConfigError, match=match):
        spectrogram(samples)


def test_large_finite_values_are_accepted():
    x = np.full(1000, 3e38, np.float32)  # the float32 sum overflows; the samples are finite
    assert spectrogram(x).shape == (400, 3)


@pytest.mark.parametrize("threads", [0, -1, 1.5, True, "2"])
def test_spectrogram_rejects_bad_threads(threads):
    with pytest.raises(ConfigError, match="threads="):
        spectrogram(np.zeros(1000, np.float32), threads=threads)


def test_stream_rejects_bad_block_and_stays_usable():
    stream = SpectrogramStream()
    stream.push(np.zeros(500, np.float32))
    with pytest.raises(ConfigError, match="block: .*NaN"):
        stream.push(np.array([np.nan], np.float32))
    assert stream.n_samples == 500
    assert stream.push(np.zeros(140, np.float32)).shape == (400, 1)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"mode": "minmax2"}, "mode='minmax2'"),
        ({"mode": "max", "mu": -1.0}, "mu=-1.0"),
    ],
)
def test_normalize_rejects_bad_settings(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        normalize(np.zeros((400, 3), np.float32), **kwargs)


@pytest.mark.parametrize(
    "spec, match",
    [
        (np.zeros((200, 400), np.float32), r"\(\.\.\., 400, T\).*\(200, 400\)"),
        (np.zeros(400, np.float32), r"got \(400,\)"),
        (np.full((400, 2), np.nan, np.float32), "NaN"),
    ],
)
def test_normalize_rejects_bad_spec(spec, match):
    with pytest.raises(ConfigError, match=match):
        normalize(spec)


def test_core_binding_refuses_to_convert():
    from ser_cli import _core

    with pytest.raises(TypeError):
        _core.spectrogram(np.zeros(1000, np.float64), 1)
    with pytest.raises(TypeError):
        _core.spectrogram(np.zeros(2000, np.float32)[::2], 1)
    with pytest.raises(ValueError, match="1-D"):
        _core.spectrogram(np.zeros((2, 1000), np.float32), 1)
    with pytest.raises(ValueError, match="threads=0"):
        _core.spectrogram(np.zeros(1000, np.float32), 0)
