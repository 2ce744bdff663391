"""Augmentation: speed perturbation moves frequencies, noise hits its SNR, masks and mixup."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ser_cli import features
from ser_cli.augment import (add_noise, mask_batch, mixup, pink_noise, speed_perturb, tempo_perturb,
                             vtlp)
from ser_cli.errors import ConfigError
import signals


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_speed_perturb_scales_duration_and_frequency(factor):
    x = signals.tone(1000.0, 2.0)
    y = speed_perturb(x, factor)
    assert y.dtype == np.float32
    assert len(y) == pytest.approx(len(x) / factor, abs=1)
    # 1 kHz peaks in bin 100 (10 Hz bins); played `factor` times faster it moves to 100 * factor
    peak = int(np.argmax(features.spectrogram(y)[:, 50:-50].mean(axis=1)))
    assert peak == round(100 * factor)


def test_speed_perturb_identity_and_errors():
    x = signals.noise(0.5)
    assert speed_perturb(x, 1.0) is x
    with pytest.raises(ConfigError, match="factor"):
        speed_perturb(x, 0.0)


@pytest.mark.parametrize("alpha", [0.9, 1.1])
def test_vtlp_moves_formants_but_not_time(alpha):
    x = signals.vowel(120.0, duration_s=1.0, seed=3)
    spec = features.spectrogram(x)
    warped = vtlp(spec, alpha)
    assert warped.shape == spec.shape and warped.dtype == np.float32
    # a 1 kHz tone (bin 100) moves to bin 100 * alpha; the frames stay where they were
    tone = features.spectrogram(signals.tone(1000.0, 1.0))
    peak = np.argmax(vtlp(tone, alpha)[:, 10:-10].mean(axis=1))
    assert peak == round(100 * alpha)
    # the warp is monotone and keeps both ends of the band: bin 0 and the top bin stay put
    impulse = np.eye(400, dtype=np.float32)
    moved = np.argmax(vtlp(impulse, alpha), axis=0)  # where each input bin ends up
    assert moved[0] == 0 and moved[-1] == 399 and np.all(np.diff(moved) >= 0)
    # loud frames stay loud: the warp is per frame
    np.testing.assert_allclose(warped.sum(axis=0) / spec.sum(axis=0), 1.0, atol=0.15)


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_tempo_perturb_changes_duration_but_not_pitch(factor):
    x = signals.vowel(120.0, duration_s=1.0, seed=3)
    spec = features.spectrogram(x)
    stretched = tempo_perturb(spec, factor)
    assert stretched.shape == (400, round(spec.shape[1] / factor)) and stretched.dtype == np.float32
    # a 1 kHz tone stays in bin 100 (speed perturbation would move it to 100 * factor)
    tone = features.spectrogram(signals.tone(1000.0, 1.0))
    assert np.argmax(tempo_perturb(tone, factor)[:, 10:-10].mean(axis=1)) == 100
    # a click at frame 50 moves to frame 50 / factor; the spectrum of each frame is kept
    click = np.zeros((400, 101), np.float32)
    click[:, 50] = np.linspace(1.0, 2.0, 400)
    out = tempo_perturb(click, factor)
    assert abs(int(np.argmax(out[0])) - 50 / factor) <= 1
    column = out[:, int(np.argmax(out[0]))]
    np.testing.assert_allclose(column / column[0], np.linspace(1.0, 2.0, 400), rtol=1e-5)
    # the utterance's energy per frame stays the same on average
    assert stretched.mean() == pytest.approx(spec.mean(), rel=0.05)


def test_tempo_perturb_identity_and_errors():
    spec = np.random.default_rng(0).random((400, 5)).astype(np.float32)
    assert tempo_perturb(spec, 1.0) is spec
    assert tempo_perturb(spec[:, :1], 1.1).shape == (400, 1)
    for factor in (0.4, 2.5, float("nan")):
        with pytest.raises(ConfigError, match="factor"):
            tempo_perturb(spec, factor)


def test_vtlp_identity_and_errors():
    spec = np.random.default_rng(0).random((400, 5)).astype(np.float32)
    assert vtlp(spec, 1.0) is spec
    for alpha in (0.4, 1.6, float("nan")):
        with pytest.raises(ConfigError, match="alpha"):
            vtlp(spec, alpha)
    with pytest.raises(ConfigError, match="boundary"):
        vtlp(spec, 1.1, boundary=1.0)


def test_pink_noise_falls_3_db_per_octave():
    x = pink_noise(1 << 16, np.random.default_rng(0)).astype(np.float64)
    power = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / 16000)
    band = lambda lo: power[(f >= lo) & (f < 2 * lo)].mean()  # noqa: E731
    # 1/f: each octave has half the power density of the one below (-3 dB)
    assert 10 * np.log10(band(250) / band(500)) == pytest.approx(3.0, abs=0.5)
    assert 10 * np.log10(band(1000) / band(2000)) == pytest.approx(3.0, abs=0.5)


@pytest.mark.parametrize("snr_db", [0.0, 10.0, 30.0])
def test_add_noise_hits_the_snr(snr_db):
    x = signals.vowel(120.0, duration_s=1.0)
    y = add_noise(x, snr_db, np.random.default_rng(1))
    measured = 10 * np.log10(np.mean(x.astype(np.float64) ** 2) / np.mean((y - x).astype(np.float64) ** 2))
    assert measured == pytest.approx(snr_db, abs=0.01)
    silent = np.zeros(100, np.float32)
    assert add_noise(silent, 10.0, np.random.default_rng(0)) is silent


def test_masks_fill_whole_bands_with_the_segment_minimum():
    x = torch.rand(3, 1, 400, 200, generator=torch.Generator().manual_seed(0)) + 0.5
    x[1, 0, 7, 9] = 0.1  # segment 1's minimum
    out = mask_batch(x.clone(), np.random.default_rng(0), freq_masks=1, freq_mask_bins=40,
                     time_masks=1, time_mask_frames=30)
    assert out.shape == x.shape
    for i in range(3):
        low = x[i].min()
        assert torch.all(out[i, 0][out[i, 0] != x[i, 0]] == low)
        # cells at the minimum: the masks' whole rows and columns (a masked cell that already
        # held the minimum is unchanged, so "at the minimum", not "changed", marks the masks)
        at_min = out[i, 0] == low
        rows = at_min.all(dim=1).sum().item()  # whole masked frequency rows
        cols = at_min.all(dim=0).sum().item()  # whole masked time columns
        assert rows <= 40 and cols <= 30  # a mask may be 0 wide
        # every cell at the minimum lies in a fully masked row or column, or held it before
        full = at_min.all(dim=1)[:, None] | at_min.all(dim=0)[None, :]
        assert torch.equal(at_min & ~full & (x[i, 0] != low), torch.zeros_like(at_min))
    unchanged = mask_batch(x.clone(), np.random.default_rng(0), freq_masks=0, freq_mask_bins=40,
                           time_masks=0, time_mask_frames=30)
    assert torch.equal(unchanged, x)


def test_mixup_is_a_convex_pairing():
    x = torch.arange(8, dtype=torch.float32).reshape(4, 2)
    mixed, perm, lam = mixup(x, 0.2, np.random.default_rng(3))
    assert 0.5 <= lam <= 1.0
    assert sorted(perm.tolist()) == [0, 1, 2, 3]
    torch.testing.assert_close(mixed, lam * x + (1 - lam) * x[perm])
