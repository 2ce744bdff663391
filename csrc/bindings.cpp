// The only file that includes pybind11: moves arrays in and out of ser::spectrogram.
// Validation of user input (dtype, NaN/Inf, threads=None) lives in ser_cli/features.py; this
// file checks only what the C++ relies on and raises ValueError (std::invalid_argument).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>

#include "spectrogram.hpp"

namespace py = pybind11;

namespace {

py::array_t<float> spectrogram(py::array_t<float, py::array::c_style> samples, int threads) {
  if (samples.ndim() != 1)
    throw std::invalid_argument("samples: expected a 1-D array, got " +
                                std::to_string(samples.ndim()) + "-D");
  if (threads < 1)
    throw std::invalid_argument("threads=" + std::to_string(threads) +
                                " is not a positive integer");
  const auto n = static_cast<std::size_t>(samples.shape(0));
  const std::size_t nf = ser::n_frames(n);
  py::array_t<float> out({static_cast<py::ssize_t>(ser::kNbins), static_cast<py::ssize_t>(nf)});
  const float* x = samples.data();
  float* o = out.mutable_data();
  {
    py::gil_scoped_release release;
    ser::spectrogram(x, n, o, threads);
  }
  return out;
}

py::array_t<float> hamming_window() {
  py::array_t<float> w(ser::kWinLength);
  ser::hamming_window(w.mutable_data());
  return w;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "ser-cli front-end kernel (private: use ser_cli.features).";
  m.attr("SAMPLE_RATE") = ser::kSampleRate;
  m.attr("WIN_LENGTH") = ser::kWinLength;
  m.attr("HOP_LENGTH") = ser::kHopLength;
  m.attr("N_FFT") = ser::kNfft;
  m.attr("N_BINS") = ser::kNbins;
  m.def("n_frames", &ser::n_frames, py::arg("n_samples"),
        "Complete frames in n_samples samples: 1 + (n - 640) // 160, 0 below 640.");
  m.def("spectrogram", &spectrogram, py::arg("samples").noconvert(), py::arg("threads") = 1,
        "(400, n_frames) float32 magnitudes of 1-D C-contiguous float32 samples.");
  m.def("hamming_window", &hamming_window, "The 640-point symmetric Hamming window used.");
}
