"""Type stub of the private C++ extension (csrc/bindings.cpp). Use ser_cli.features instead."""

import numpy as np
import numpy.typing as npt

SAMPLE_RATE: int  # 16000 Hz
WIN_LENGTH: int  # 640 samples
HOP_LENGTH: int  # 160 samples
N_FFT: int  # 1600 points
N_BINS: int  # 400 bins kept

def n_frames(n_samples: int) -> int:
    """1 + (n_samples - 640) // 160, or 0 below 640 samples."""

def spectrogram(samples: npt.NDArray[np.float32], threads: int = 1) -> npt.NDArray[np.float32]:
    """(400, n_frames) float32 magnitudes; samples must be 1-D C-contiguous float32 (no
    conversion: anything else raises TypeError); ValueError if not 1-D or threads < 1."""

def hamming_window() -> npt.NDArray[np.float32]:
    """(640,) float32 symmetric Hamming window, 0.54 - 0.46 cos(2 pi n / 639)."""
