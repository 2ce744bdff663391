"""Audio ingestion: decode, mix down, resample to 16 kHz, scan directories.

Decoding is libsndfile's (through :mod:`soundfile`): WAV (8-bit unsigned, 16/24/32-bit integer,
32/64-bit float), FLAC, OGG/Vorbis and Opus, MP3 (libsndfile >= 1.1), AIFF, AU, CAF, W64, RF64.
Several channels are mixed down to their mean. Any other rate is converted to 16 kHz with soxr.

Resampler choice
----------------
``resample_quality="HQ"`` (soxr's 20-bit recipe: linear phase, flat to 91 % of the output
Nyquist frequency = 7.3 kHz, -3 dB at 95 %, 120 dB rejection) is the default. The front-end keeps
only 0-3990 Hz (bins 0..399 of a 1600-point DFT at 16 kHz), far inside the passband, and 120 dB is
already below the quantisation floor of 16-bit recordings. VHQ (28 bits, 168 dB) has the same
passband; on a 48 kHz test signal the two outputs differ by -138 dB in the 0-3990 Hz band (their
-62 dB overall difference lies in the 7.3-8 kHz transition band the front-end discards), while
VHQ costs 6-13 % more decode+resample time (``benchmarks/bench_audio.py``,
``benchmarks/RESULTS.md``, "Audio ingestion"). So HQ. A model on the 0-8 kHz band
(``FeatureConfig(fmax=8000)``) does see the transition band in its top 35 rows (7.3-8 kHz) of a
resampled file; a file recorded at 16 kHz never reaches the resampler.

Streaming and whole-file decoding agree
---------------------------------------
:func:`load` and :func:`stream` run the same code: libsndfile blocks -> float32 -> channel mean
-> one :class:`soxr.ResampleStream` fed continuously (``last=True`` only once, at the end). soxr's
streaming state makes the concatenated blocks of :func:`stream` equal to :func:`load` (bit-exact
in practice, float32 rounding at worst) with no click or gap at block joins. A file already at the
target rate never reaches the resampler: :func:`load` of a 16 kHz mono file is bit-identical to
``soundfile.read(path, dtype="float32")``.

Bad files
---------
Every problem with a file raises :class:`~ser_cli.errors.AudioError` whose message starts with the
path, then the reason (``"clip.wav: file is empty (0 bytes)"``). libsndfile reads a WAV or AIFF
whose data chunk was cut short *silently*, returning fewer frames; this module parses the RIFF /
AIFF chunk headers itself and rejects a data chunk that declares more bytes than the file holds.
For other containers the frames decoded are compared with the frames the header declares (MP3,
whose count may be an estimate, is allowed 1 % + one MPEG frame of shortfall). NaN and Inf samples
(possible in float WAV) are rejected, never zeroed.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import math
import os
import stat
import struct
from collections.abc import Iterable, Iterator

import numpy as np
import soundfile as sf

from ser_cli.errors import AudioError, ConfigError

__all__ = [
    "AUDIO_EXTENSIONS",
    "AudioConfig",
    "AudioInfo",
    "ScanStats",
    "info",
    "load",
    "scan",
    "stream",
    "supported_formats",
]

_log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
_QUALITIES = ("QQ", "LQ", "MQ", "HQ", "VHQ")

# Extension -> the libsndfile major format that reads it. Only those the installed libsndfile
# reports in ``available_formats()`` make it into AUDIO_EXTENSIONS.
_EXTENSION_FORMATS = {
    ".wav": "WAV",
    ".wave": "WAV",
    ".flac": "FLAC",
    ".ogg": "OGG",
    ".oga": "OGG",
    ".opus": "OGG",
    ".mp3": "MP3",
    ".aiff": "AIFF",
    ".aif": "AIFF",
    ".aifc": "AIFF",
    ".au": "AU",
    ".snd": "AU",
    ".caf": "CAF",
    ".w64": "W64",
    ".rf64": "RF64",
}


def _available_formats() -> dict[str, str]:
    return dict(sf.available_formats())


AUDIO_EXTENSIONS: frozenset[str] = frozenset(
    ext for ext, fmt in _EXTENSION_FORMATS.items() if fmt in _available_formats()
)
"""Lower-case file extensions (with the dot) that :func:`scan` picks up in directories."""


def supported_formats() -> dict[str, str]:
    """Major formats the installed libsndfile decodes.

    Returns
    -------
    formats : dict of str to str
        ``{"WAV": "WAV (Microsoft)", "FLAC": "FLAC (Free Lossless Audio Codec)", ...}``, as
        :func:`soundfile.available_formats` reports them.

    Raises
    ------
    None

    Examples
    --------
    >>> "WAV" in supported_formats()
    True
    """
    return _available_formats()


@dataclasses.dataclass(frozen=True)
class AudioConfig:
    """Settings of audio ingestion.

    Parameters
    ----------
    sample_rate : int
        Rate, in Hz, every file is converted to. 16000 (the paper's front-end).
    resample_quality : {"HQ", "VHQ", "MQ", "LQ", "QQ"}
        soxr recipe. "HQ" by default: see the module docstring for why.
    block_s : float
        Length, in seconds of source audio, of the blocks :func:`stream` decodes at a time.

    Raises
    ------
    ConfigError
        A field is out of range; the message names the field and the value.

    Examples
    --------
    >>> AudioConfig(resample_quality="VHQ").sample_rate
    16000
    """

    sample_rate: int = SAMPLE_RATE
    resample_quality: str = "HQ"
    block_s: float = 30.0

    def __post_init__(self) -> None:
        if isinstance(self.sample_rate, bool) or not isinstance(self.sample_rate, (int, np.integer)):
            raise ConfigError(f"sample_rate={self.sample_rate!r}: must be an integer number of Hz")
        if self.sample_rate <= 0:
            raise ConfigError(f"sample_rate={self.sample_rate}: must be positive")
        if self.resample_quality not in _QUALITIES:
            raise ConfigError(
                f"resample_quality={self.resample_quality!r}: must be one of {', '.join(_QUALITIES)}"
            )
        if not isinstance(self.block_s, (int, float)) or not math.isfinite(self.block_s):
            raise ConfigError(f"block_s={self.block_s!r}: must be a finite number of seconds")
        if self.block_s <= 0:
            raise ConfigError(f"block_s={self.block_s}: must be positive")


@dataclasses.dataclass(frozen=True)
class AudioInfo:
    """What a file's header says (no samples decoded).

    Attributes
    ----------
    path : str
        The path as given.
    sample_rate : int
        Hz.
    channels : int
    frames : int
        Samples per channel, as the header (or libsndfile's scan of it) declares.
    duration_s : float
        ``frames / sample_rate``, seconds.
    format, subtype : str
        libsndfile names, e.g. ``"WAV"``, ``"PCM_16"``.
    """

    path: str
    sample_rate: int
    channels: int
    frames: int
    duration_s: float
    format: str
    subtype: str


# --- checks ---------------------------------------------------------------------------------


def _probe_open(path: str) -> None:
    """Open and close ``path`` read-only; the place a PermissionError surfaces (tests patch it)."""
    fd = os.open(path, os.O_RDONLY)
    os.close(fd)


def _check_path(path: str) -> int:
    """Raise AudioError unless ``path`` is a readable, non-empty regular file; return its size."""
    try:
        st = os.stat(path)
    except FileNotFoundError as exc:
        if os.path.islink(path):
            raise AudioError(
                f"{path}: dangling symbolic link (target {os.readlink(path)!r} does not exist)"
            ) from exc
        raise AudioError(f"{path}: no such file") from exc
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise AudioError(f"{path}: symbolic link loop") from exc
        raise AudioError(f"{path}: cannot stat ({exc.strerror})") from exc
    if stat.S_ISDIR(st.st_mode):
        raise AudioError(f"{path}: is a directory, not an audio file")
    if not stat.S_ISREG(st.st_mode):
        raise AudioError(f"{path}: not a regular file")
    if st.st_size == 0:
        raise AudioError(f"{path}: file is empty (0 bytes)")
    try:
        _probe_open(path)
    except PermissionError as exc:
        raise AudioError(f"{path}: permission denied") from exc
    except OSError as exc:
        raise AudioError(f"{path}: cannot open ({exc.strerror})") from exc
    return st.st_size


def _check_container(path: str, size: int) -> None:
    """Reject RIFF/WAVE and AIFF files whose header or data chunk is cut short.

    libsndfile reads such files without an error and returns the frames that are there, so a
    download cut in half would otherwise pass as a shorter recording.
    """
    with open(path, "rb") as fh:
        head = fh.read(12)
        if head[:4] == b"RIFF" and (len(head) < 12 or head[8:12] == b"WAVE"):
            endian, target = "<", b"data"
        elif head[:4] == b"FORM" and (len(head) < 12 or head[8:12] in (b"AIFF", b"AIFC")):
            endian, target = ">", b"SSND"
        else:
            return
        if len(head) < 12:
            raise AudioError(f"{path}: truncated header ({size} bytes, shorter than a RIFF/FORM header)")
        pos = 12
        for _ in range(100_000):
            chunk = fh.read(8)
            if len(chunk) < 8:
                raise AudioError(
                    f"{path}: truncated header (no '{target.decode()}' chunk before the end of "
                    f"the file, {size} bytes)"
                )
            cid, csize = struct.unpack(endian + "4sI", chunk)
            if cid == target:
                available = size - pos - 8
                # 0 and 0xFFFFFFFF are placeholders that streaming writers (and RF64) leave.
                if csize not in (0, 0xFFFFFFFF) and csize > available:
                    raise AudioError(
                        f"{path}: truncated: the '{target.decode()}' chunk declares {csize} bytes, "
                        f"the file holds {available}"
                    )
                return
            pos += 8 + csize + (csize & 1)
            fh.seek(pos)


def _looks_like_text(path: str) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(512)
    if not head or b"\x00" in head:
        return False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(ch.isprintable() or ch in "\t\r\n\f" for ch in text)


def _open(path: str) -> sf.SoundFile:
    """Check ``path`` and open it with libsndfile; every failure is an AudioError."""
    path = os.fspath(path)
    size = _check_path(path)
    _check_container(path, size)
    try:
        f = sf.SoundFile(path)
    except sf.SoundFileError as exc:
        reason = getattr(exc, "error_string", None) or str(exc)
        if _looks_like_text(path):
            raise AudioError(f"{path}: not audio, the file holds text (libsndfile: {reason})") from exc
        if "not recognised" in reason.lower():
            raise AudioError(f"{path}: not a recognised audio format (libsndfile: {reason})") from exc
        raise AudioError(f"{path}: cannot decode (libsndfile: {reason})") from exc
    if f.frames == 0:
        f.close()
        raise AudioError(f"{path}: contains no samples (0 frames)")
    return f


def _check_finite(path: str, block: np.ndarray, offset: int, sample_rate: int) -> None:
    finite = np.isfinite(block)
    if not finite.all():
        bad = int(np.flatnonzero(~finite.reshape(len(block), -1).all(axis=1))[0])
        value = block.reshape(len(block), -1)[bad]
        kind = "NaN" if np.isnan(value).any() else "Inf"
        frame = offset + bad
        raise AudioError(
            f"{path}: sample {frame} ({frame / sample_rate:.3f} s) is {kind}; audio must be finite"
        )


def _blocks(path: str, f: sf.SoundFile, config: AudioConfig, block_frames: int) -> Iterator[np.ndarray]:
    """Decode ``f`` in blocks, mix down, resample; yields float32 1-D arrays (some may be empty)."""
    source_rate = f.samplerate
    declared = f.frames
    resampler = None
    if source_rate != config.sample_rate:
        import soxr

        resampler = soxr.ResampleStream(
            source_rate, config.sample_rate, 1, dtype="float32", quality=config.resample_quality
        )
    done = 0
    try:
        while True:
            try:
                block = f.read(block_frames, dtype="float32", always_2d=True)
            except sf.SoundFileError as exc:
                reason = getattr(exc, "error_string", None) or str(exc)
                raise AudioError(
                    f"{path}: cannot decode after frame {done} ({reason}); the file is damaged "
                    "or truncated"
                ) from exc
            if len(block) == 0:
                break
            _check_finite(path, block, done, source_rate)
            done += len(block)
            mono = _mix_down(block)
            if resampler is not None:
                mono = resampler.resample_chunk(mono, last=False)
            yield mono
            if len(block) < block_frames:
                break
        _check_complete(path, f, declared, done)
        if resampler is not None:
            yield resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
    finally:
        f.close()


def _mix_down(block: np.ndarray) -> np.ndarray:
    """(frames, channels) float32 -> (frames,) float32 channel mean.

    Summed channel by channel: equal to ``block.mean(axis=1, dtype=np.float32)`` for up to 8
    channels (numpy adds a short axis in order) and about 20x faster, because numpy's reduction
    over a length-2 inner axis is slow.
    """
    mono = np.ascontiguousarray(block[:, 0])
    if block.shape[1] > 1:
        for c in range(1, block.shape[1]):
            mono += block[:, c]
        mono /= np.float32(block.shape[1])
    return mono


def _check_complete(path: str, f: sf.SoundFile, declared: int, done: int) -> None:
    if done == 0:
        raise AudioError(f"{path}: contains no samples (0 frames decoded)")
    if f.format == "MP3":
        # libsndfile's MP3 length can be an estimate (no Xing/LAME header): allow 1 % + a frame.
        short = done < 0.99 * declared - 1152
    else:
        short = done < declared
    if short:
        raise AudioError(
            f"{path}: truncated: decoded {done} of the {declared} frames the header declares"
        )


def _config(sample_rate: int, quality: str, block_s: float) -> AudioConfig:
    return AudioConfig(sample_rate=sample_rate, resample_quality=quality, block_s=block_s)


# --- public decoding ------------------------------------------------------------------------


def info(path: str | os.PathLike) -> AudioInfo:
    """Read a file's header.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    AudioInfo
        Rate, channels, frames, duration in seconds, libsndfile format and subtype.

    Raises
    ------
    AudioError
        Missing, empty, unreadable or non-audio file, truncated header or data chunk; the message
        starts with the path.

    Examples
    --------
    >>> info("clip.wav").duration_s  # doctest: +SKIP
    2.5
    """
    path = os.fspath(path)
    with _open(path) as f:
        return AudioInfo(
            path=path,
            sample_rate=f.samplerate,
            channels=f.channels,
            frames=f.frames,
            duration_s=f.frames / f.samplerate,
            format=f.format,
            subtype=f.subtype,
        )


def load(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE, *, quality: str = "HQ") -> np.ndarray:
    """Decode a whole file to mono float32 at ``sample_rate``.

    Parameters
    ----------
    path : str or path-like
        Any file libsndfile reads (see :func:`supported_formats`).
    sample_rate : int
        Output rate in Hz (16000 for ser-cli's front-end). A file already at this rate is not
        resampled: a mono file comes back bit-identical to ``soundfile.read(path, dtype="float32")``.
    quality : {"HQ", "VHQ", "MQ", "LQ", "QQ"}
        soxr recipe.

    Returns
    -------
    samples : np.ndarray, shape (n_samples,), float32
        Mean of the channels, finite, nominally in [-1, 1] (resampling can overshoot slightly).
        ``n_samples ≈ frames * sample_rate / source_rate``.

    Raises
    ------
    AudioError
        The file is missing, a directory, a dangling or looping link, unreadable, empty, not audio,
        truncated, has zero samples, or holds NaN/Inf; the message starts with the path.
    ConfigError
        ``sample_rate`` or ``quality`` is invalid.

    Examples
    --------
    >>> x = load("clip_44k_stereo.flac")  # doctest: +SKIP
    >>> x.dtype, x.ndim  # doctest: +SKIP
    (dtype('float32'), 1)
    """
    path = os.fspath(path)
    config = _config(sample_rate, quality, 30.0)
    f = _open(path)
    parts = [p for p in _blocks(path, f, config, block_frames=max(f.frames, 1)) if len(p)]
    if len(parts) == 1:
        return parts[0]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)


def stream(
    path: str | os.PathLike,
    sample_rate: int = SAMPLE_RATE,
    block_s: float = 30.0,
    *,
    quality: str = "HQ",
) -> Iterator[np.ndarray]:
    """Decode a long file block by block with bounded memory.

    The file is opened and checked when ``stream`` is called (so a bad file raises here); the
    blocks are decoded as the iterator is consumed. One soxr stream runs across all blocks, so
    ``np.concatenate(list(stream(p)))`` equals ``load(p)``.

    Parameters
    ----------
    path : str or path-like
    sample_rate : int
        Output rate, Hz.
    block_s : float
        Seconds of *source* audio decoded per block; memory is about
        ``block_s * source_rate * channels * 4`` bytes, times a small constant.
    quality : {"HQ", "VHQ", "MQ", "LQ", "QQ"}

    Yields
    ------
    block : np.ndarray, shape (n,), float32
        Consecutive mono samples at ``sample_rate``; ``n ≈ block_s * sample_rate`` (the first
        and last differ by the resampler's delay). Empty blocks are not yielded.

    Raises
    ------
    AudioError
        As :func:`load`; NaN/Inf or truncation found further in the file raise while iterating,
        after the earlier blocks were yielded.
    ConfigError
        Invalid ``sample_rate``, ``block_s`` or ``quality``.

    Examples
    --------
    >>> total = sum(len(b) for b in stream("lecture.flac", block_s=10.0))  # doctest: +SKIP
    """
    path = os.fspath(path)
    config = _config(sample_rate, quality, block_s)
    f = _open(path)
    block_frames = max(1, int(round(config.block_s * f.samplerate)))
    return (b for b in _blocks(path, f, config, block_frames) if len(b))


# --- scanning -------------------------------------------------------------------------------


@dataclasses.dataclass
class ScanStats:
    """Counters filled in by :func:`scan`.

    Attributes
    ----------
    files : int
        Paths yielded.
    skipped_non_audio : int
        Files inside scanned directories whose extension is not in :data:`AUDIO_EXTENSIONS`.
    duplicates : int
        Files (or directories) reached a second time: listed twice, through a symbolic link,
        or through a symbolic-link loop. Identity is ``(st_dev, st_ino)``.
    errors : int
        Entries inside directories that could not be examined: dangling links, link loops that
        cannot be resolved, unreadable directories, sockets and FIFOs. Each is logged.
    """

    files: int = 0
    skipped_non_audio: int = 0
    duplicates: int = 0
    errors: int = 0


def _is_audio_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in AUDIO_EXTENSIONS


def scan(paths: str | os.PathLike | Iterable[str | os.PathLike], *, stats: ScanStats | None = None) -> Iterator[str]:
    """Find audio files under files and directories, lazily and in a deterministic order.

    Directories are walked depth-first, entries of each directory sorted by name (files and
    sub-directories interleaved by name, like ``find | sort`` per level). Files inside directories
    are kept when their extension, case-insensitively, is in :data:`AUDIO_EXTENSIONS`. A file named
    explicitly in ``paths`` is always yielded, whatever its extension: the user asked for it, and
    decoding it reports a clear error if it is not audio. Paths are yielded as the user spelled
    them, joined with the names below (relative stays relative). The same file reached twice
    (listed twice, or through a symbolic link) is yielded once; a directory already visited (a
    symbolic-link loop) is not entered again. Memory: the sorted entries of the directories on
    the current path, plus the set of ``(st_dev, st_ino)`` seen.

    Parameters
    ----------
    paths : str, path-like, or iterable of them
        Files and directories.
    stats : ScanStats, optional
        Counters to update in place.

    Yields
    ------
    path : str

    Raises
    ------
    AudioError
        A path given in ``paths`` does not exist (or is a dangling link); raised when the
        iterator reaches it.

    Examples
    --------
    >>> st = ScanStats()
    >>> files = list(scan(["recordings/"], stats=st))  # doctest: +SKIP
    >>> st.skipped_non_audio  # doctest: +SKIP
    3
    """
    if isinstance(paths, (str, bytes, os.PathLike)):
        paths = [paths]
    stats = stats if stats is not None else ScanStats()
    seen: set[tuple[int, int]] = set()

    for given in paths:
        given = os.fspath(given)
        try:
            st = os.stat(given)
        except FileNotFoundError as exc:
            if os.path.islink(given):
                raise AudioError(f"{given}: dangling symbolic link") from exc
            raise AudioError(f"{given}: no such file or directory") from exc
        except OSError as exc:
            raise AudioError(f"{given}: cannot stat ({exc.strerror})") from exc
        key = (st.st_dev, st.st_ino)
        if key in seen:
            stats.duplicates += 1
            continue
        seen.add(key)
        if not stat.S_ISDIR(st.st_mode):
            stats.files += 1
            yield given
            continue
        yield from _walk(given, seen, stats)


def _sorted_entries(directory: str, stats: ScanStats) -> list[os.DirEntry]:
    try:
        with os.scandir(directory) as it:
            return sorted(it, key=lambda e: e.name)
    except OSError as exc:
        stats.errors += 1
        _log.warning("%s: cannot list directory (%s)", directory, exc.strerror)
        return []


def _walk(top: str, seen: set[tuple[int, int]], stats: ScanStats) -> Iterator[str]:
    stack = [iter(_sorted_entries(top, stats))]
    while stack:
        entry = next(stack[-1], None)
        if entry is None:
            stack.pop()
            continue
        path = entry.path
        try:
            is_dir = entry.is_dir()
            is_file = not is_dir and entry.is_file()
        except OSError as exc:  # pragma: no cover - scandir caches; kept for odd filesystems
            stats.errors += 1
            _log.warning("%s: cannot examine (%s)", path, exc.strerror)
            continue
        if not is_dir and not is_file:
            if entry.is_symlink():
                stats.errors += 1
                _log.warning("%s: dangling symbolic link or link loop, skipped", path)
            elif _is_audio_name(entry.name):
                stats.errors += 1
                _log.warning("%s: not a regular file, skipped", path)
            else:
                stats.skipped_non_audio += 1
            continue
        if is_file and not _is_audio_name(entry.name):
            stats.skipped_non_audio += 1
            continue
        try:
            st = entry.stat()  # follows links: identity of the target
        except OSError as exc:
            stats.errors += 1
            _log.warning("%s: cannot stat (%s)", path, exc.strerror)
            continue
        key = (st.st_dev, st.st_ino)
        if key in seen:
            stats.duplicates += 1
            continue
        seen.add(key)
        if is_dir:
            stack.append(iter(_sorted_entries(path, stats)))
        else:
            stats.files += 1
            yield path
