// Magnitude spectrogram of the ser-cli front-end (SPEC.md section 1), pure C++.
//
// Frame i covers samples [160 i, 160 i + 640); each frame is multiplied by a symmetric
// 640-point Hamming window, zero-padded to 1600 points, transformed, and |X[k]| is kept for
// k = 0 ... 399 (0 - 3990 Hz at 16 kHz). The output is row-major (400, n_frames): bin k of
// frame i is out[k * n_frames + i].
//
// No Python headers here: bindings.cpp is the only file that knows about pybind11.
#pragma once

#include <cstddef>

namespace ser {

constexpr int kSampleRate = 16000;
constexpr int kWinLength = 640;
constexpr int kHopLength = 160;
constexpr int kNfft = 1600;
constexpr int kNbins = 400;

// Number of complete frames in n_samples samples: 1 + (n - 640) / 160, or 0 if n < 640.
std::size_t n_frames(std::size_t n_samples) noexcept;

// Writes the (400, n_frames(n_samples)) magnitude spectrogram of `samples` into `out`
// (row-major, 400 * n_frames floats). `threads` >= 1 splits the frames across std::threads;
// the result does not depend on `threads` (bit-for-bit). Throws std::invalid_argument if
// threads < 1. Samples must be finite (not checked here: the Python wrapper validates).
void spectrogram(const float* samples, std::size_t n_samples, float* out, int threads);

// The analysis window actually used (symmetric Hamming, 0.54 - 0.46 cos(2 pi n / 639)),
// written as 640 floats into `window`. For tests and documentation.
void hamming_window(float* window) noexcept;

}  // namespace ser
