"""Helpers that write audio files for the ingestion tests (rates, widths, channels, formats).

Signals are synthetic (tones and seeded noise from a local ``numpy.random.Generator``); no test
reads a corpus.
"""

from __future__ import annotations

import os

import numpy as np
import soundfile as sf


def tone(freq_hz: float, seconds: float, sample_rate: int, amplitude: float = 0.5) -> np.ndarray:
    """Sine, shape (round(seconds * sample_rate),), float64."""
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    return amplitude * np.sin(2 * np.pi * freq_hz * t)


def noise(seconds: float, sample_rate: int, channels: int = 1, seed: int = 0, amplitude: float = 0.1):
    """Seeded Gaussian noise, shape (frames, channels), float64, clipped to [-1, 1]."""
    rng = np.random.default_rng(seed)
    x = amplitude * rng.standard_normal((int(round(seconds * sample_rate)), channels))
    return np.clip(x, -1.0, 1.0)


def write_tone(
    path: str | os.PathLike,
    sample_rate: int,
    *,
    freq_hz: float = 1000.0,
    seconds: float = 0.5,
    channels: int = 1,
    subtype: str | None = None,
    format: str | None = None,
) -> np.ndarray:
    """Write a tone on every channel (channel c scaled by 1/(c+1)); return the (frames, channels) data."""
    x = tone(freq_hz, seconds, sample_rate)
    data = np.stack([x / (c + 1) for c in range(channels)], axis=1)
    sf.write(os.fspath(path), data, sample_rate, subtype=subtype, format=format)
    return data

