"""Lead-in and tail silence of a corpus: time before the first and after the last 10 ms frame
whose in-band (0-4 kHz) energy is within 30 dB of the file's loudest frame (the D5 reading in
docs/decisions.md). :func:`frame_db` is the one definition of "speech frame" that
``speech_weighting_screen.py`` uses too.

    python docs/silence_margins.py ../shared/data/ravdess
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from ser_cli import audio, features


def frame_db(path: str | Path) -> np.ndarray:
    """Per-frame energy of the spectrogram's 0-4 kHz bins, in dB below the file's loudest frame."""
    spec = features.spectrogram(audio.load(path)).astype(np.float64)
    energy = (spec ** 2).sum(axis=0) + 1e-20
    return 10 * np.log10(energy / energy.max())


def margins(path: Path, floor_db: float = -30.0) -> tuple[float, float, float]:
    """(duration, lead-in, tail) in seconds, frames at the 10 ms hop."""
    db = frame_db(path)
    active = np.flatnonzero(db > floor_db)
    return (len(db) + 3) / 100, active[0] / 100, (len(db) - 1 - active[-1]) / 100


def main(root: str) -> None:
    files = sorted(p for p in Path(root).rglob("*") if p.suffix.lower() in (".wav", ".flac"))
    dur, lead, tail = np.array([margins(p) for p in files]).T
    q = lambda x: f"median {np.median(x):.2f} s (quartiles {np.percentile(x, 25):.2f}-{np.percentile(x, 75):.2f})"
    print(f"{root}: {len(files)} files; duration {q(dur)}; lead-in {q(lead)}; tail {q(tail)}")


if __name__ == "__main__":
    main(sys.argv[1])
