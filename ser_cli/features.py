"""Front-end: magnitude spectrogram, per-segment normalisation and mu-law (SPEC.md section 1).

The transform itself runs in the private C++ extension ``ser_cli._core``; this module validates
and converts the input once, then hands plain float32 arrays down (the split of scipy's
``basic.py`` over ``pypocketfft``).

Frame *i* of an utterance covers samples ``[160 i, 160 i + 640)`` (40 ms windows, 10 ms hop at
16 kHz). Each frame is multiplied by a 640-point **symmetric** Hamming window
``0.54 - 0.46 cos(2 pi n / 639)`` (``numpy.hamming(640)``), zero-padded to 1600 points
(10 Hz per bin), and the magnitudes ``|X[k]|`` of bins ``k = 0 ... 399`` (0 - 3990 Hz) are kept.
Arrays are frequency x time: one utterance gives ``(400, n_frames)``.

``fmax=8000`` (a wider band than the paper's, for the network's same 400-row input) keeps the
same frames and 400 rows, every other bin of the 1600-point DFT: row *j* is ``|X[2 j]|``,
``20 j`` Hz, 0 - 7980 Hz, which is exactly the 800-point DFT's bins 0 ... 399. The kernel
computes only bins 0 ... 399; the modulated signal ``x[n] (-1)^n`` gives the upper half
(its bin *k* is ``|X[800 - k]|``, frames start at even offsets), and bin 400 (4 kHz), which
neither call reaches, is a 640-term sum per frame in NumPy (float64).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from numbers import Integral

import numpy as np

from ser_cli import _core
from ser_cli.errors import ConfigError

__all__ = [
    "FeatureConfig",
    "spectrogram",
    "normalize",
    "SpectrogramStream",
    "n_frames",
    "hamming_window",
    "NORMALIZATIONS",
    "BANDS",
    "UTTERANCE_BLOCK_FRAMES",
    "utterance_blocks",
    "UtteranceNormalizer",
]

#: Upper band edges in Hz :func:`spectrogram` implements: the paper's 0 - 4 kHz at 10 Hz per
#: row and 0 - 8 kHz at 20 Hz per row (both 400 rows).
BANDS = (4000, 8000)

#: The D1 normalisation variants :func:`normalize` implements.
NORMALIZATIONS = ("max", "minmax", "utterance")

#: ``"utterance"`` normalisation scales long files by blocks of this many frames (60 s); an
#: utterance of at most 1.5 blocks (90 s) is one block (see :func:`utterance_blocks`).
UTTERANCE_BLOCK_FRAMES = 6000

_SUPPORTED = {
    "sample_rate": _core.SAMPLE_RATE,
    "win_length": _core.WIN_LENGTH,
    "hop_length": _core.HOP_LENGTH,
    "n_fft": _core.N_FFT,
    "n_bins": _core.N_BINS,
}

# Frames per thread of the modulated signal's blocks in spectrogram(fmax=8000): measured fastest
# of 256-2048 on a 60 s signal (its modulated copy and spectrogram stay in L2).
_WIDE_BLOCK_FRAMES = 256

# Frames per thread below which threads=None stays single-threaded (starting a thread costs
# about as much as transforming a few hundred frames).
_FRAMES_PER_THREAD = 4096


@dataclass(frozen=True)
class FeatureConfig:
    """Front-end settings; the defaults are the paper's and the only values the kernel implements.

    Parameters
    ----------
    sample_rate : int
        Sample rate in Hz of the samples the front-end receives. Only 16000.
    win_length : int
        Window length in samples (40 ms). Only 640.
    hop_length : int
        Hop between frame starts in samples (10 ms). Only 160.
    n_fft : int
        DFT length in samples; frames are zero-padded to it (10 Hz per bin). Only 1600.
    n_bins : int
        Number of low-frequency bins kept (0 - 3990 Hz). Only 400.
    normalization : {"max", "minmax", "utterance"}
        Decision D1, see :func:`normalize`. ``"utterance"`` scales by the utterance's maximum
        instead of each segment's, so that overlapping segments share their input values and
        the convolutional trunk can be run once per utterance (docs/shared_trunk.md).
    mu : float
        mu-law parameter, finite and > 0 (paper: 255).
    fmax : {4000, 8000}
        Upper edge of the band in Hz (:data:`BANDS`): 4000 is the paper's 0 - 3990 Hz at 10 Hz
        per row; 8000 keeps 0 - 7980 Hz at 20 Hz per row, same 400 rows (see
        :func:`spectrogram`).

    Raises
    ------
    ConfigError
        If a field has an unsupported value; the message names the field, e.g.
        ``"FeatureConfig: hop_length=128 is not supported (the front-end implements 160)"``.

    Examples
    --------
    >>> from ser_cli.features import FeatureConfig
    >>> FeatureConfig().n_bins
    400
    >>> FeatureConfig(normalization="minmax").normalization
    'minmax'
    """

    sample_rate: int = 16000
    win_length: int = 640
    hop_length: int = 160
    n_fft: int = 1600
    n_bins: int = 400
    normalization: str = "max"
    mu: float = 255.0
    fmax: int = field(default=4000, metadata={"omit_at_default": True})

    def __post_init__(self) -> None:
        for name, supported in _SUPPORTED.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, Integral):
                raise ConfigError(
                    f"FeatureConfig: {name}={value!r} is not an integer (expected {supported})"
                )
            if value != supported:
                raise ConfigError(
                    f"FeatureConfig: {name}={value!r} is not supported "
                    f"(the front-end implements {supported})"
                )
        if self.normalization not in NORMALIZATIONS:
            raise ConfigError(
                f"FeatureConfig: normalization={self.normalization!r} is not one of "
                f"{', '.join(map(repr, NORMALIZATIONS))}"
            )
        _check_mu(self.mu, "FeatureConfig: mu")
        _check_fmax(self.fmax, "FeatureConfig: fmax")


def _check_fmax(fmax, name: str) -> int:
    if isinstance(fmax, bool) or not isinstance(fmax, Integral) or fmax not in BANDS:
        raise ConfigError(f"{name}={fmax!r} is not one of {', '.join(map(str, BANDS))} (Hz)")
    return int(fmax)


def n_frames(n_samples: int) -> int:
    """Number of complete frames in ``n_samples`` samples.

    Parameters
    ----------
    n_samples : int
        Signal length in samples (>= 0).

    Returns
    -------
    int
        ``1 + (n_samples - 640) // 160``, or 0 when ``n_samples < 640``.

    Raises
    ------
    ConfigError
        If ``n_samples`` is negative or not an integer.

    Examples
    --------
    >>> n_frames(16000), n_frames(639), n_frames(640)
    (97, 0, 1)
    """
    if isinstance(n_samples, bool) or not isinstance(n_samples, Integral) or n_samples < 0:
        raise ConfigError(f"n_samples={n_samples!r} is not a non-negative integer")
    return int(_core.n_frames(int(n_samples)))


def hamming_window() -> np.ndarray:
    """The analysis window: 640-point symmetric Hamming, ``0.54 - 0.46 cos(2 pi n / 639)``.

    The symmetric form (``numpy.hamming(640)``, ``scipy.signal.get_window('hamming', 640,
    fftbins=False)``) is chosen because each frame is analysed on its own, zero-padded to 1600
    points, and never overlap-added back: the periodic form only matters for exact
    overlap-add/ DFT-even spectral analysis at ``n_fft == win_length``, which is not our case.
    The symmetric window is the textbook (and MATLAB ``hamming``) window a paper of this kind
    implies, and its two ends are equal, so reversing a frame only conjugates its spectrum.

    Returns
    -------
    numpy.ndarray
        ``(640,)`` float32, values in [0.08, 1].

    Examples
    --------
    >>> w = hamming_window()
    >>> w.shape, bool(abs(w[0] - 0.08) < 1e-7)
    ((640,), True)
    """
    return _core.hamming_window()


def _check_threads(threads, n_frames_: int) -> int:
    if threads is None:
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover - not Linux
            cores = os.cpu_count() or 1
        return max(1, min(cores, n_frames_ // _FRAMES_PER_THREAD))
    if isinstance(threads, bool) or not isinstance(threads, Integral) or threads < 1:
        raise ConfigError(f"threads={threads!r} is not None or a positive integer")
    return int(min(threads, 1 << 16))


def _as_samples(samples, name: str = "samples") -> np.ndarray:
    """Validate and convert to 1-D C-contiguous float32 (one copy at most)."""
    arr = np.asarray(samples)
    if arr.dtype.kind != "f":
        hint = (
            "; scale integer PCM to float in [-1, 1] first (e.g. x / 32768)"
            if arr.dtype.kind in "iu"
            else ""
        )
        raise ConfigError(
            f"{name}: dtype {arr.dtype} is not a real floating-point type "
            f"(expected float32 or float64){hint}"
        )
    if arr.ndim != 1:
        raise ConfigError(
            f"{name}: expected a 1-D array of samples (mono, 16 kHz), got shape {arr.shape}"
            + ("; mix channels down first (ser_cli.audio.load does)" if arr.ndim == 2 else "")
        )
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    # A float32 sum is one fast SIMD pass; it is finite unless a sample is NaN/Inf or the sum
    # overflows, and only then do we pay for the exact element-wise check.
    with np.errstate(over="ignore", invalid="ignore"):
        total = float(np.add.reduce(arr, dtype=np.float32)) if arr.size else 0.0
    if not math.isfinite(total):
        bad = np.flatnonzero(~np.isfinite(arr))
        if bad.size:
            raise ConfigError(
                f"{name}: {bad.size} sample(s) are NaN or Inf "
                f"(first at index {bad[0]}: {arr[bad[0]]!r}); expected finite values"
            )
    return arr


def spectrogram(samples, *, threads: int | None = None, fmax: int = 4000) -> np.ndarray:
    """Magnitude spectrogram of a 16 kHz mono signal: ``(400, n_frames)``, frequency x time.

    Frame *i* covers ``samples[160 i : 160 i + 640]``; it is multiplied by the symmetric
    640-point Hamming window (:func:`hamming_window`), zero-padded to 1600 points, and
    ``out[k, i] = |X_i[k]|`` for ``k = 0 ... 399`` (bin *k* is ``10 k`` Hz). Samples after the
    last complete frame are not used (:class:`SpectrogramStream` keeps them for the next block).
    The result agrees with ``numpy.abs(numpy.fft.rfft(frame * numpy.hamming(640), n=1600)[:400])``
    computed in float64 to float32 rounding (relative error about 1e-7 of the frame's peak), and
    is bit-for-bit the same for every ``threads`` value and every way of splitting the signal.

    Parameters
    ----------
    samples : array_like, shape (n_samples,)
        Mono signal at 16 kHz, real floating point (float32 is used as is; float64 and float16
        are converted to float32), finite; any amplitude (usually [-1, 1]). Integer, bool,
        complex and object arrays are rejected rather than converted: integer PCM is usually
        a missing ``/ 32768`` and a complex signal a bug upstream.
    threads : int or None, keyword-only
        Threads to split the frames across (positive). ``None``: one thread per 4096 frames
        (41 s of audio), at most the number of usable cores.
    fmax : {4000, 8000}, keyword-only
        Upper band edge in Hz. 8000: row *j* is ``|X_i[2 j]|`` (``20 j`` Hz, 0 - 7980 Hz),
        which agrees with ``numpy.abs(numpy.fft.rfft(frame * numpy.hamming(640), n=800)[:400])``
        as the default does with its reference; it calls the kernel twice.

    Returns
    -------
    numpy.ndarray
        ``(400, n_frames)`` float32, C-contiguous, values >= 0 (linear magnitude, same
        amplitude units as ``samples`` times window gain), where
        ``n_frames = 1 + (n_samples - 640) // 160``, or 0 when ``n_samples < 640``.

    Raises
    ------
    ConfigError
        ``samples`` is not 1-D, not real floating point, or contains NaN/Inf; ``threads`` is
        not ``None`` or a positive integer; ``fmax`` is not in :data:`BANDS`. The message names
        the parameter and the value.

    Examples
    --------
    >>> import numpy as np
    >>> t = np.arange(16000) / 16000
    >>> spec = spectrogram(np.sin(2 * np.pi * 1000 * t).astype(np.float32))
    >>> spec.shape, spec.dtype
    ((400, 97), dtype('float32'))
    >>> int(spec[:, 0].argmax())  # 1 kHz is bin 100 (10 Hz per bin)
    100
    >>> int(spectrogram(np.sin(2 * np.pi * 6000 * t).astype(np.float32), fmax=8000)[:, 0].argmax())
    300
    """
    arr = _as_samples(samples)
    fmax = _check_fmax(fmax, "fmax")
    n_threads = _check_threads(threads, n_frames(arr.size))
    out = _core.spectrogram(arr, n_threads)
    if fmax == 4000:
        return out
    nf = out.shape[1]
    for row in range(1, 200):  # in place: X[0], X[2], ..., X[398] (row 2j is read before written)
        out[row] = out[2 * row]
    # x[n] (-1)^n: every frame starts at an even sample, so its bin k is |X[800 - k]|. By blocks
    # of frames, so the modulated copy and its spectrogram stay in cache.
    block = _WIDE_BLOCK_FRAMES * n_threads
    hop, win = _core.HOP_LENGTH, _core.WIN_LENGTH
    for start in range(0, nf, block):
        n = min(block, nf - start)
        modulated = arr[start * hop : (start + n - 1) * hop + win].copy()
        modulated[1::2] *= -1
        out[201:, start : start + n] = _core.spectrogram(modulated, n_threads)[398:0:-2]  # X[402] ... X[798]
    out[200] = _bin_4khz(arr, nf)
    return out


def _bin_4khz(arr: np.ndarray, nf: int, chunk: int = 8192) -> np.ndarray:
    """``|X_i[400]|`` (4 kHz) of every frame, accumulated in float64.

    ``W_1600^(400 n) = (-i)^n`` and a frame is four consecutive 160-sample hops (160 is a
    multiple of 4, so every hop sees the same powers of ``-i``): one product of the hop matrix
    with the (160, 8) real and imaginary weights of the window's four hop-long slices gives
    every partial sum, and frame *f* adds hop *f + b*'s slice-*b* sums. Each value depends only
    on its own frame's samples; accumulating in float64 keeps whatever order BLAS sums in far
    below float32 rounding, so streams give the whole signal's values (tested).
    """
    if nf == 0:
        return np.zeros(0, dtype=np.float32)
    hop, n_hops = _core.HOP_LENGTH, _core.WIN_LENGTH // _core.HOP_LENGTH
    m = np.arange(hop)
    window = _core.hamming_window().astype(np.float64).reshape(n_hops, hop)
    weights = np.empty((hop, 2 * n_hops))
    weights[:, 0::2] = (window * np.cos(np.pi / 2 * m).round()).T  # real parts
    weights[:, 1::2] = (window * -np.sin(np.pi / 2 * m).round()).T  # imaginary parts
    hops = arr[: hop * (nf + n_hops - 1)].reshape(nf + n_hops - 1, hop)
    out = np.empty(nf, dtype=np.float32)
    for start in range(0, nf, chunk):
        n = min(chunk, nf - start)
        partial = hops[start : start + n + n_hops - 1].astype(np.float64) @ weights
        total = sum(partial[b : b + n, 2 * b : 2 * b + 2] for b in range(n_hops))
        out[start : start + n] = np.hypot(total[:, 0], total[:, 1])
    return out


def _check_mu(mu, name: str) -> float:
    if isinstance(mu, bool) or not isinstance(mu, (int, float, np.integer, np.floating)):
        raise ConfigError(f"{name}={mu!r} is not a number")
    if not (math.isfinite(mu) and mu > 0):
        raise ConfigError(f"{name}={mu!r} is not a finite number > 0")
    return float(mu)


def utterance_blocks(n_frames: int, block_frames: int = UTTERANCE_BLOCK_FRAMES) -> np.ndarray:
    """Boundaries of the normalisation blocks of ``"utterance"`` scaling.

    Blocks are ``block_frames`` long from frame 0 on, except the last, which takes the rest
    once at most ``1.5 * block_frames`` frames remain (so it holds more than 0.5 and at most
    1.5 blocks, never a short scrap). A stream decides each boundary after 1.5 blocks of frames.

    Parameters
    ----------
    n_frames : int
        Frames in the utterance, >= 0.
    block_frames : int
        Nominal block length in frames, >= 1.

    Returns
    -------
    numpy.ndarray
        ``(n_blocks + 1,)`` int64 boundaries ``[0, b1, ..., n_frames]``; ``[0]`` when empty.

    Raises
    ------
    ConfigError
        Negative ``n_frames`` or non-positive ``block_frames``.

    Examples
    --------
    >>> utterance_blocks(9000).tolist(), utterance_blocks(9001).tolist()
    ([0, 9000], [0, 6000, 9001])
    """
    for name, value, low in (("n_frames", n_frames, 0), ("block_frames", block_frames, 1)):
        if isinstance(value, bool) or not isinstance(value, Integral) or value < low:
            raise ConfigError(f"{name}={value!r} is not an integer >= {low}")
    bounds = [0]
    while n_frames - bounds[-1] > 1.5 * block_frames:
        bounds.append(bounds[-1] + int(block_frames))
    if n_frames > 0:
        bounds.append(int(n_frames))
    return np.asarray(bounds, dtype=np.int64)


def normalize(spec, mode: str = "max", *, mu: float = 255.0) -> np.ndarray:
    """Per-segment or per-utterance scaling (decision D1), then mu-law compression.

    Each trailing ``(400, T)`` slice is one segment (``"max"``, ``"minmax"``) or one
    utterance (``"utterance"``) and is scaled on its own:

    * ``"max"``: divide by the segment's largest magnitude ``max |x|`` (for a magnitude
      spectrogram the maximum), so values land in [0, 1]; an all-zero (silent) segment stays 0.
    * ``"minmax"``: the paper read literally, ``2 (x - min) / (max - min) - 1`` maps the segment
      linearly onto [-1, 1]; a constant segment (silence included) maps to -1.
    * ``"utterance"``: like ``"max"``, but the slice is a whole utterance's spectrogram
      ``(400, n_frames)``, to be normalised *before* it is cut into segments, so every segment
      of it shares one scale. Files longer than 90 s are scaled per block of
      :data:`UTTERANCE_BLOCK_FRAMES` frames (:func:`utterance_blocks`; streamed by
      :class:`UtteranceNormalizer` with the same result). On a single segment it equals
      ``"max"``.

    Then mu-law, ``F(x) = sgn(x) ln(1 + mu |x|) / ln(1 + mu)``, maps [-1, 1] onto [-1, 1]
    (and [0, 1] onto [0, 1]). Outputs are always finite.

    Parameters
    ----------
    spec : array_like, shape (..., 400, T)
        Magnitude spectrogram(s), frequency x time, real, finite (e.g. segments
        ``(n_segments, 400, 200)`` or one utterance ``(400, n_frames)``).
    mode : {"max", "minmax", "utterance"}
        The scaling, see above.
    mu : float, keyword-only
        mu-law parameter, finite and > 0 (paper: 255).

    Returns
    -------
    numpy.ndarray
        float32, same shape as ``spec``; values in [0, 1] for ``"max"`` and ``"utterance"``
        (magnitude input) and in [-1, 1] for ``"minmax"``.

    Raises
    ------
    ConfigError
        Unknown ``mode=``, bad ``mu=``, ``spec`` not shaped ``(..., 400, T)``, not real, or
        containing NaN/Inf.

    Examples
    --------
    >>> import numpy as np
    >>> seg = np.abs(np.random.default_rng(0).standard_normal((400, 200))).astype(np.float32)
    >>> y = normalize(seg, "max")
    >>> y.shape, float(y.max()), bool(y.min() >= 0)
    ((400, 200), 1.0, True)
    >>> float(normalize(np.zeros((400, 5)), "minmax").max())
    -1.0
    """
    if mode not in NORMALIZATIONS:
        raise ConfigError(
            f"mode={mode!r} is not one of {', '.join(map(repr, NORMALIZATIONS))}"
        )
    mu = _check_mu(mu, "mu")
    x = np.asarray(spec)
    if x.dtype.kind not in "fiu" or x.dtype == np.bool_:
        raise ConfigError(f"spec: dtype {x.dtype} is not real (expected float32 magnitudes)")
    if x.ndim < 2 or x.shape[-2] != _core.N_BINS:
        raise ConfigError(
            f"spec: expected shape (..., {_core.N_BINS}, T) (frequency x time), got {x.shape}"
        )
    x = np.asarray(x, dtype=np.float32)
    if x.size == 0:
        return x.copy()
    if not np.isfinite(x).all():
        raise ConfigError("spec: contains NaN or Inf; expected finite magnitudes")
    axes = (-2, -1)
    if mode == "max":
        scale = np.abs(x).max(axis=axes, keepdims=True)
        y = np.divide(x, scale, out=np.zeros_like(x), where=scale > 0)
    elif mode == "utterance":
        # the same arithmetic as UtteranceNormalizer, so streamed and whole results are equal
        flat = x.reshape(-1, *x.shape[-2:])
        bounds = utterance_blocks(x.shape[-1])
        out = np.empty_like(flat)
        for i in range(flat.shape[0]):
            for a, b in zip(bounds[:-1], bounds[1:]):
                out[i, :, a:b] = _normalize_max_block(flat[i, :, a:b], mu)
        return out.reshape(x.shape)
    else:
        lo = x.min(axis=axes, keepdims=True)
        span = x.max(axis=axes, keepdims=True) - lo
        y = np.divide(x - lo, span, out=np.zeros_like(x), where=span > 0)
        y = y * np.float32(2.0) - np.float32(1.0)
    out = np.log1p(np.float32(mu) * np.abs(y)) * np.float32(1.0 / math.log1p(mu))
    out = np.copysign(out, y, out=out)
    return np.clip(out, -1.0, 1.0, out=out)


class SpectrogramStream:
    """Incremental :func:`spectrogram` over a signal that arrives in blocks.

    Each :meth:`push` returns the frames completed by that block. The samples not yet used by
    a complete frame -- at least the last 480, the overlap with the next frame -- are kept for
    the next block, so concatenating all outputs along time is bit-for-bit
    ``spectrogram(whole signal, fmax=fmax)``.

    Parameters
    ----------
    threads : int or None, keyword-only
        Passed to :func:`spectrogram` for every block.
    fmax : {4000, 8000}, keyword-only
        Passed to :func:`spectrogram` for every block.

    Raises
    ------
    ConfigError
        Bad ``threads`` or ``fmax``; bad blocks (see :func:`spectrogram`).

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).standard_normal(5000).astype(np.float32)
    >>> stream = SpectrogramStream()
    >>> parts = [stream.push(x[:700]), stream.push(x[700:1000]), stream.push(x[1000:])]
    >>> [p.shape[1] for p in parts], stream.n_frames, stream.n_samples
    ([1, 2, 25], 28, 5000)
    >>> bool(np.array_equal(np.concatenate(parts, axis=1), spectrogram(x)))
    True
    """

    def __init__(self, *, threads: int | None = None, fmax: int = 4000) -> None:
        if threads is not None:
            _check_threads(threads, 0)
        self._threads = threads
        self._fmax = _check_fmax(fmax, "fmax")
        self._buffer = np.zeros(0, dtype=np.float32)
        self._n_frames = 0
        self._n_samples = 0

    @property
    def n_frames(self) -> int:
        """Frames emitted so far (the time index of the next frame)."""
        return self._n_frames

    @property
    def n_samples(self) -> int:
        """Samples pushed so far."""
        return self._n_samples

    def push(self, block) -> np.ndarray:
        """Add a block of samples; return the frames it completes.

        Parameters
        ----------
        block : array_like, shape (n,)
            The next samples (16 kHz, real floating point, finite); ``n`` may be 0 or smaller
            than a hop.

        Returns
        -------
        numpy.ndarray
            ``(400, k)`` float32, k >= 0: frames ``n_frames_before ... n_frames_before + k - 1``.

        Raises
        ------
        ConfigError
            As :func:`spectrogram` for ``block``; the stream is left unchanged.
        """
        arr = _as_samples(block, "block")
        buf = np.concatenate((self._buffer, arr)) if self._buffer.size else arr
        out = spectrogram(buf, threads=self._threads, fmax=self._fmax)
        k = out.shape[1]
        # Keep everything from the next frame's start on (copy: do not pin the caller's array).
        self._buffer = buf[k * _core.HOP_LENGTH :].copy()
        self._n_frames += k
        self._n_samples += arr.size
        return out


class UtteranceNormalizer:
    """Streamed ``normalize(spec, "utterance")``: frames in, normalised frames out.

    Frames are held until the block they belong to is decided (at most 1.5 blocks, 90 s, of
    frames: 14 MB, plus the last push), so concatenating every :meth:`push` output and the :meth:`close` output is
    bit-for-bit ``normalize(whole_spec, "utterance", mu=mu)``.

    Parameters
    ----------
    mu : float, keyword-only
        mu-law parameter, finite and > 0.
    block_frames : int, keyword-only
        Nominal normalisation block (default :data:`UTTERANCE_BLOCK_FRAMES`).

    Examples
    --------
    >>> import numpy as np
    >>> spec = np.abs(np.random.default_rng(0).standard_normal((400, 50))).astype(np.float32)
    >>> norm = UtteranceNormalizer(block_frames=20)
    >>> parts = [norm.push(spec[:, :7]), norm.push(spec[:, 7:]), norm.close()]
    >>> [p.shape[1] for p in parts]
    [0, 20, 30]
    >>> bool(np.array_equal(np.concatenate(parts, axis=1)[:, :20], normalize(spec[:, :20], "max")))
    True
    """

    def __init__(self, *, mu: float = 255.0, block_frames: int = UTTERANCE_BLOCK_FRAMES) -> None:
        self._mu = _check_mu(mu, "mu")
        utterance_blocks(0, block_frames)  # validates block_frames
        self._block = int(block_frames)
        self._buf: list[np.ndarray] = []
        self._n_buf = 0
        self._closed = False

    def _emit(self, n: int) -> np.ndarray:
        whole = np.concatenate(self._buf, axis=1) if len(self._buf) != 1 else self._buf[0]
        out, rest = whole[:, :n], whole[:, n:]
        self._buf = [rest] if rest.shape[1] else []
        self._n_buf -= n
        return _normalize_max_block(out, self._mu)

    def push(self, frames) -> np.ndarray:
        """Add ``(400, k)`` magnitude frames; return ``(400, j)`` normalised frames (j >= 0)."""
        if self._closed:
            raise ConfigError("UtteranceNormalizer: push() after close()")
        frames = np.asarray(frames, dtype=np.float32)
        if frames.ndim != 2 or frames.shape[0] != _core.N_BINS:
            raise ConfigError(f"frames: expected shape ({_core.N_BINS}, k), got {frames.shape}")
        if frames.shape[1]:
            self._buf.append(frames)
            self._n_buf += frames.shape[1]
        outs = []
        while self._n_buf > 1.5 * self._block:
            outs.append(self._emit(self._block))
        if not outs:
            return np.zeros((_core.N_BINS, 0), dtype=np.float32)
        return outs[0] if len(outs) == 1 else np.concatenate(outs, axis=1)

    def close(self) -> np.ndarray:
        """Normalise and return the last block (all frames still held)."""
        if self._closed:
            raise ConfigError("UtteranceNormalizer: close() called twice")
        self._closed = True
        if not self._n_buf:
            return np.zeros((_core.N_BINS, 0), dtype=np.float32)
        return self._emit(self._n_buf)


def _normalize_max_block(block: np.ndarray, mu: float) -> np.ndarray:
    """One normalisation block: ``normalize(block, "max")`` without re-validation."""
    scale = np.abs(block).max()
    y = block / scale if scale > 0 else np.zeros_like(block)
    out = np.log1p(np.float32(mu) * np.abs(y)) * np.float32(1.0 / math.log1p(mu))
    out = np.copysign(out, y, out=out).astype(np.float32, copy=False)
    return np.clip(out, -1.0, 1.0, out=out)
