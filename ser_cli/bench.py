"""Benchmarks behind ``ser-cli bench ...``: each times ser-cli against the libraries people use.

Every benchmark first checks each peer's output against ser-cli's on the same input, then times
all of them in one process on the same signal, and returns a plain dict (``--json`` prints it).
"""

from __future__ import annotations

import os
import platform
import time
from typing import Callable

import numpy as np

__all__ = ["bench_features", "format_features"]

# --- features benchmark (bench features) ----------------------------------------------------

_SR = 16000
_WIN, _HOP, _NFFT, _NBINS = 640, 160, 1600, 400
_CHUNK_FRAMES = 6000  # peers work chunk by chunk (60 s) so float64/complex128 buffers stay small


def _speech_like(seconds: float, seed: int = 0) -> np.ndarray:
    """Seeded speech-like test signal: voiced harmonics (120-220 Hz pitch glide, formant-shaped
    envelope, syllable-rate amplitude modulation) plus noise, float32 in about [-1, 1]."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * _SR))
    t = np.arange(n) / _SR
    f0 = 170.0 + 50.0 * np.sin(2 * np.pi * 0.3 * t)
    phase = 2 * np.pi * np.cumsum(f0) / _SR
    x = np.zeros(n)
    for h in range(1, 21):  # harmonics shaped by formants near 700, 1200, 2600 Hz
        f = 170.0 * h
        gain = sum(np.exp(-(((f - fc) / 250.0) ** 2)) for fc in (700.0, 1200.0, 2600.0)) + 0.05
        x += gain / h**0.5 * np.sin(h * phase)
    x *= 0.5 + 0.5 * np.sin(2 * np.pi * 4.0 * t) ** 2  # 4 Hz syllable rhythm
    x += 0.05 * rng.standard_normal(n)
    return (0.9 * x / np.abs(x).max()).astype(np.float32)


def _chunks(x: np.ndarray, n_frames: int):
    """Sample ranges holding frames [f, f + c) for successive chunks of c frames."""
    for f in range(0, n_frames, _CHUNK_FRAMES):
        c = min(_CHUNK_FRAMES, n_frames - f)
        yield x[f * _HOP : (f + c - 1) * _HOP + _WIN]


def _peers(threads: int) -> tuple[dict[str, Callable[[np.ndarray], np.ndarray]], dict[str, str]]:
    """Peer pipelines (name -> function(samples) -> (n_frames, 400) or (400, n_frames) array)
    and notes for peers that are unavailable."""
    window64 = np.hamming(_WIN)
    window32 = window64.astype(np.float32)
    peers: dict[str, Callable] = {}
    notes: dict[str, str] = {}

    def frames_of(x):
        return np.lib.stride_tricks.sliding_window_view(x, _WIN)[::_HOP]

    def numpy_rfft(x):
        return np.abs(np.fft.rfft(frames_of(x) * window32, n=_NFFT, axis=1)[:, :_NBINS])

    peers["numpy.fft.rfft"] = numpy_rfft

    try:
        import scipy.fft

        def scipy_rfft(x):
            spec = scipy.fft.rfft(frames_of(x) * window32, n=_NFFT, axis=1, workers=threads)
            return np.abs(spec[:, :_NBINS])

        peers["scipy.fft.rfft"] = scipy_rfft
    except ImportError as exc:  # optional
        notes["scipy.fft.rfft"] = f"skipped: {exc}"

    try:
        import pyfftw
        import pyfftw.builders

        plans: dict[int, tuple] = {}

        def pyfftw_rfft(x):
            n = (x.size - _WIN) // _HOP + 1
            if n not in plans:  # planned once per chunk shape (two shapes at most), not timed
                buf = pyfftw.empty_aligned((n, _NFFT), dtype="float32")
                buf[:] = 0
                plan = pyfftw.builders.rfft(
                    buf, n=_NFFT, axis=1, threads=threads, planner_effort="FFTW_MEASURE",
                    overwrite_input=False, avoid_copy=True,
                )
                plans[n] = (buf, plan)
            buf, plan = plans[n]
            np.multiply(frames_of(x), window32, out=buf[:, :_WIN])
            return np.abs(plan()[:, :_NBINS])

        peers["pyfftw (FFTW_MEASURE)"] = pyfftw_rfft
    except ImportError as exc:
        notes["pyfftw (FFTW_MEASURE)"] = f"skipped: {exc}"

    pad = (_NFFT - _WIN) // 2  # librosa/torch centre the 640 window in the 1600 frame

    try:
        import librosa

        def librosa_stft(x):
            xp = np.pad(x, pad)
            spec = librosa.stft(xp, n_fft=_NFFT, hop_length=_HOP, win_length=_WIN,
                                window=window64, center=False)
            return np.abs(spec[:_NBINS])

        peers["librosa.stft"] = librosa_stft
    except ImportError as exc:
        notes["librosa.stft"] = f"skipped: {exc}"

    try:
        import torch

        twin = torch.hamming_window(_WIN, periodic=False, dtype=torch.float32)

        def torch_stft(x):
            xp = torch.from_numpy(np.pad(x, pad))
            spec = torch.stft(xp, n_fft=_NFFT, hop_length=_HOP, win_length=_WIN, window=twin,
                              center=False, return_complex=True)
            return spec[:_NBINS].abs().numpy()

        peers["torch.stft"] = torch_stft
    except ImportError as exc:
        notes["torch.stft"] = f"skipped: {exc}"
    return peers, notes


def _time_best(func: Callable[[], object], budget_s: float, max_runs: int = 5) -> float:
    """Best wall time of up to ``max_runs`` runs, stopping once ``budget_s`` is spent."""
    best, spent, runs = float("inf"), 0.0, 0
    while runs < max_runs and (runs == 0 or spent < budget_s):
        t0 = time.perf_counter()
        func()
        dt = time.perf_counter() - t0
        best, spent, runs = min(best, dt), spent + dt, runs + 1
    return best


def _machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        cores = os.cpu_count()
    return f"{model}, {cores} usable cores"


def bench_features(seconds: float = 60.0, threads: int = 1) -> dict:
    """Time ``ser_cli.features.spectrogram`` against NumPy, SciPy, pyfftw, librosa and torch.

    All pipelines compute the same ``(400, n_frames)`` magnitudes (640-point symmetric Hamming
    window, 160-sample hop, zero-padded 1600-point DFT, bins 0-399) of one seeded speech-like
    signal. Each peer is checked against ser-cli before it is timed; pyfftw is planned once
    (FFTW_MEASURE, float32) outside the timing. Every pipeline, ser-cli included, runs chunk by
    chunk (6000 frames, 60 s) so that buffers stay cache- and allocator-friendly; the row
    ``"ser-cli (one call)"`` also times ser-cli on the whole signal at once. librosa and scipy
    are optional and skipped with a note when missing.

    Parameters
    ----------
    seconds : float
        Length of the test signal in seconds of 16 kHz audio (> 0).
    threads : int
        Threads for ser-cli and for the peers that take a thread count (scipy ``workers``,
        pyfftw, torch), >= 1.

    Returns
    -------
    dict
        ``{"seconds", "n_frames", "threads", "machine", "results": {name: {"seconds",
        "frames_per_s", "x_realtime", "speedup_vs_peer", "max_abs_diff_over_peak"}},
        "notes": {name: reason}}``; ``speedup_vs_peer`` is ser-cli's frames/s over the peer's.

    Raises
    ------
    ConfigError
        If ``seconds`` is not > 0 or ``threads`` is not a positive integer.

    Examples
    --------
    >>> r = bench_features(seconds=1.0, threads=1)
    >>> r["n_frames"], "ser-cli" in r["results"]
    (97, True)
    """
    from ser_cli.errors import ConfigError
    from ser_cli.features import spectrogram

    if not (isinstance(seconds, (int, float)) and seconds > 0 and np.isfinite(seconds)):
        raise ConfigError(f"seconds={seconds!r} is not a positive number")
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"threads={threads!r} is not a positive integer")
    x = _speech_like(seconds)
    n_frames = (x.size - _WIN) // _HOP + 1 if x.size >= _WIN else 0
    if n_frames == 0:
        raise ConfigError(f"seconds={seconds!r} is shorter than one 40 ms frame")
    audio_s = x.size / _SR
    reference = spectrogram(x, threads=threads)
    peak = float(reference.max())
    peers, notes = _peers(threads)

    def run_ser_chunks():
        for chunk in _chunks(x, n_frames):
            spectrogram(chunk, threads=threads)

    results: dict[str, dict] = {}
    t_ser = _time_best(run_ser_chunks, budget_s=2.0, max_runs=20)
    results["ser-cli"] = {"seconds": t_ser}
    # The same signal in one call: one (400, n_frames) output, whose fresh pages the kernel
    # must fault in and write back; shows the memory-bound regime of very long files.
    results["ser-cli (one call)"] = {
        "seconds": _time_best(lambda: spectrogram(x, threads=threads), budget_s=2.0, max_runs=20),
        "max_abs_diff_over_peak": 0.0,
    }

    torch_threads = None
    try:
        import torch

        torch_threads = torch.get_num_threads()
        torch.set_num_threads(threads)
    except ImportError:
        pass
    try:
        for name, func in peers.items():
            parts = []
            for chunk in _chunks(x, n_frames):
                out = np.asarray(func(chunk))
                parts.append(out.T if out.shape[-1] == _NBINS else out)
            got = np.concatenate(parts, axis=1)
            if got.shape != reference.shape:
                notes[name] = f"skipped: output shape {got.shape} != {reference.shape}"
                continue
            diff = float(np.abs(got - reference).max()) / peak

            def run(func=func):
                for chunk in _chunks(x, n_frames):
                    func(chunk)

            results[name] = {"seconds": _time_best(run, budget_s=2.0, max_runs=3),
                             "max_abs_diff_over_peak": diff}
    finally:
        if torch_threads is not None:
            torch.set_num_threads(torch_threads)

    for name, r in results.items():
        r["frames_per_s"] = n_frames / r["seconds"]
        r["x_realtime"] = audio_s / r["seconds"]
        r["speedup_vs_peer"] = r["seconds"] / t_ser
    results["ser-cli"]["max_abs_diff_over_peak"] = 0.0
    return {
        "seconds": audio_s,
        "n_frames": n_frames,
        "threads": threads,
        "machine": _machine(),
        "results": results,
        "notes": notes,
    }


def format_features(report: dict) -> str:
    """Render :func:`bench_features`'s dict as a text table."""
    lines = [
        f"features: {report['seconds']:.0f} s of 16 kHz audio, {report['n_frames']} frames, "
        f"threads={report['threads']}, {report['machine']}",
        f"{'pipeline':<24}{'frames/s':>14}{'x real time':>14}{'ser-cli/peer':>14}"
        f"{'max|diff|/peak':>16}",
    ]
    for name, r in report["results"].items():
        lines.append(
            f"{name:<24}{r['frames_per_s']:>14,.0f}{r['x_realtime']:>14,.0f}"
            f"{r['speedup_vs_peer']:>14.2f}{r['max_abs_diff_over_peak']:>16.1e}"
        )
    for name, note in report["notes"].items():
        lines.append(f"{name:<24}{note}")
    return "\n".join(lines)
