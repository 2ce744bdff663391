// Fused framing + window + pruned DFT + magnitude, vectorised across frames.
//
// Algorithm (N = 1600, W = exp(-2 pi i / 1600), x_f[n] = window[n] * x[160 f + n], n < 640):
//
//   X[k] = sum_{s=0..3} W^{s k} D_s[k],   D_s[k] = sum_{m<160} x_f[4m + s] W_400^{m k},  k < 400.
//
// Splitting n = 4m + s first means only the 400 wanted outputs of the last (radix-4,
// decimation-in-time) stage are computed: output pruning. The four real sequences are packed
// two by two into complex ones, z_A = d_0 + i d_2 and z_B = d_1 + i d_3, whose 400-point DFTs
// Z_A = D_0 + i D_2, Z_B = D_1 + i D_3 are separated with the Hermitian symmetry
// D_s[400 - k] = conj(D_s[k]): the real input costs no wasted arithmetic. Each 400-point DFT has
// only 160 non-zero inputs; it is a decimation-in-frequency FFT 400 = 5 x 5 x 4 x 4 whose first
// radix-5 stage sees 2 non-zero inputs out of 5 (input pruning) and is fused with framing and
// windowing. The result stays in digit-reversed order; the final pass reads it through a
// permutation table, combines the four D_s and writes the magnitudes of X[k] and X[400 - k].
//
// Vectorisation: 8 consecutive frames run the same scalar-style program, one per lane of a
// GCC/Clang vector of 8 floats (one AVX register; two NEON registers elsewhere), so lanes are
// always fully used and bin k of the 8 frames is one contiguous 8-float store in the
// (400, n_frames) output. Each lane's arithmetic is independent of its neighbours, so a frame's
// value is bit-for-bit the same whatever group, thread or stream block computes it.
#include "spectrogram.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#if defined(__AVX__)
#include <immintrin.h>
#endif

namespace ser {
namespace {

typedef float v8 __attribute__((vector_size(32)));
constexpr int kLanes = 8;
constexpr int kM = 400;                       // length of the packed complex DFTs
constexpr int kGroupSpan = kHopLength * (kLanes - 1) + kWinLength;  // samples one group reads

struct Cx {
  float re, im;
};

struct Plan {
  float win[kWinLength];  // 0.5 * symmetric Hamming (the 1/2 of the Hermitian split folded in)
  Cx s1[80][5];           // stage 1 twiddles W400^{b r}
  Cx tw80[16][5];         // stage 2 twiddles W80^{b r}
  Cx tw16[4][4];          // stage 3 twiddles W16^{b r}
  Cx fin[201][3];         // final: W^k, -i W^{2k}, -i W^{3k} (W = W1600)
  int pos[kM];            // storage position of Z[k] after the in-place DIF passes
};

Cx twiddle(long e, long n) {
  // exp(-2 pi i e / n) in double, rounded once to float.
  e %= n;
  if (e < 0) e += n;
  const double a = -2.0 * M_PI * static_cast<double>(e) / static_cast<double>(n);
  return {static_cast<float>(std::cos(a)), static_cast<float>(std::sin(a))};
}

Cx mul_minus_i(Cx c) { return {c.im, -c.re}; }  // -i * c

int dif_position(int k, int n, const int* radix) {
  // Where an in-place decimation-in-frequency FFT with these radices leaves output k.
  if (n == 1) return 0;
  const int r = radix[0], m = n / r;
  return (k % r) * m + dif_position(k / r, m, radix + 1);
}

Plan make_plan() {
  Plan p;
  for (int n = 0; n < kWinLength; ++n) {
    const double w = 0.54 - 0.46 * std::cos(2.0 * M_PI * n / (kWinLength - 1));
    p.win[n] = static_cast<float>(0.5 * w);
  }
  for (int b = 0; b < 80; ++b)
    for (int r = 0; r < 5; ++r) {
      p.s1[b][r] = twiddle(static_cast<long>(b) * r, kM);
    }
  for (int b = 0; b < 16; ++b)
    for (int r = 0; r < 5; ++r) p.tw80[b][r] = twiddle(b * r, 80);
  for (int b = 0; b < 4; ++b)
    for (int r = 0; r < 4; ++r) p.tw16[b][r] = twiddle(b * r, 16);
  for (int k = 0; k <= 200; ++k) {
    p.fin[k][0] = twiddle(k, kNfft);
    p.fin[k][1] = mul_minus_i(twiddle(2L * k, kNfft));
    p.fin[k][2] = mul_minus_i(twiddle(3L * k, kNfft));
  }
  static const int radix[] = {5, 5, 4, 4};
  for (int k = 0; k < kM; ++k) p.pos[k] = dif_position(k, kM, radix);
  return p;
}

const Plan& plan() {
  static const Plan p = make_plan();  // thread-safe one-time initialisation
  return p;
}

inline v8 load8(const float* p) {
  v8 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

inline void store8(float* p, v8 v) { std::memcpy(p, &v, sizeof v); }

inline v8 vsqrt(v8 v) {
#if defined(__AVX__)
  return (v8)_mm256_sqrt_ps((__m256)v);
#else
  for (int l = 0; l < kLanes; ++l) v[l] = std::sqrt(v[l]);
  return v;
#endif
}

// r[l][i] -> r[i][l] for an 8 x 8 block (rows = frames, columns = samples).
inline void transpose8(v8 r[8]) {
  v8 t[8], s[8];
  for (int q = 0; q < 4; ++q) {
    t[2 * q] = __builtin_shufflevector(r[2 * q], r[2 * q + 1], 0, 8, 1, 9, 4, 12, 5, 13);
    t[2 * q + 1] = __builtin_shufflevector(r[2 * q], r[2 * q + 1], 2, 10, 3, 11, 6, 14, 7, 15);
  }
  for (int h = 0; h < 2; ++h) {
    v8 a = t[4 * h], b = t[4 * h + 1], c = t[4 * h + 2], d = t[4 * h + 3];
    s[4 * h + 0] = __builtin_shufflevector(a, c, 0, 1, 8, 9, 4, 5, 12, 13);
    s[4 * h + 1] = __builtin_shufflevector(a, c, 2, 3, 10, 11, 6, 7, 14, 15);
    s[4 * h + 2] = __builtin_shufflevector(b, d, 0, 1, 8, 9, 4, 5, 12, 13);
    s[4 * h + 3] = __builtin_shufflevector(b, d, 2, 3, 10, 11, 6, 7, 14, 15);
  }
  for (int i = 0; i < 4; ++i) {
    r[i] = __builtin_shufflevector(s[i], s[4 + i], 0, 1, 2, 3, 8, 9, 10, 11);
    r[i + 4] = __builtin_shufflevector(s[i], s[4 + i], 4, 5, 6, 7, 12, 13, 14, 15);
  }
}

// One complex value per lane: real and imaginary parts of 8 frames side by side (64 bytes,
// one cache line), so a butterfly touches half as many lines as split re[]/im[] arrays.
struct C8 {
  v8 re, im;
};

inline C8 operator+(C8 a, C8 b) { return {a.re + b.re, a.im + b.im}; }
inline C8 operator-(C8 a, C8 b) { return {a.re - b.re, a.im - b.im}; }
inline C8 mul_i(C8 a) { return {-a.im, a.re}; }      // i a
inline C8 mul_minus_i(C8 a) { return {a.im, -a.re}; }  // -i a
inline C8 cmul(C8 a, Cx w) { return {a.re * w.re - a.im * w.im, a.re * w.im + a.im * w.re}; }

// Stage 1 of one packed sequence at index b: z0 = z[b], z1 = z[b + 80] (z[b + 160...] are zero).
// y_r = (z0 + W5^r z1) W400^{b r}: a radix-5 butterfly with three of its five inputs zero, the
// conjugate pairs r and 5 - r sharing their products.
inline void stage1(const Plan& P, int b, C8 z0, C8 z1, C8* __restrict z) {
  constexpr float c1 = 0.309016994374947424f, c2 = -0.809016994374947424f;  // cos(2 pi r / 5)
  constexpr float s1 = 0.951056516295153572f, s2 = 0.587785252292473129f;   // sin(2 pi r / 5)
  z[b] = z0 + z1;
  const C8 u1 = {z0.re + c1 * z1.re, z0.im + c1 * z1.im};
  const C8 u2 = {z0.re + c2 * z1.re, z0.im + c2 * z1.im};
  const C8 v1 = {s1 * z1.im, s1 * z1.re}, v2 = {s2 * z1.im, s2 * z1.re};
  // z0 + (c - i s) z1 = (u.re + s z1.im) + i (u.im - s z1.re); r = 5 - r takes the other signs.
  z[80 + b] = cmul({u1.re + v1.re, u1.im - v1.im}, P.s1[b][1]);
  z[320 + b] = cmul({u1.re - v1.re, u1.im + v1.im}, P.s1[b][4]);
  z[160 + b] = cmul({u2.re + v2.re, u2.im - v2.im}, P.s1[b][2]);
  z[240 + b] = cmul({u2.re - v2.re, u2.im + v2.im}, P.s1[b][3]);
}

// Radix-5 DIF butterfly on z[0], z[s], ..., z[4s] in place, then twiddles tw[1..4].
inline void radix5(C8* __restrict z, int s, const Cx* tw) {
  constexpr float c1 = 0.309016994374947424f;   // cos(2 pi / 5)
  constexpr float c2 = -0.809016994374947424f;  // cos(4 pi / 5)
  constexpr float s1 = 0.951056516295153572f;   // sin(2 pi / 5)
  constexpr float s2 = 0.587785252292473129f;   // sin(4 pi / 5)
  const C8 x0 = z[0], t1 = z[s] + z[4 * s], t2 = z[2 * s] + z[3 * s];
  const C8 t3 = z[s] - z[4 * s], t4 = z[2 * s] - z[3 * s];
  const C8 a1 = {x0.re + c1 * t1.re + c2 * t2.re, x0.im + c1 * t1.im + c2 * t2.im};
  const C8 a2 = {x0.re + c2 * t1.re + c1 * t2.re, x0.im + c2 * t1.im + c1 * t2.im};
  const C8 b1 = {s1 * t3.re + s2 * t4.re, s1 * t3.im + s2 * t4.im};
  const C8 b2 = {s2 * t3.re - s1 * t4.re, s2 * t3.im - s1 * t4.im};
  z[0] = x0 + t1 + t2;
  z[s] = cmul(a1 + mul_minus_i(b1), tw[1]);
  z[2 * s] = cmul(a2 + mul_minus_i(b2), tw[2]);
  z[3 * s] = cmul(a2 + mul_i(b2), tw[3]);
  z[4 * s] = cmul(a1 + mul_i(b1), tw[4]);
}

// 4-point DFT of a, b, c, d (forward): y0..y3 written back into a..d.
inline void dft4(C8& a, C8& b, C8& c, C8& d) {
  const C8 s0 = a + c, d0 = a - c, s1 = b + d, d1 = mul_minus_i(b - d);
  a = s0 + s1;
  b = d0 + d1;
  c = s0 - s1;
  d = d0 - d1;
}

// 16-point DIF DFT on z[0..15] (stages 3 and 4 of the 400-point transform, fused).
inline void dft16(const Plan& P, C8* __restrict z) {
  for (int b = 0; b < 4; ++b) {
    C8 a = z[b], c = z[b + 4], d = z[b + 8], e = z[b + 12];
    dft4(a, c, d, e);
    z[b] = a;
    z[b + 4] = cmul(c, P.tw16[b][1]);
    z[b + 8] = cmul(d, P.tw16[b][2]);
    z[b + 12] = cmul(e, P.tw16[b][3]);
  }
  for (int q = 0; q < 4; ++q) dft4(z[4 * q], z[4 * q + 1], z[4 * q + 2], z[4 * q + 3]);
}

// Stages 2-4 of one packed 400-point DFT (stage 1 already applied).
inline void dft400_rest(const Plan& P, C8* __restrict z) {
  for (int q = 0; q < 5; ++q)
    for (int b = 0; b < 16; ++b) radix5(z + 80 * q + b, 16, P.tw80[b]);
  for (int q = 0; q < 25; ++q) dft16(P, z + 16 * q);
}

struct Work {
  C8 a[kM], b[kM];
};

inline v8 magnitude(C8 x) { return vsqrt(x.re * x.re + x.im * x.im); }

// 8 frames: lane l is the frame starting at x + 160 l. Bin k of lane l goes to
// out[k * out_stride + l]. Not inlined, so every call site runs the very same instructions.
__attribute__((noinline)) void kernel8(const Plan& P, const float* x, float* out,
                                       std::size_t out_stride, Work& w) {
  for (int j = 0; j < 40; ++j) {
    v8 lo[8], hi[8];
    for (int l = 0; l < kLanes; ++l) {
      lo[l] = load8(x + kHopLength * l + 8 * j);
      hi[l] = load8(x + kHopLength * l + 320 + 8 * j);
    }
    transpose8(lo);
    transpose8(hi);
    for (int i = 0; i < 8; ++i) {
      lo[i] *= P.win[8 * j + i];
      hi[i] *= P.win[320 + 8 * j + i];
    }
    for (int h = 0; h < 2; ++h) {
      const int b = 2 * j + h;
      stage1(P, b, {lo[4 * h], lo[4 * h + 2]}, {hi[4 * h], hi[4 * h + 2]}, w.a);
      stage1(P, b, {lo[4 * h + 1], lo[4 * h + 3]}, {hi[4 * h + 1], hi[4 * h + 3]}, w.b);
    }
  }
  dft400_rest(P, w.a);
  dft400_rest(P, w.b);

  for (int k = 0; k <= 200; ++k) {
    const int p = P.pos[k], q = P.pos[(kM - k) % kM];
    const C8 a = w.a[p], ac = {w.a[q].re, -w.a[q].im};  // Z_A[k], conj Z_A[-k]
    const C8 b = w.b[p], bc = {w.b[q].re, -w.b[q].im};
    const C8 t0 = a + ac;                        // D_0
    const C8 t1 = cmul(b + bc, P.fin[k][0]);     // W^k D_1
    const C8 t2 = cmul(a - ac, P.fin[k][1]);     // W^2k D_2
    const C8 t3 = cmul(b - bc, P.fin[k][2]);     // W^3k D_3
    store8(out + k * out_stride, magnitude((t0 + t2) + (t1 + t3)));
    if (k > 0 && k < 200)  // |X[400 - k]| = |T0 - T2 + i (T1 - T3)|
      store8(out + (kM - k) * out_stride, magnitude((t0 - t2) + mul_i(t1 - t3)));
  }
}

// Frames [8 g0, 8 g1) (whole groups), plus the last partial group if `tail`.
void run_groups(const Plan& P, const float* x, std::size_t n_samples, float* out,
                std::size_t nf, std::size_t g0, std::size_t g1, bool tail, Work& w) {
  for (std::size_t g = g0; g < g1; ++g)
    kernel8(P, x + g * kLanes * kHopLength, out + g * kLanes, nf, w);
  if (!tail) return;
  const std::size_t f0 = g1 * kLanes, rem = nf - f0;
  float xin[kGroupSpan] = {};
  float tmp[kNbins * kLanes];
  const std::size_t start = f0 * kHopLength;
  std::memcpy(xin, x + start, std::min<std::size_t>(n_samples - start, kGroupSpan) * sizeof(float));
  kernel8(P, xin, tmp, kLanes, w);
  for (int k = 0; k < kNbins; ++k)
    std::memcpy(out + k * nf + f0, tmp + k * kLanes, rem * sizeof(float));
}

}  // namespace

std::size_t n_frames(std::size_t n_samples) noexcept {
  return n_samples < static_cast<std::size_t>(kWinLength)
             ? 0
             : 1 + (n_samples - kWinLength) / kHopLength;
}

void hamming_window(float* window) noexcept {
  const Plan& P = plan();
  for (int n = 0; n < kWinLength; ++n) window[n] = 2.0f * P.win[n];
}

void spectrogram(const float* samples, std::size_t n_samples, float* out, int threads) {
  if (threads < 1)
    throw std::invalid_argument("threads=" + std::to_string(threads) + " is not a positive integer");
  const std::size_t nf = n_frames(n_samples);
  if (nf == 0) return;
  const Plan& P = plan();
  const std::size_t full = nf / kLanes;
  const bool tail = nf % kLanes != 0;
  const std::size_t units = full + (tail ? 1 : 0);
  const std::size_t n_threads = std::min<std::size_t>(static_cast<std::size_t>(threads), units);
  std::vector<Work> work(n_threads);  // allocated before any thread starts
  if (n_threads == 1) {
    run_groups(P, samples, n_samples, out, nf, 0, full, tail, work[0]);
    return;
  }
  std::vector<std::thread> pool;
  pool.reserve(n_threads - 1);
  auto bound = [&](std::size_t t) { return full * t / n_threads; };
  std::size_t done = 0;  // groups handed to started threads
  try {
    for (std::size_t t = 0; t + 1 < n_threads; ++t) {
      pool.emplace_back(run_groups, std::cref(P), samples, n_samples, out, nf, bound(t),
                        bound(t + 1), false, std::ref(work[t]));
      done = bound(t + 1);
    }
  } catch (...) {
    // Could not start a thread (resource limits): the calling thread does the rest, so the
    // running threads are always joined and the result is complete.
  }
  run_groups(P, samples, n_samples, out, nf, done, full, tail, work[n_threads - 1]);
  for (auto& th : pool) th.join();
}

}  // namespace ser
