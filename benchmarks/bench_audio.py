"""Benchmark audio ingestion: decode + resample throughput, soxr quality cost, streaming memory.

Usage::

    python benchmarks/bench_audio.py [--data DIR] [--seconds N] [--repeat R] [--hours H]

* Throughput, in x real time (seconds of audio per second of wall clock, best of ``--repeat``),
  of ``ser_cli.audio.load`` against ``librosa.load(sr=16000)`` and against
  ``soundfile.read`` + ``scipy.signal.resample_poly``, in one process, on synthetic 44.1 kHz and
  48 kHz files of ``--seconds`` seconds (and on the audio files under ``--data`` / ``$SER_DATA``
  if given; nothing is read from disk otherwise). Outputs are checked against each other first.
* The cost of soxr's "VHQ" recipe against "HQ" (ser-cli's default), and how far apart the two
  outputs are.
* Peak memory of ``ser_cli.audio.stream`` over a ``--hours``-hour 48 kHz stereo WAV written to a
  temporary directory, measured in a fresh subprocess as the peak RSS (``VmHWM``, else
  ``ru_maxrss``) after the stream minus the peak after the imports (limit: 200 MB).
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import soundfile as sf

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

from ser_cli import audio  # noqa: E402

MEMORY_LIMIT_MB = 200.0


def synth(seconds: float, sample_rate: int, channels: int, seed: int = 0) -> np.ndarray:
    """Speech-like test signal: a gliding harmonic 'voice' plus noise, (frames, channels) float32."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sample_rate))
    t = np.arange(n) / sample_rate
    f0 = 140 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    voice = sum(np.sin(k * phase) / k for k in range(1, 12)) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
    x = 0.15 * voice[:, None] + 0.02 * rng.standard_normal((n, channels))
    return np.clip(x, -1, 1).astype(np.float32)


def best_time(func, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        func()
        times.append(time.perf_counter() - t0)
    return min(times)


def load_librosa(path: str) -> np.ndarray:
    import librosa

    return librosa.load(path, sr=16000, mono=True)[0]


def load_scipy(path: str) -> np.ndarray:
    from scipy.signal import resample_poly

    x, rate = sf.read(path, dtype="float32", always_2d=True)
    x = x.mean(axis=1)
    if rate == 16000:
        return x
    g = math.gcd(rate, 16000)
    return resample_poly(x, 16000 // g, rate // g).astype(np.float32)


def check_agreement(path: str) -> dict:
    ours = audio.load(path)
    ref_librosa = load_librosa(path)
    ref_scipy = load_scipy(path)
    n = min(len(ours), len(ref_librosa), len(ref_scipy))
    mid = slice(1000, n - 1000)
    rms = float(np.sqrt(np.mean(ours[mid] ** 2)))
    d_lib = float(np.abs(ours[mid] - ref_librosa[mid]).max())
    d_sci = float(np.sqrt(np.mean((ours[mid] - ref_scipy[mid]) ** 2)))
    # librosa >= 0.10 resamples with soxr_hq too: same filter, one-shot instead of streamed
    assert abs(len(ours) - len(ref_librosa)) <= 1, (len(ours), len(ref_librosa))
    assert d_lib < 1e-4, f"ser-cli and librosa disagree by {d_lib}"
    # different anti-alias filters: they differ only near 8 kHz, where the test noise is white
    assert d_sci < 0.05 * rms, f"ser-cli and resample_poly disagree (rms diff {d_sci} re rms {rms})"
    return {"max|ser-librosa|": d_lib, "rms(ser-scipy)/rms": d_sci / rms}


def throughput_rows(paths: list[str], repeat: int) -> None:
    header = f"{'file':<34} {'audio s':>8} {'ser-cli HQ':>11} {'ser VHQ':>9} {'librosa':>9} {'sf+scipy':>9}  ratios ser/librosa ser/scipy  VHQ cost"
    print(header)
    for path in paths:
        meta = audio.info(path)
        seconds = meta.duration_s
        check_agreement(path)
        t_hq = best_time(lambda: audio.load(path), repeat)
        t_vhq = best_time(lambda: audio.load(path, quality="VHQ"), repeat)
        t_lib = best_time(lambda: load_librosa(path), repeat)
        t_sci = best_time(lambda: load_scipy(path), repeat)
        name = f"{os.path.basename(path)} ({meta.sample_rate} Hz, {meta.channels} ch)"
        print(
            f"{name:<34} {seconds:8.1f} {seconds / t_hq:10.0f}x {seconds / t_vhq:8.0f}x "
            f"{seconds / t_lib:8.0f}x {seconds / t_sci:8.0f}x  "
            f"{t_lib / t_hq:17.2f} {t_sci / t_hq:9.2f}  {t_vhq / t_hq:7.2f}x time"
        )


def quality_difference(path: str) -> None:
    hq = audio.load(path, quality="HQ")
    vhq = audio.load(path, quality="VHQ")
    mid = slice(1000, len(hq) - 1000)
    diff = hq[mid] - vhq[mid]
    rel_db = 20 * np.log10(np.sqrt(np.mean(diff**2)) / np.sqrt(np.mean(vhq[mid] ** 2)))
    # the band the front-end keeps: 0-3990 Hz
    spec_hq = np.abs(np.fft.rfft(hq[mid]))
    spec_vhq = np.abs(np.fft.rfft(vhq[mid]))
    band = slice(0, int(3990 / 16000 * len(hq[mid])))
    band_db = 20 * np.log10(
        np.linalg.norm(spec_hq[band] - spec_vhq[band]) / np.linalg.norm(spec_vhq[band])
    )
    print(
        f"HQ vs VHQ on {os.path.basename(path)}: max|diff| {np.abs(diff).max():.2e}, "
        f"rms diff {rel_db:.1f} dB re signal, 0-3990 Hz magnitude diff {band_db:.1f} dB"
    )


_MEMORY_CHILD = r"""
import resource, sys, time
import numpy as np
sys.path.insert(0, sys.argv[2])
from ser_cli import audio
import soxr
def rss_mb():
    # VmHWM: peak RSS of this process image. ru_maxrss would do elsewhere, but Linux carries it
    # over exec from the forked parent (which has librosa loaded), hiding the child's growth.
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
base = rss_mb()
t0 = time.perf_counter()
n = 0
peak_block = 0
for block in audio.stream(sys.argv[1], block_s=float(sys.argv[3])):
    n += len(block)
    peak_block = max(peak_block, len(block))
wall = time.perf_counter() - t0
print(f"{base:.1f} {rss_mb():.1f} {n} {wall:.2f} {peak_block}")
"""


def write_long_file(path: str, hours: float, sample_rate: int = 48000, channels: int = 2) -> None:
    block = synth(10.0, sample_rate, channels, seed=1)
    n_blocks = int(round(hours * 3600 / 10.0))
    with sf.SoundFile(path, "w", sample_rate, channels, subtype="PCM_16", format="WAV") as f:
        for _ in range(n_blocks):
            f.write(block)


def memory(hours: float, block_s: float, tmp: str) -> bool:
    path = os.path.join(tmp, f"long_{hours:g}h_48k_stereo.wav")
    t0 = time.perf_counter()
    write_long_file(path, hours)
    size_mb = os.path.getsize(path) / 2**20
    print(f"wrote {path}: {size_mb:.0f} MiB in {time.perf_counter() - t0:.1f} s")
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)
    out = subprocess.run(
        [sys.executable, "-c", _MEMORY_CHILD, path, root, str(block_s)],
        check=True, capture_output=True, text=True,
    ).stdout.split()
    base, peak, n, wall, peak_block = float(out[0]), float(out[1]), int(out[2]), float(out[3]), int(out[4])
    expected = int(round(hours * 3600 * 16000))
    assert abs(n - expected) <= 2, (n, expected)
    growth = peak - base
    ok = growth < MEMORY_LIMIT_MB
    print(
        f"stream {hours:g} h 48 kHz stereo WAV, block_s={block_s:g}: {n} samples out in {wall:.1f} s "
        f"({hours * 3600 / wall:.0f}x real time); peak RSS {base:.0f} MB after imports -> "
        f"{peak:.0f} MB after the stream: +{growth:.0f} MB "
        f"({'OK' if ok else 'OVER'} the {MEMORY_LIMIT_MB:.0f} MB limit; the decoded file would be "
        f"{n * 4 / 2**20:.0f} MiB as float32)"
    )
    return ok


def data_files(directory: str, max_files: int) -> list[str]:
    files = []
    for path in audio.scan([directory]):
        files.append(path)
        if len(files) >= max_files:
            break
    return files


def real_data(paths: list[str], repeat: int) -> None:
    total = sum(audio.info(p).duration_s for p in paths)
    rates = sorted({audio.info(p).sample_rate for p in paths})
    for p in paths[:3]:
        check_agreement(p)

    def run(func):
        return lambda: [func(p) for p in paths]

    t_ser = best_time(run(audio.load), repeat)
    t_lib = best_time(run(load_librosa), repeat)
    t_sci = best_time(run(load_scipy), repeat)
    print(
        f"real files: {len(paths)} files, {total:.0f} s of audio, rates {rates}: ser-cli "
        f"{total / t_ser:.0f}x, librosa {total / t_lib:.0f}x, sf+scipy {total / t_sci:.0f}x real time"
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=os.environ.get("SER_DATA"),
                        help="directory of real audio files (default: $SER_DATA; unset: synthetic only)")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each synthetic file")
    parser.add_argument("--repeat", type=int, default=3, help="timing repeats (best is reported)")
    parser.add_argument("--hours", type=float, default=1.0, help="length of the streamed file")
    parser.add_argument("--block-s", type=float, default=30.0, help="stream block length, seconds")
    parser.add_argument("--max-files", type=int, default=200, help="real files to time at most")
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args(argv)

    import librosa
    import scipy
    import soxr

    print(
        f"soundfile {sf.__version__} (libsndfile {sf.__libsndfile_version__}), soxr {soxr.__version__}, "
        f"librosa {librosa.__version__}, scipy {scipy.__version__}, numpy {np.__version__}"
    )
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for rate, channels, fmt, subtype in [
            (44100, 2, "WAV", "PCM_16"),
            (48000, 2, "WAV", "PCM_16"),
            (44100, 1, "FLAC", "PCM_16"),
            (48000, 1, "FLAC", "PCM_24"),
        ]:
            path = os.path.join(tmp, f"synth_{rate // 1000}k_{channels}ch.{fmt.lower()}")
            sf.write(path, synth(args.seconds, rate, channels), rate, format=fmt, subtype=subtype)
            paths.append(path)
        print(f"\n== decode + resample to 16 kHz, {args.seconds:g} s files, best of {args.repeat} ==")
        throughput_rows(paths, args.repeat)
        print()
        quality_difference(paths[1])
        if args.data:
            print(f"\n== real files under {args.data} ==")
            real_data(data_files(args.data, args.max_files), args.repeat)
        if not args.skip_memory:
            print("\n== streaming memory ==")
            ok = memory(args.hours, args.block_s, tmp)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
