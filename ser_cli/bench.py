"""Benchmarks behind ``ser-cli bench ...``: each times ser-cli against the libraries people use.

Every benchmark first checks each peer's output against ser-cli's on the same input, then times
all of them in one process on the same signal, and returns a plain dict (``--json`` prints it).
"""

from __future__ import annotations

import json
import math
import os
import platform
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ser_cli.errors import ConfigError, ModelFileError, SerError

__all__ = ["bench_features", "format_features", "bench_inputs", "bench_analyze",
           "format_bench_analyze"]

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
    """CPU model name and the cores this process may run on, for benchmark reports."""
    from ser_cli.analysis import _usable_cores

    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{model}, {_usable_cores()} usable cores"


def bench_features(seconds: float = 60.0, threads: int = 1) -> dict:
    """Time ``ser_cli.features.spectrogram`` against NumPy, SciPy, pyfftw, librosa and torch.

    All pipelines compute the same ``(400, n_frames)`` magnitudes (640-point symmetric Hamming
    window, 160-sample hop, zero-padded 1600-point DFT, bins 0-399) of one seeded speech-like
    signal. Each peer is checked against ser-cli before it is timed; pyfftw is planned once
    (FFTW_MEASURE, float32) outside the timing. Every pipeline, ser-cli included, runs chunk by
    chunk (6000 frames, 60 s) so that buffers stay cache- and allocator-friendly; the row
    ``"ser-cli (one call)"`` also times ser-cli on the whole signal at once, and the row
    ``"ser-cli 0-8 kHz"`` its wider band (``fmax=8000``: 400 rows of 20 Hz, checked against
    NumPy's 800-point DFT). librosa and scipy are optional and skipped with a note when missing.

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
    wide_diff = wide_peak = 0.0
    for chunk in _chunks(x, n_frames):  # chunk by chunk: the float64 reference of 600 s is 0.7 GB
        frames = np.lib.stride_tricks.sliding_window_view(chunk, _WIN)[::_HOP]
        reference = np.abs(np.fft.rfft(frames * np.hamming(_WIN), n=800, axis=1)[:, :_NBINS]).T
        wide_diff = max(wide_diff, float(np.abs(spectrogram(chunk, fmax=8000) - reference).max()))
        wide_peak = max(wide_peak, float(reference.max()))

    def run_ser_wide_chunks():
        for chunk in _chunks(x, n_frames):
            spectrogram(chunk, threads=threads, fmax=8000)

    results["ser-cli 0-8 kHz"] = {
        "seconds": _time_best(run_ser_wide_chunks, budget_s=2.0, max_runs=20),
        "max_abs_diff_over_peak": wide_diff / wide_peak,
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


# --- inputs shared by the benchmarks (bench analyze, benchmarks/*.py) -----------------------


def bench_inputs(
    data: str | os.PathLike[str] | None,
    seconds: float,
    tmp_dir: str | os.PathLike[str],
    long_s: float = 0.0,
    *,
    max_files: int | None = None,
) -> tuple[list[str], str]:
    """The audio files a benchmark times: real files from ``data``, else synthetic speech.

    Parameters
    ----------
    data : path-like or None
        Folder of audio, scanned recursively; files are taken in scan order (undecodable ones
        skipped) until ``seconds`` of audio or ``max_files`` files are reached. None or ``""``:
        seeded synthetic speech-like 16 kHz files of 2-8 s (the same files every run) are
        written to ``tmp_dir`` until ``seconds`` or ``max_files`` is reached.
    seconds : float
        Audio to collect, seconds (> 0; ``math.inf`` to count files only, with ``max_files``).
    tmp_dir : path-like
        Existing folder for the synthetic files.
    long_s : float
        Synthetic files only: length in seconds of one more file appended after the others, so
        that long-file behaviour is timed too (0: none).
    max_files : int, optional
        At most this many files (the long file not counted).

    Returns
    -------
    files : list of str
        Audio paths, in the order to score them.
    source : str
        ``data``, or a description of the synthetic files.

    Raises
    ------
    ConfigError
        ``data`` holds no decodable audio, or neither ``seconds`` nor ``max_files`` bounds
        the collection.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     files, source = bench_inputs(None, 10.0, tmp, long_s=20.0)
    >>> len(files), source
    (4, 'synthetic speech-like files (2-8 s, plus one of 20 s)')
    """
    from ser_cli.audio import info, scan

    if math.isinf(seconds) and max_files is None:
        raise ConfigError("bench inputs: give a finite seconds or max_files")
    files: list[str] = []
    audio_s = 0.0

    def more() -> bool:
        return audio_s < seconds and (max_files is None or len(files) < max_files)

    if data:
        for path in scan([os.fspath(data)]):
            try:
                audio_s += info(path).duration_s
            except SerError:
                continue
            files.append(path)
            if not more():
                break
        if not files:
            raise ConfigError(f"{data}: no decodable audio files")
        return files, os.fspath(data)
    tmp_dir = Path(tmp_dir)
    rng = np.random.default_rng(0)
    while more():
        duration = float(rng.uniform(2.0, 8.0))
        path = tmp_dir / f"synthetic_{len(files):04d}.wav"
        _synthetic_speech(path, duration, seed=len(files))
        files.append(str(path))
        audio_s += duration
    if long_s > 0:
        path = tmp_dir / "synthetic_long.wav"
        _synthetic_speech(path, long_s, seed=10_000)
        files.append(str(path))
        return files, f"synthetic speech-like files (2-8 s, plus one of {long_s:g} s)"
    return files, "synthetic speech-like files (harmonics, 2-8 s, 16 kHz)"


def _synthetic_speech(path: Path, duration_s: float, seed: int) -> None:
    """A speech-like test file: voiced harmonics with a wandering pitch, syllable-rate
    amplitude modulation, pauses and a little noise (16 kHz mono PCM16)."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    n = int(duration_s * _SR)
    t = np.arange(n) / _SR
    f0 = 120 + 40 * rng.random() + 25 * np.sin(2 * np.pi * (0.3 + 0.4 * rng.random()) * t)
    phase = 2 * np.pi * np.cumsum(f0) / _SR
    voiced = sum(np.sin(k * phase) / k for k in range(1, 25))
    syllables = np.clip(np.sin(2 * np.pi * (3 + 2 * rng.random()) * t), 0, None) ** 2
    pauses = (np.sin(2 * np.pi * 0.25 * t + rng.random() * 6) > -0.6).astype(float)
    x = voiced * syllables * pauses + 0.01 * rng.standard_normal(n)
    x = 0.5 * x / max(float(np.abs(x).max()), 1e-9)
    sf.write(str(path), x.astype(np.float32), _SR, subtype="PCM_16")


# --- analyze benchmark (bench analyze) -------------------------------------------------------


def _naive_scores(path: str, module, classes_n: int, feature_config, segment_config,
                  scoring_config) -> np.ndarray:
    """The naive pipeline for one file: librosa.load, numpy STFT, one batch, fp32."""
    import librosa
    import torch

    from ser_cli.scoring import utterance_scores
    from ser_cli.segmentation import cut_segments

    y, _ = librosa.load(path, sr=_SR, mono=True)
    n_frames = 1 + (len(y) - 640) // 160 if len(y) >= 640 else 0
    frames = np.lib.stride_tricks.sliding_window_view(y, 640)[::160][:n_frames]
    spec = np.abs(np.fft.rfft(frames * np.hamming(640), n=1600, axis=1)[:, :400]).T
    spec = spec.astype(np.float32)
    if feature_config.normalization == "utterance":
        # one scale per utterance block (60 s blocks beyond 90 s), before cutting
        from ser_cli.features import utterance_blocks

        bounds = utterance_blocks(spec.shape[1])
        for a, b in zip(bounds[:-1], bounds[1:]):
            peak = spec[:, a:b].max()
            spec[:, a:b] = spec[:, a:b] / peak if peak > 0 else 0.0
    segments, _ = cut_segments(spec, segment_config.score_hop_frames, segment_config)
    if feature_config.normalization == "utterance":
        y01 = segments
    elif feature_config.normalization == "max":
        scale = segments.max(axis=(1, 2), keepdims=True)
        y01 = np.divide(segments, scale, out=np.zeros_like(segments), where=scale > 0)
    else:
        lo = segments.min(axis=(1, 2), keepdims=True)
        span = segments.max(axis=(1, 2), keepdims=True) - lo
        y01 = np.divide(segments - lo, span, out=np.zeros_like(segments), where=span > 0) * 2 - 1
    mu = feature_config.mu
    x = np.sign(y01) * np.log1p(mu * np.abs(y01)) / np.log1p(mu)
    with torch.inference_mode():
        logits = module(torch.from_numpy(x.astype(np.float32)).unsqueeze(1))
    return utterance_scores(logits, scoring_config)


def _segment_labels(out_dir: Path) -> dict[tuple[str, int], str]:
    """``(file, index) -> label`` of every segment in an analyze output's segments.jsonl."""
    labels = {}
    with open(out_dir / "segments.jsonl", encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            labels[(row["file"], int(row["index"]))] = row["label"]
    return labels


def _random_model(path: Path, model_config=None, feature_config=None) -> Path:
    """Export a randomly initialised CNN (default: the default architecture, 4 classes, seed 0)
    with ``feature_config`` (default: the default front-end) and default segment and scoring
    configs; for timing only."""
    import torch

    from ser_cli.features import FeatureConfig
    from ser_cli.model import CNN, ModelConfig, config_dict, export_model
    from ser_cli.scoring import ScoringConfig
    from ser_cli.segmentation import SegmentConfig

    torch.manual_seed(0)
    model_config = model_config or ModelConfig(n_classes=4)
    metadata = {
        "classes": (["neutral", "happy", "angry", "sad"] if model_config.n_classes == 4
                    else [f"class_{i}" for i in range(model_config.n_classes)]),
        "feature_config": config_dict(feature_config or FeatureConfig()),
        "segment_config": config_dict(SegmentConfig()),
        "scoring_config": config_dict(ScoringConfig()),
        "model_config": config_dict(model_config),
        "note": "randomly initialised, for timing only",
    }
    return export_model(CNN(model_config).eval(), path, metadata)


def bench_analyze(
    data: str | os.PathLike[str] | None = None,
    *,
    seconds: float = 300.0,
    model: str | os.PathLike[str] | None = None,
    threads: int = 2,
    batch_size: int | None = None,
    jobs: int | None = None,
) -> dict[str, Any]:
    """Time :func:`analyze` against a naive pipeline on the same files, CPU, fp32.

    The naive pipeline is what a researcher writes first: per file ``librosa.load``, a numpy
    STFT (``rfft`` of Hamming-windowed frames, n=1600, bins 0..399), per-segment normalisation
    and mu-law in numpy, and all of the file's segments in one batch through the same TorchScript
    weights (not frozen), one file after the other. Both runs use ``threads`` torch threads.
    The utterance probabilities of the two are compared before times are reported.

    Parameters
    ----------
    data : path-like, optional
        Folder of audio (scanned recursively). Files are taken in scan order until ``seconds``
        of audio are reached. Default: synthetic speech-like 16 kHz files of 2-8 s.
    seconds : float
        Audio to time, seconds (> 0).
    model : path-like, optional
        Model file; default the bundled model, else a randomly initialised CNN with the
        default (paper-sized) architecture: speed does not depend on the weights.
    threads : int
        ``torch.set_num_threads`` for both pipelines (restored afterwards).
    batch_size, jobs : int
        Passed to :func:`analyze`.

    Returns
    -------
    dict
        ``files``, ``audio_s``, ``segments``, per pipeline ``wall_s``, ``x_real_time`` and
        ``segments_per_s``, ``speedup``, ``model_only`` (segments/s of the frozen model on
        full batches and the × real time that caps), ``max_abs_diff`` of utterance
        probabilities, ``machine``, ``date``, versions.

    Raises
    ------
    ConfigError
        ``seconds`` not positive, ``data`` holds no audio, or librosa is missing.

    Examples
    --------
    >>> report = bench_analyze(seconds=30)  # doctest: +SKIP
    >>> report["analyze"]["x_real_time"] > report["naive"]["x_real_time"]  # doctest: +SKIP
    True
    """
    import torch

    from ser_cli.analysis import _Scorer, _versions, analyze, default_model_path
    from ser_cli.audio import info
    from ser_cli.model import cpu_has_native_bf16, load_model
    from ser_cli.reports import score_columns

    if not (isinstance(seconds, (int, float)) and math.isfinite(seconds) and seconds > 0):
        raise ConfigError(f"seconds={seconds!r} must be a positive number")
    try:
        import librosa  # noqa: F401
    except ImportError as exc:
        raise ConfigError("bench analyze needs librosa: pip install 'ser-cli[bench]'") from exc

    from ser_cli.analysis import default_batch_size

    batch_size = batch_size or default_batch_size("cpu")
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with tempfile.TemporaryDirectory(prefix="ser-bench-analyze-") as tmp:
            tmp_path = Path(tmp)
            files, source = bench_inputs(data, seconds, tmp_path)
            audio_s = sum(info(path).duration_s for path in files)
            if model is None:
                try:
                    model = default_model_path()
                except ModelFileError:
                    model = _random_model(tmp_path / "random.pt")
            loaded = load_model(model, "cpu")

            # analyze, end to end (model loading and freezing included): fp32 first (the
            # reference for agreement), then bf16 where the CPU has it natively, then the shared
            # trunk where the model allows it
            variants = [("fp32", False)]
            if cpu_has_native_bf16():
                variants.append(("bf16", False))
            if loaded.feature_config.normalization == "utterance":
                variants += [(p, True) for p, _ in list(variants)]
            runs = {}
            for precision, shared in variants:
                name = f"{precision}{' shared trunk' if shared else ''}"
                out_dir = tmp_path / f"out-{precision}-{int(shared)}"
                t0 = time.perf_counter()
                result = analyze(files, out_dir, model=model, device="cpu",
                                 batch_size=batch_size, jobs=jobs, precision=precision,
                                 progress=False, shared_trunk=shared)
                runs[name] = {"wall_s": time.perf_counter() - t0, "result": result,
                              "segments": _segment_labels(out_dir)}
                if result.n_error:
                    bad = next(u for u in result.utterances if u["status"] == "error")
                    raise ConfigError(f"bench analyze: {result.n_error} files failed, e.g. {bad['error']}")
            reference = runs["fp32"]
            result = reference["result"]
            analyze_s = reference["wall_s"]
            n_segments = sum(u["n_segments"] for u in result.utterances)
            columns = score_columns(loaded.classes)
            fast = {u["file"]: np.array([u[c] for c in columns]) for u in result.utterances}

            # the naive pipeline, one file at a time
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                t0 = time.perf_counter()
                naive = {
                    path: _naive_scores(path, loaded.module, len(loaded.classes),
                                        loaded.feature_config, loaded.segment_config,
                                        loaded.scoring_config)
                    for path in files
                }
                naive_s = time.perf_counter() - t0
            max_diff = max(float(np.abs(fast[p] - naive[p]).max()) for p in files)
            agree = sum(int(np.argmax(fast[p]) == np.argmax(naive[p])) for p in files)
            if max_diff > 1e-4:  # both fp32 on the same weights: only rounding may differ
                raise ConfigError(
                    f"bench analyze: analyze and the naive pipeline disagree (max |delta p| "
                    f"{max_diff:.2e}); the naive pipeline does not reproduce this model's settings"
                )

            # the model alone on full batches: the ceiling of any pipeline with this network
            scorer = _Scorer(load_model(model, "cpu"), torch.device("cpu"), "fp32")
            batch = np.random.default_rng(0).random((batch_size, 400, 200), dtype=np.float32)
            scorer(batch)
            t0 = time.perf_counter()
            reps = 3
            for _ in range(reps):
                scorer(batch)
            model_seg_s = reps * batch_size / (time.perf_counter() - t0)
    finally:
        torch.set_num_threads(old_threads)
    seg_per_audio_s = n_segments / audio_s
    ref_utt = {u["file"]: u["label"] for u in result.utterances}
    variant_rows = {}
    for name, run in runs.items():
        seg_same = sum(run["segments"].get(k) == v for k, v in reference["segments"].items())
        utt_same = sum(u["label"] == ref_utt[u["file"]] for u in run["result"].utterances)
        variant_rows[name] = {
            "wall_s": round(run["wall_s"], 3),
            "x_real_time": round(audio_s / run["wall_s"], 2),
            "speedup_over_naive": round(naive_s / run["wall_s"], 2),
            "segment_labels_agree_with_fp32": round(seg_same / len(reference["segments"]), 5),
            "utterance_labels_agree_with_fp32": round(utt_same / len(ref_utt), 5),
        }
    return {
        "source": source,
        "files": len(files),
        "audio_s": round(audio_s, 3),
        "segments": n_segments,
        "segments_per_audio_s": round(seg_per_audio_s, 3),
        "model": {"name": loaded.name, "sha256": loaded.sha256,
                  "parameters": sum(p.numel() for p in loaded.module.parameters())},
        "threads": threads,
        "batch_size": batch_size,
        "jobs": result.summary["settings"]["jobs"],
        "analyze": {"wall_s": round(analyze_s, 3), "x_real_time": round(audio_s / analyze_s, 2),
                    "segments_per_s": round(n_segments / analyze_s, 2)},
        "naive": {"wall_s": round(naive_s, 3), "x_real_time": round(audio_s / naive_s, 2),
                  "segments_per_s": round(n_segments / naive_s, 2)},
        "speedup": round(naive_s / analyze_s, 2),
        "variants": variant_rows,
        "model_only": {"segments_per_s": round(model_seg_s, 2),
                       "x_real_time_cap": round(model_seg_s / seg_per_audio_s, 2)},
        "max_abs_diff": max_diff,
        "labels_agree": f"{agree}/{len(files)}",
        "machine": _machine(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "versions": _versions(),
    }


def format_bench_analyze(report: dict[str, Any]) -> str:
    """The report of :func:`bench_analyze` as a short table."""
    a, n, m = report["analyze"], report["naive"], report["model_only"]
    lines = [
        f"bench analyze: {report['files']} files, {report['audio_s']:.1f} s of audio "
        f"({report['source']}), {report['segments']} segments, model {report['model']['name']}",
        f"machine: {report['machine']}; torch threads {report['threads']}, "
        f"batch {report['batch_size']}, decoder jobs {report['jobs']}; {report['date']}",
        f"{'pipeline':<34} {'wall s':>9} {'x real time':>12} {'segments/s':>11}",
        f"{'ser-cli analyze':<34} {a['wall_s']:>9.2f} {a['x_real_time']:>12.2f} "
        f"{a['segments_per_s']:>11.2f}",
        f"{'naive (librosa+numpy, file by file)':<34} {n['wall_s']:>9.2f} "
        f"{n['x_real_time']:>12.2f} {n['segments_per_s']:>11.2f}",
        f"speed-up over naive: {report['speedup']:.2f}x; model alone: "
        f"{m['segments_per_s']:.2f} segments/s = at most {m['x_real_time_cap']:.2f}x real time "
        f"at {report['segments_per_audio_s']:.2f} segments per audio second",
        f"agreement: max |delta p| = {report['max_abs_diff']:.2e}, "
        f"labels {report['labels_agree']}",
        "",
        f"{'analyze variant':<24} {'wall s':>8} {'x real time':>12} {'x naive':>8} "
        f"{'segment labels = fp32':>22} {'utterance labels = fp32':>24}",
    ]
    for name, v in report.get("variants", {}).items():
        lines.append(
            f"{name:<24} {v['wall_s']:>8.2f} {v['x_real_time']:>12.2f} {v['speedup_over_naive']:>8.2f} "
            f"{100 * v['segment_labels_agree_with_fp32']:>21.2f}% "
            f"{100 * v['utterance_labels_agree_with_fp32']:>23.2f}%"
        )
    return "\n".join(lines)
