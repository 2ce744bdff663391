"""Training-time augmentation: waveform perturbations per utterance, masks and mixup per batch.

Waveform level (16 kHz mono float32, applied to a whole utterance before its spectrogram is
computed, so segmentation, padding and normalisation stay exactly those of scoring):

* :func:`speed_perturb`: Kaldi-style speed perturbation. The samples are read as if recorded at
  ``factor × 16 kHz`` and resampled to 16 kHz (soxr), so the utterance plays ``factor`` times
  faster and every frequency, formants and pitch included, is scaled by ``factor``.
* :func:`add_noise`: pink (1/f) noise at a given signal-to-noise ratio in dB, against the
  utterance's mean power.

Spectrogram level (on an utterance's ``(400, T)`` magnitudes, before normalisation):

* :func:`vtlp`: vocal-tract-length perturbation (Jaitly & Hinton, 2013), a piecewise-linear warp
  of the frequency axis by ``alpha``: formants move, tempo and duration do not (speed
  perturbation moves both).
* :func:`tempo_perturb`: tempo perturbation, the time axis resampled by ``factor``: the
  utterance plays ``factor`` times faster with its pitch and formants where they were (the
  magnitudes a phase vocoder would give; speed perturbation moves the frequencies too).

Batch level (torch, on normalised segments ``(N, 1, 400, 200)``):

* :func:`mask_batch`: SpecAugment-style frequency and time masks, filled with each segment's
  minimum (silence in both D1 scalings).
* :func:`mixup`: convex combinations of pairs of segments and of their targets.

Every function takes its randomness from a ``numpy.random.Generator`` the caller seeds, so a
training run is reproducible and resumes exactly (:mod:`ser_cli.training` seeds one per epoch).
"""

from __future__ import annotations

import numpy as np
import torch

from ser_cli.errors import ConfigError

__all__ = ["speed_perturb", "vtlp", "tempo_perturb", "pink_noise", "add_noise", "mask_batch", "mixup"]


def speed_perturb(samples: np.ndarray, factor: float, sample_rate: int = 16_000) -> np.ndarray:
    """Play ``samples`` ``factor`` times faster (tempo and pitch), by resampling.

    Parameters
    ----------
    samples : np.ndarray, shape (n,), float32
        Mono audio at ``sample_rate``.
    factor : float
        Speed factor, > 0 (0.9: 10 % slower and lower; 1.0: unchanged, returned as is).
    sample_rate : int
        Rate of ``samples`` and of the result, Hz.

    Returns
    -------
    np.ndarray, shape (round(n / factor),), float32

    Raises
    ------
    ConfigError
        ``factor`` not a positive finite number.

    Examples
    --------
    >>> x = np.zeros(16000, np.float32)
    >>> len(speed_perturb(x, 1.1)), len(speed_perturb(x, 0.9))
    (14545, 17778)
    """
    if not (np.isfinite(factor) and factor > 0):
        raise ConfigError(f"factor={factor!r} must be a positive number")
    if factor == 1.0 or len(samples) == 0:
        return samples
    import soxr

    return soxr.resample(samples, sample_rate * float(factor), sample_rate, quality="HQ").astype(
        np.float32, copy=False
    )


def vtlp(spec: np.ndarray, alpha: float, boundary: float = 0.9) -> np.ndarray:
    """Warp the frequency axis of a magnitude spectrogram by ``alpha`` (VTLP).

    Jaitly & Hinton's piecewise-linear warp with the band's top bin as the fixed end point (the
    spectrogram holds 0–4 kHz only, so nothing beyond it can be moved in): below the breakpoint
    ``b = boundary · top · min(alpha, 1)`` a component at bin ``f`` moves to ``alpha · f``; above
    it, ``[b / alpha, top]`` is mapped linearly onto ``[b, top]``. Each output bin reads the input
    at its source frequency, interpolating linearly between bins.

    Parameters
    ----------
    spec : np.ndarray, shape (F, T)
        Magnitudes, frequency × time.
    alpha : float
        Warp factor in [0.5, 1.5]: > 1 moves formants up (a shorter vocal tract), < 1 down;
        1.0 returns ``spec`` unchanged.
    boundary : float
        Breakpoint as a fraction of the band, in (0, 1).

    Returns
    -------
    np.ndarray, shape (F, T), float32

    Raises
    ------
    ConfigError
        ``alpha`` or ``boundary`` out of range.

    Examples
    --------
    >>> spec = np.zeros((400, 3), np.float32); spec[100] = 1.0
    >>> int(np.argmax(vtlp(spec, 1.1)[:, 0])), int(np.argmax(vtlp(spec, 0.9)[:, 0]))
    (110, 90)
    """
    if not (np.isfinite(alpha) and 0.5 <= alpha <= 1.5):
        raise ConfigError(f"alpha={alpha!r} must lie in [0.5, 1.5]")
    if not 0 < boundary < 1:
        raise ConfigError(f"boundary={boundary!r} must lie in (0, 1)")
    if alpha == 1.0:
        return spec
    top = spec.shape[0] - 1
    out_bins = np.arange(spec.shape[0], dtype=np.float64)
    b = boundary * top * min(alpha, 1.0)
    source = np.where(out_bins <= b, out_bins / alpha,
                      top - (top - out_bins) * (top - b / alpha) / (top - b))
    return _read_between(spec, np.clip(source, 0, top), axis=0)


def tempo_perturb(spec: np.ndarray, factor: float) -> np.ndarray:
    """Play a magnitude spectrogram ``factor`` times faster, keeping its frequencies.

    Output frame ``t`` reads the input at frame ``t · factor``, interpolating linearly between
    frames, so the result has ``round(T / factor)`` frames (at least one). This is the magnitude
    half of a phase vocoder's time stretch (whose output phases the front-end discards): tempo and
    duration change, pitch and formants do not.

    Parameters
    ----------
    spec : np.ndarray, shape (F, T)
        Magnitudes, frequency × time.
    factor : float
        Tempo factor in [0.5, 2] (1.1: 10 % faster and shorter; 1.0 returns ``spec`` unchanged).

    Returns
    -------
    np.ndarray, shape (F, round(T / factor)), float32

    Raises
    ------
    ConfigError
        ``factor`` out of range.

    Examples
    --------
    >>> spec = np.zeros((400, 100), np.float32); spec[:, 50] = 1.0
    >>> out = tempo_perturb(spec, 1.25)
    >>> out.shape, int(np.argmax(out[0]))
    ((400, 80), 40)
    """
    if not (np.isfinite(factor) and 0.5 <= factor <= 2.0):
        raise ConfigError(f"factor={factor!r} must lie in [0.5, 2]")
    if factor == 1.0 or spec.shape[1] < 2:
        return spec
    n_out = max(1, round(spec.shape[1] / factor))
    source = np.minimum(np.arange(n_out, dtype=np.float64) * factor, spec.shape[1] - 1)
    return _read_between(spec, source, axis=1)


def _read_between(spec: np.ndarray, source: np.ndarray, axis: int) -> np.ndarray:
    """``spec`` read at fractional positions ``source`` (within ``[0, n - 1]``, n >= 2) along
    ``axis`` (0: frequency, 1: time), interpolating linearly between neighbours; float32."""
    lo = np.minimum(np.floor(source).astype(np.int64), spec.shape[axis] - 2)
    w = (source - lo).astype(np.float32)
    w = w[:, None] if axis == 0 else w[None, :]
    below, above = np.take(spec, lo, axis=axis), np.take(spec, lo + 1, axis=axis)
    return ((1 - w) * below + w * above).astype(np.float32, copy=False)


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of pink noise (power spectral density ∝ 1/f), unit mean power, float32.

    White Gaussian noise is shaped in the frequency domain by ``1/sqrt(f)`` (the DC bin is set to
    zero), then scaled to unit mean power.

    >>> x = pink_noise(16000, np.random.default_rng(0))
    >>> x.shape, round(float(np.mean(x ** 2)), 3)
    ((16000,), 1.0)
    """
    if n <= 0:
        return np.zeros(0, dtype=np.float32)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spectrum), dtype=np.float64)
    f[0] = np.inf
    x = np.fft.irfft(spectrum / np.sqrt(f), n)
    power = float(np.mean(x * x))
    return (x / np.sqrt(power) if power > 0 else x).astype(np.float32)


def add_noise(samples: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """``samples`` plus pink noise at ``snr_db`` dB below their mean power.

    Parameters
    ----------
    samples : np.ndarray, shape (n,), float32
    snr_db : float
        Signal-to-noise ratio in dB: ``10 log10(mean(x²) / mean(noise²))``.
    rng : numpy.random.Generator

    Returns
    -------
    np.ndarray, shape (n,), float32
        A silent input is returned unchanged (its SNR is undefined).

    Examples
    --------
    >>> x = np.sin(np.arange(16000) * 0.1).astype(np.float32)
    >>> noisy = add_noise(x, 10.0, np.random.default_rng(0))
    >>> round(float(10 * np.log10(np.mean(x ** 2) / np.mean((noisy - x) ** 2))), 2)
    10.0
    """
    power = float(np.mean(np.square(samples, dtype=np.float64))) if len(samples) else 0.0
    if power <= 0:
        return samples
    noise = pink_noise(len(samples), rng) * np.float32(np.sqrt(power / 10.0 ** (snr_db / 10.0)))
    return (samples + noise).astype(np.float32, copy=False)


def mask_batch(
    x: torch.Tensor,
    rng: np.random.Generator,
    *,
    freq_masks: int,
    freq_mask_bins: int,
    time_masks: int,
    time_mask_frames: int,
) -> torch.Tensor:
    """SpecAugment-style masks on a batch of segments.

    Parameters
    ----------
    x : torch.Tensor, shape (N, 1, F, T)
        Normalised segments.
    rng : numpy.random.Generator
    freq_masks, time_masks : int
        Masks per segment along frequency and along time.
    freq_mask_bins, time_mask_frames : int
        Largest mask width; each width is uniform in ``0 … max``, its start uniform over the
        positions where it fits.

    Returns
    -------
    torch.Tensor
        Shape of ``x``, every masked cell set to its segment's minimum.
    """
    n, _, n_freq, n_time = x.shape
    if n == 0 or (freq_masks == 0 and time_masks == 0):
        return x
    mask = torch.zeros((n, 1, n_freq, n_time), dtype=torch.bool)
    for count, max_width, size, dim in (
        (freq_masks, freq_mask_bins, n_freq, 2),
        (time_masks, time_mask_frames, n_time, 3),
    ):
        positions = torch.arange(size)
        for _ in range(count):
            width = rng.integers(0, min(max_width, size) + 1, size=n)
            start = rng.integers(0, size - width + 1)
            hit = (positions[None, :] >= torch.from_numpy(start)[:, None]) & (
                positions[None, :] < torch.from_numpy(start + width)[:, None]
            )  # (N, size)
            shape = (n, 1, size, 1) if dim == 2 else (n, 1, 1, size)
            mask |= hit.reshape(shape)
    return torch.where(mask.to(x.device), x.amin(dim=(1, 2, 3), keepdim=True), x)


def mixup(
    x: torch.Tensor, alpha: float, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Mixup (Zhang et al., 2018): ``lam · x + (1 - lam) · x[perm]``, ``lam ~ Beta(alpha, alpha)``.

    Parameters
    ----------
    x : torch.Tensor, shape (N, ...)
    alpha : float
        > 0.
    rng : numpy.random.Generator

    Returns
    -------
    mixed : torch.Tensor, shape of ``x``
    perm : torch.Tensor, shape (N,), int64
        The partner of each row; the loss is ``lam · L(y) + (1 - lam) · L(y[perm])``.
    lam : float
        In [0.5, 1]: each row stays closer to its own segment, whose label it keeps.
    """
    lam = float(rng.beta(alpha, alpha))
    lam = max(lam, 1.0 - lam)
    perm = torch.from_numpy(rng.permutation(x.shape[0]))
    return lam * x + (1.0 - lam) * x.index_select(0, perm.to(x.device)), perm, lam
