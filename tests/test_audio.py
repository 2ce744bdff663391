"""Tests of ser_cli.audio: decoding, mix-down, resampling, streaming, bad files, scanning."""

from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile as sf

from ser_cli import audio
from ser_cli.audio import AUDIO_EXTENSIONS, AudioConfig, ScanStats, info, load, scan, stream
from ser_cli.errors import AudioError, ConfigError

import signals
from signals import write_tone

RATES = [8000, 11025, 16000, 22050, 44100, 48000, 96000, 192000]


def peak_hz(x: np.ndarray, sample_rate: int = 16000) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return np.argmax(spectrum) * sample_rate / len(x)


# --- decoding and resampling ------------------------------------------------------------------


@pytest.mark.parametrize("rate", RATES)
def test_every_rate_is_resampled_to_16k_keeping_the_tone(tmp_path, rate):
    path = tmp_path / f"tone_{rate}.wav"
    write_tone(path, rate, freq_hz=1000.0, duration_s=0.5)
    x = load(path)
    assert x.dtype == np.float32 and x.ndim == 1
    assert abs(len(x) - 8000) <= 1
    assert np.isfinite(x).all()
    assert peak_hz(x) == pytest.approx(1000.0, abs=2.0)  # bin width 2 Hz
    # amplitude survives (middle of the clip, away from the resampler's edges)
    assert np.abs(x[1000:-1000]).max() == pytest.approx(0.5, abs=0.01)


@pytest.mark.parametrize("subtype", ["PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"])
def test_wav_sample_widths(tmp_path, subtype):
    path = tmp_path / f"w_{subtype}.wav"
    write_tone(path, 44100, freq_hz=440.0, duration_s=0.5, subtype=subtype)
    assert info(path).subtype == subtype
    x = load(path)
    assert abs(len(x) - 8000) <= 1
    assert peak_hz(x) == pytest.approx(440.0, abs=2.0)
    reference = signals.tone(440.0, 0.5, sample_rate=16000).astype(np.float32)
    tol = 0.02 if subtype == "PCM_U8" else 1e-3
    mid = slice(1000, -1000)
    assert np.abs(x[mid] - reference[mid]).max() < tol


@pytest.mark.parametrize("channels", [1, 2, 6])
def test_channels_are_mixed_down_by_mean(tmp_path, channels):
    path = tmp_path / f"c{channels}.wav"
    data = write_tone(path, 16000, channels=channels, subtype="FLOAT")
    x = load(path)
    expected = data.astype(np.float32).mean(axis=1, dtype=np.float32)
    np.testing.assert_array_equal(x, expected)
    # the same file at 48 kHz: resampled mean of channels
    path48 = tmp_path / f"c{channels}_48k.flac"
    write_tone(path48, 48000, channels=channels)
    y = load(path48)
    assert peak_hz(y) == pytest.approx(1000.0, abs=2.0)
    gain = np.mean([1 / (c + 1) for c in range(channels)])
    assert np.abs(y[1000:-1000]).max() == pytest.approx(0.5 * gain, abs=0.01)


@pytest.mark.parametrize(
    ("fmt", "ext", "subtype"),
    [("WAV", "wav", "PCM_16"), ("FLAC", "flac", "PCM_24"), ("OGG", "ogg", "VORBIS"), ("MP3", "mp3", "MPEG_LAYER_III")],
)
@pytest.mark.parametrize("rate", [16000, 44100, 48000])
def test_container_formats(tmp_path, fmt, ext, subtype, rate):
    if fmt not in sf.available_formats():
        pytest.skip(f"libsndfile {sf.__libsndfile_version__} has no {fmt}")
    path = tmp_path / f"t{rate}.{ext}"
    write_tone(path, rate, duration_s=0.5, channels=2, format=fmt, subtype=subtype)
    x = load(path)
    assert x.dtype == np.float32
    assert abs(len(x) - 8000) <= 1200  # lossy codecs may pad or trim a frame
    assert peak_hz(x) == pytest.approx(1000.0, abs=2.0)


def test_16k_mono_is_bit_exact_and_never_resampled(tmp_path, monkeypatch):
    import soxr

    path = tmp_path / "16k.flac"
    sf.write(path, signals.noise(1.0, sample_rate=16000), 16000, subtype="PCM_24")

    def boom(*args, **kwargs):
        raise AssertionError("resampler called for a 16 kHz file")

    monkeypatch.setattr(soxr, "ResampleStream", boom)
    monkeypatch.setattr(soxr, "resample", boom)
    expected, _ = sf.read(path, dtype="float32")
    np.testing.assert_array_equal(load(path), expected)
    np.testing.assert_array_equal(np.concatenate(list(stream(path, block_s=0.3))), expected)


@pytest.mark.parametrize(("rate", "channels"), [(48000, 2), (44100, 1), (16000, 6), (8000, 1)])
@pytest.mark.parametrize("block_s", [0.05, 0.37, 1.0, 10.0])
def test_stream_equals_load(tmp_path, rate, channels, block_s):
    path = tmp_path / f"s{rate}_{channels}.wav"
    sf.write(path, signals.noise(2.3, sample_rate=rate, channels=channels, seed=rate), rate, subtype="FLOAT")
    whole = load(path)
    blocks = list(stream(path, block_s=block_s))
    assert all(b.dtype == np.float32 and b.ndim == 1 and len(b) for b in blocks)
    np.testing.assert_allclose(np.concatenate(blocks), whole, rtol=0, atol=1e-6)
    if block_s < 1:
        assert len(blocks) > 2


def test_stream_has_no_click_at_block_joins(tmp_path):
    path = tmp_path / "t.wav"
    write_tone(path, 44100, freq_hz=300.0, duration_s=3.0)
    x = np.concatenate(list(stream(path, block_s=0.25)))
    # a 300 Hz tone of amplitude 0.5 changes by at most 2*pi*300/16000*0.5 = 0.059 per sample
    assert np.abs(np.diff(x)).max() < 0.06


def test_resample_quality_option(tmp_path):
    path = tmp_path / "t.wav"
    write_tone(path, 48000)
    hq = load(path, quality="HQ")
    vhq = load(path, quality="VHQ")
    assert len(hq) == len(vhq)
    assert np.abs(hq - vhq)[500:-500].max() < 1e-3


def test_info_reports_header(tmp_path):
    path = tmp_path / "i.flac"
    write_tone(path, 22050, duration_s=1.0, channels=2, subtype="PCM_16")
    meta = info(path)
    assert meta == audio.AudioInfo(
        path=str(path), sample_rate=22050, channels=2, frames=22050, duration_s=1.0,
        format="FLAC", subtype="PCM_16",
    )
    with pytest.raises(AttributeError):
        meta.frames = 3  # frozen


def test_supported_formats_and_extensions():
    formats = audio.supported_formats()
    assert {"WAV", "FLAC", "OGG"} <= set(formats)
    assert {".wav", ".flac", ".ogg", ".oga", ".aiff", ".aif", ".au", ".caf", ".w64"} <= AUDIO_EXTENSIONS
    assert all(ext == ext.lower() and ext.startswith(".") for ext in AUDIO_EXTENSIONS)
    assert (".mp3" in AUDIO_EXTENSIONS) == ("MP3" in formats)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"sample_rate": 0}, "sample_rate"),
        ({"sample_rate": 16000.0}, "sample_rate"),
        ({"resample_quality": "best"}, "resample_quality"),
        ({"block_s": 0.0}, "block_s"),
        ({"block_s": float("nan")}, "block_s"),
    ],
)
def test_audio_config_validation(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        AudioConfig(**kwargs)


def test_load_rejects_bad_settings(tmp_path):
    path = tmp_path / "t.wav"
    write_tone(path, 16000)
    with pytest.raises(ConfigError, match="resample_quality"):
        load(path, quality="ultra")
    with pytest.raises(ConfigError, match="block_s"):
        stream(path, block_s=-1)


# --- bad files: one test per kind -------------------------------------------------------------


def _wav_bytes(tmp_path, rate=16000, duration_s=0.5, subtype="PCM_16") -> bytes:
    p = tmp_path / "_src.wav"
    write_tone(p, rate, duration_s=duration_s, subtype=subtype)
    return p.read_bytes()


def test_missing_file(tmp_path):
    with pytest.raises(AudioError, match=r"nope\.wav: no such file"):
        load(tmp_path / "nope.wav")


def test_empty_file(tmp_path):
    path = tmp_path / "clip.wav"
    path.write_bytes(b"")
    with pytest.raises(AudioError, match=r"clip\.wav: file is empty \(0 bytes\)"):
        load(path)


@pytest.mark.parametrize("n_bytes", [10, 30])
def test_truncated_header(tmp_path, n_bytes):
    path = tmp_path / "head.wav"
    path.write_bytes(_wav_bytes(tmp_path)[:n_bytes])
    with pytest.raises(AudioError, match=r"head\.wav: truncated header"):
        load(path)


def test_truncated_wav_body_is_not_silently_shorter(tmp_path):
    # libsndfile alone would return the 8000 frames that remain and no error
    data = _wav_bytes(tmp_path, duration_s=1.0)
    path = tmp_path / "body.wav"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioError, match=r"body\.wav: truncated: the 'data' chunk declares 32000 bytes"):
        load(path)
    with pytest.raises(AudioError, match=r"body\.wav: truncated"):
        info(path)


def test_truncated_aiff_body(tmp_path):
    src = tmp_path / "_src.aiff"
    write_tone(src, 16000, duration_s=1.0, subtype="PCM_16")
    path = tmp_path / "body.aiff"
    path.write_bytes(src.read_bytes()[:20000])
    with pytest.raises(AudioError, match=r"body\.aiff: truncated: the 'SSND' chunk"):
        load(path)


def test_truncated_flac_body(tmp_path):
    src = tmp_path / "_src.flac"
    sf.write(src, signals.noise(2.0, sample_rate=16000), 16000, subtype="PCM_16")
    path = tmp_path / "body.flac"
    path.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    with pytest.raises(AudioError, match=r"body\.flac: (cannot decode|truncated)"):
        load(path)


@pytest.mark.skipif("MP3" not in sf.available_formats(), reason="no MP3 in this libsndfile")
def test_truncated_mp3_body(tmp_path):
    src = tmp_path / "_src.mp3"
    sf.write(src, signals.noise(2.0, sample_rate=16000), 16000, format="MP3", subtype="MPEG_LAYER_III")
    path = tmp_path / "body.mp3"
    path.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    with pytest.raises(AudioError, match=r"body\.mp3: truncated: decoded \d+ of the \d+ frames"):
        load(path)


def test_bytes_that_are_not_audio(tmp_path):
    path = tmp_path / "random.wav"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(AudioError, match=r"random\.wav: not a recognised audio format"):
        load(path)


def test_audio_extension_on_a_text_file(tmp_path):
    path = tmp_path / "notes.flac"
    path.write_text("these are my notes, not a recording\n" * 10)
    with pytest.raises(AudioError, match=r"notes\.flac: not audio, the file holds text"):
        load(path)


def test_zero_samples(tmp_path):
    path = tmp_path / "zero.wav"
    sf.write(path, np.zeros(0), 16000, subtype="PCM_16")
    with pytest.raises(AudioError, match=r"zero\.wav: contains no samples"):
        load(path)


@pytest.mark.parametrize(("value", "kind"), [(np.nan, "NaN"), (np.inf, "Inf"), (-np.inf, "Inf")])
def test_non_finite_samples_are_rejected(tmp_path, value, kind):
    data = signals.noise(1.0, sample_rate=16000, channels=2)
    data[12345, 1] = value
    path = tmp_path / "bad.wav"
    sf.write(path, data, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match=rf"bad\.wav: sample 12345 \(0\.772 s\) is {kind}"):
        load(path)
    with pytest.raises(AudioError, match=rf"bad\.wav: sample 12345 .* is {kind}"):
        list(stream(path, block_s=0.1))


def test_non_finite_at_48k_raises_before_resampling(tmp_path):
    data = signals.noise(0.5, sample_rate=48000)
    data[-1] = np.nan
    path = tmp_path / "late.wav"
    sf.write(path, data, 48000, subtype="DOUBLE")
    with pytest.raises(AudioError, match=r"late\.wav: sample 23999 .* is NaN"):
        load(path)


def test_directory(tmp_path):
    with pytest.raises(AudioError, match=rf"{tmp_path.name}: is a directory"):
        load(tmp_path)


def test_dangling_symbolic_link(tmp_path):
    link = tmp_path / "gone.wav"
    link.symlink_to(tmp_path / "deleted.wav")
    with pytest.raises(AudioError, match=r"gone\.wav: dangling symbolic link"):
        load(link)


def test_symbolic_link_loop(tmp_path):
    a, b = tmp_path / "a.wav", tmp_path / "b.wav"
    a.symlink_to(b)
    b.symlink_to(a)
    with pytest.raises(AudioError, match=r"a\.wav: symbolic link loop"):
        load(a)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads mode 000 files")
def test_unreadable_file(tmp_path):
    path = tmp_path / "locked.wav"
    write_tone(path, 16000)
    path.chmod(0)
    try:
        with pytest.raises(AudioError, match=r"locked\.wav: permission denied"):
            load(path)
    finally:
        path.chmod(0o644)


def test_permission_error_is_reported(tmp_path, monkeypatch):
    # runs as root too: the open probe is where a PermissionError surfaces
    path = tmp_path / "locked.wav"
    write_tone(path, 16000)

    def denied(p):
        raise PermissionError(13, "Permission denied", p)

    monkeypatch.setattr(audio, "_probe_open", denied)
    with pytest.raises(AudioError, match=r"locked\.wav: permission denied") as excinfo:
        load(path)
    assert isinstance(excinfo.value.__cause__, PermissionError)
    assert isinstance(excinfo.value, RuntimeError)


def test_errors_are_chained(tmp_path):
    path = tmp_path / "random.wav"
    path.write_bytes(b"\x01\x02" * 100)
    with pytest.raises(AudioError) as excinfo:
        load(path)
    assert isinstance(excinfo.value.__cause__, sf.SoundFileError)


# --- scanning ---------------------------------------------------------------------------------


def _touch(path, content=b"x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "corpus"
    for rel in ["b.wav", "a.WAV", "c.Flac", "notes.txt", "sub/z.ogg", "sub/deeper/y.mp3",
                "sub/readme.md", "aa/x.wav", "sub/deeper/image.png"]:
        _touch(root / rel)
    return root


def test_scan_recursive_sorted_depth_first_case_insensitive(tree, monkeypatch):
    monkeypatch.chdir(tree.parent)
    stats = ScanStats()
    found = list(scan(["corpus"], stats=stats))
    expected = [
        os.path.join("corpus", "a.WAV"),
        os.path.join("corpus", "aa", "x.wav"),
        os.path.join("corpus", "b.wav"),
        os.path.join("corpus", "c.Flac"),
        os.path.join("corpus", "sub", "deeper", "y.mp3"),
        os.path.join("corpus", "sub", "z.ogg"),
    ]
    assert found == [p for p in expected if os.path.splitext(p)[1].lower() in AUDIO_EXTENSIONS]
    assert all(not os.path.isabs(p) for p in found)  # relative stays relative
    assert stats.skipped_non_audio == 3 + (".mp3" not in AUDIO_EXTENSIONS)
    assert stats.files == len(found)
    assert stats.duplicates == 0 and stats.errors == 0
    assert list(scan("corpus")) == found  # a single path works, and the order is stable


def test_scan_keeps_the_given_spelling(tree, monkeypatch):
    monkeypatch.chdir(tree)
    assert list(scan(["./sub/"]))[-1] == "./sub/z.ogg"
    assert list(scan([str(tree)]))[0] == str(tree / "a.WAV")


def test_scan_is_lazy(tree):
    it = scan([tree])
    assert iter(it) is it
    assert next(it).endswith("a.WAV")


def test_scan_symlink_loop_and_duplicates(tree):
    (tree / "sub" / "loop").symlink_to(tree)  # directory loop back to the root
    (tree / "link.wav").symlink_to(tree / "b.wav")  # same file twice
    (tree / "dangling.wav").symlink_to(tree / "missing.wav")
    stats = ScanStats()
    found = list(scan([tree, tree / "b.wav"], stats=stats))
    assert len(found) == len(set(found))
    names = [os.path.basename(p) for p in found]
    assert names.count("b.wav") == 1 and "link.wav" not in names
    # loop (root reached again), link.wav, and b.wav given explicitly a second time
    assert stats.duplicates == 3
    assert stats.errors == 1  # the dangling link
    assert stats.files == len(found)


def test_scan_explicit_file_is_yielded_whatever_its_extension(tmp_path):
    path = tmp_path / "recording.dat"
    _touch(path)
    stats = ScanStats()
    assert list(scan([path], stats=stats)) == [str(path)]
    assert stats.files == 1 and stats.skipped_non_audio == 0


def test_scan_missing_path(tmp_path):
    with pytest.raises(AudioError, match=r"absent: no such file or directory"):
        list(scan([tmp_path / "absent"]))


def test_scan_many_files_in_sorted_order(tmp_path):
    names = [f"{i:05d}.wav" for i in range(3000)]
    for name in reversed(names):
        (tmp_path / name).touch()
    assert [os.path.basename(p) for p in scan(tmp_path)] == names


def test_scan_then_load(tmp_path):
    write_tone(tmp_path / "one.wav", 22050)
    (tmp_path / "two.txt").write_text("x")
    loaded = [load(p) for p in scan(tmp_path)]
    assert len(loaded) == 1 and loaded[0].dtype == np.float32
