"""Synthetic test signals shared by the test modules (no corpus is ever read by a test).

Every generator is deterministic: randomness comes from a local ``numpy.random.Generator``
seeded by the ``seed`` argument. Signals are float32 in [-1, 1] unless said otherwise; durations
are in seconds (``duration_s``), rates in Hz. Other modules may append generators here.
"""

from __future__ import annotations

import os

import numpy as np
import soundfile as sf

SAMPLE_RATE = 16000


def _time(duration_s: float, sample_rate: int) -> np.ndarray:
    return np.arange(int(round(duration_s * sample_rate))) / sample_rate


def tone(freq_hz: float = 1000.0, duration_s: float = 1.0, *, sample_rate: int = SAMPLE_RATE,
         amplitude: float = 0.5, phase: float = 0.0) -> np.ndarray:
    """Sine ``amplitude * sin(2 pi f t + phase)``, shape (n,), float32."""
    t = _time(duration_s, sample_rate)
    return (amplitude * np.sin(2 * np.pi * freq_hz * t + phase)).astype(np.float32)


def noise(duration_s: float = 1.0, *, sample_rate: int = SAMPLE_RATE, amplitude: float = 0.1,
          seed: int = 0, channels: int | None = None) -> np.ndarray:
    """Seeded white Gaussian noise with standard deviation ``amplitude``, float32, clipped to
    [-1, 1]; shape (n,), or (n, channels) when ``channels`` is given."""
    rng = np.random.default_rng(seed)
    n = int(round(duration_s * sample_rate))
    shape = (n,) if channels is None else (n, channels)
    return np.clip(amplitude * rng.standard_normal(shape), -1.0, 1.0).astype(np.float32)


def chirp(f0_hz: float = 100.0, f1_hz: float = 7000.0, duration_s: float = 1.0, *,
          sample_rate: int = SAMPLE_RATE, amplitude: float = 0.5) -> np.ndarray:
    """Linear sweep from ``f0_hz`` to ``f1_hz`` over ``duration_s``, float32."""
    t = _time(duration_s, sample_rate)
    rate = (f1_hz - f0_hz) / max(duration_s, 1e-12)
    return (amplitude * np.sin(2 * np.pi * (f0_hz * t + 0.5 * rate * t * t))).astype(np.float32)


def square(freq_hz: float = 440.0, duration_s: float = 1.0, *, sample_rate: int = SAMPLE_RATE,
           amplitude: float = 1.0) -> np.ndarray:
    """Square wave of +-``amplitude`` (full scale by default), float32."""
    t = _time(duration_s, sample_rate)
    s = np.where(np.sin(2 * np.pi * freq_hz * t) >= 0, 1.0, -1.0)
    return (amplitude * s).astype(np.float32)


def silence(duration_s: float = 1.0, *, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """All-zero signal, float32."""
    return np.zeros(int(round(duration_s * sample_rate)), dtype=np.float32)


def vowel(f0_hz: float = 120.0, formants_hz=(700.0, 1200.0, 2600.0), duration_s: float = 1.0,
          *, sample_rate: int = SAMPLE_RATE, amplitude: float = 0.5, jitter: float = 0.01,
          seed: int = 0) -> np.ndarray:
    """Formant-like vowel: a glottal pulse train at ``f0_hz`` (with seeded pitch jitter)
    through second-order resonators at ``formants_hz`` (bandwidth 80 Hz each), peak-normalised
    to ``amplitude``, float32. A speech-like stand-in with harmonics and spectral envelope."""
    rng = np.random.default_rng(seed)
    n = int(round(duration_s * sample_rate))
    source = np.zeros(n)
    pos = 0.0
    while pos < n:
        source[int(pos)] = 1.0
        pos += sample_rate / (f0_hz * (1.0 + jitter * rng.standard_normal()))
    y = source
    for f in formants_hz:
        r = np.exp(-np.pi * 80.0 / sample_rate)
        a1, a2 = -2 * r * np.cos(2 * np.pi * f / sample_rate), r * r
        out = np.zeros(n)
        y1 = y2 = 0.0
        for i in range(n):  # short signals only: a plain IIR loop keeps this dependency-free
            y0 = y[i] - a1 * y1 - a2 * y2
            out[i] = y0
            y2, y1 = y1, y0
        y = out
    peak = np.abs(y).max()
    return (amplitude * y / peak if peak > 0 else y).astype(np.float32)


def write_tone(path: str | os.PathLike, sample_rate: int, *, freq_hz: float = 1000.0,
               duration_s: float = 0.5, channels: int = 1, subtype: str | None = None,
               format: str | None = None) -> np.ndarray:
    """Write a tone on every channel (channel c scaled by 1/(c+1)) with soundfile; return the
    (frames, channels) float64 data written."""
    x = tone(freq_hz, duration_s, sample_rate=sample_rate).astype(np.float64)
    data = np.stack([x / (c + 1) for c in range(channels)], axis=1)
    sf.write(os.fspath(path), data, sample_rate, subtype=subtype, format=format)
    return data
