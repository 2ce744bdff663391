"""Lead-in and tail silence of a corpus: time before the first and after the last 10 ms frame
within 30 dB of the file's loudest frame (the D5 reading in docs/decisions.md).

    python docs/silence_margins.py ../shared/data/ravdess
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import soundfile as sf


def margins(path: Path, floor_db: float = -30.0) -> tuple[float, float, float]:
    """(duration, lead-in, tail) in seconds."""
    y, sr = sf.read(path, dtype="float32", always_2d=True)
    y = y.mean(axis=1)
    hop = sr // 100
    n = len(y) // hop
    energy = (y[: n * hop].reshape(n, hop) ** 2).mean(axis=1) + 1e-12
    active = np.flatnonzero(10 * np.log10(energy / energy.max()) > floor_db)
    return len(y) / sr, active[0] / 100, (n - 1 - active[-1]) / 100


def main(root: str) -> None:
    files = sorted(p for p in Path(root).rglob("*") if p.suffix.lower() in (".wav", ".flac"))
    dur, lead, tail = np.array([margins(p) for p in files]).T
    q = lambda x: f"median {np.median(x):.2f} s (quartiles {np.percentile(x, 25):.2f}-{np.percentile(x, 75):.2f})"
    print(f"{root}: {len(files)} files; duration {q(dur)}; lead-in {q(lead)}; tail {q(tail)}")


if __name__ == "__main__":
    main(sys.argv[1])
