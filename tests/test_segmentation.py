"""Tests of ser_cli.segmentation: starts, padding and tail policies (D5), streaming equality."""

from __future__ import annotations

import numpy as np
import pytest

from ser_cli.errors import ConfigError
from ser_cli.segmentation import (
    SegmentConfig,
    SegmentStream,
    cut_segments,
    frames_to_seconds,
    segment_starts,
)

DEFAULT = SegmentConfig()


def spec_of(n_frames: int, n_bins: int = 400, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n_bins, n_frames), dtype=np.float32)


def test_defaults_are_the_papers_values():
    assert DEFAULT == SegmentConfig(200, 100, 40, "repeat", "end")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"segment_frames": 0}, "segment_frames"),
        ({"train_hop_frames": -1}, "train_hop_frames"),
        ({"score_hop_frames": 4.0}, "score_hop_frames"),
        ({"pad": "mirror"}, "pad"),
        ({"tail": "start"}, "tail"),
    ],
)
def test_config_validation(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        SegmentConfig(**kwargs)


@pytest.mark.parametrize(
    ("n_frames", "hop", "tail", "expected"),
    [
        (0, 100, "end", []),
        (1, 100, "end", [0]),
        (197, 40, "end", [0]),  # a clip of exactly 2.00 s
        (197, 40, "drop", [0]),
        (200, 100, "end", [0]),
        (201, 100, "end", [0, 1]),
        (201, 100, "drop", [0]),
        (300, 100, "end", [0, 100]),
        (450, 100, "end", [0, 100, 200, 250]),
        (450, 100, "drop", [0, 100, 200]),
        (280, 40, "end", [0, 40, 80]),
        (290, 40, "end", [0, 40, 80, 90]),
    ],
)
def test_segment_starts(n_frames, hop, tail, expected):
    starts = segment_starts(n_frames, hop, SegmentConfig(tail=tail))
    assert starts.dtype == np.int64
    assert starts.tolist() == expected


@pytest.mark.parametrize("n_frames", [200, 233, 999, 1000, 1001])
@pytest.mark.parametrize("hop", [40, 100, 200, 250])
def test_starts_cover_every_frame_with_tail_end(n_frames, hop):
    starts = segment_starts(n_frames, hop, DEFAULT)
    assert starts[-1] + 200 == n_frames
    assert np.all(np.diff(starts) > 0)
    if hop <= 200:
        covered = np.zeros(n_frames, bool)
        for s in starts:
            covered[s : s + 200] = True
        assert covered.all()


def test_segment_starts_rejects_bad_arguments():
    with pytest.raises(ConfigError, match="hop_frames"):
        segment_starts(100, 0)
    with pytest.raises(ConfigError, match="n_frames"):
        segment_starts(-1, 40)


def test_cut_segments_shapes_and_content():
    spec = spec_of(450)
    segments, starts = cut_segments(spec, 100)
    assert segments.shape == (4, 400, 200) and segments.dtype == np.float32
    assert segments.flags.c_contiguous
    assert starts.tolist() == [0, 100, 200, 250]
    for seg, s in zip(segments, starts):
        np.testing.assert_array_equal(seg, spec[:, s : s + 200])
    assert not np.shares_memory(segments, spec)


def test_cut_segments_float64_input_becomes_float32():
    segments, _ = cut_segments(spec_of(300).astype(np.float64), 40)
    assert segments.dtype == np.float32


def test_cut_segments_empty():
    segments, starts = cut_segments(np.zeros((400, 0), np.float32), 40)
    assert segments.shape == (0, 400, 200) and starts.shape == (0,)


def test_pad_repeat_tiles_the_utterance():
    spec = spec_of(70)
    segments, starts = cut_segments(spec, 40, SegmentConfig(pad="repeat"))
    assert segments.shape == (1, 400, 200) and starts.tolist() == [0]
    np.testing.assert_array_equal(segments[0, :, :70], spec)
    np.testing.assert_array_equal(segments[0, :, 70:140], spec)
    np.testing.assert_array_equal(segments[0, :, 140:], spec[:, :60])


def test_pad_zeros_pads_on_the_right():
    spec = spec_of(197)
    segments, _ = cut_segments(spec, 40, SegmentConfig(pad="zeros"))
    np.testing.assert_array_equal(segments[0, :, :197], spec)
    assert not segments[0, :, 197:].any()


def test_cut_segments_rejects_bad_shape():
    with pytest.raises(ConfigError, match="n_bins, n_frames"):
        cut_segments(np.zeros(400, np.float32), 40)


def test_frames_to_seconds():
    n_samples = 16000 * 10
    assert frames_to_seconds(0, 200, n_samples) == (0.0, 2.03)
    assert frames_to_seconds(100, 200, n_samples) == (1.0, 3.03)
    # the last whole segment of a 10 s file ends at the last sample its last frame reads
    n_frames = 1 + (n_samples - 640) // 160
    start = n_frames - 200
    assert frames_to_seconds(start, 200, n_samples)[1] == pytest.approx(
        ((n_frames - 1) * 160 + 640) / 16000
    )
    # a padded segment ends at the end of the file, however it is counted
    short = 16000 * 2
    assert frames_to_seconds(0, 200, short) == (0.0, 2.0)
    assert frames_to_seconds(0, 197, short) == (0.0, 2.0)
    with pytest.raises(ConfigError, match="start_frame"):
        frames_to_seconds(-1, 200, short)
    with pytest.raises(ConfigError, match="sample_rate"):
        frames_to_seconds(0, 200, short, sample_rate=0)


# --- streaming ---------------------------------------------------------------------------------


def _stream_all(spec, hop, config, block_sizes):
    stream = SegmentStream(hop, config)
    segs, starts = [], []
    i = 0
    for k in block_sizes:
        s, st = stream.push(spec[:, i : i + k])
        assert s.shape[1:] == (spec.shape[0], config.segment_frames) and s.dtype == np.float32
        segs.append(s)
        starts.append(st)
        i += k
    assert i >= spec.shape[1]
    s, st = stream.close()
    segs.append(s)
    starts.append(st)
    return np.concatenate(segs), np.concatenate(starts)


@pytest.mark.parametrize("n_frames", [0, 1, 57, 197, 200, 201, 333, 1000, 2345])
@pytest.mark.parametrize("hop", [40, 100, 230])
@pytest.mark.parametrize("pad", ["repeat", "zeros"])
@pytest.mark.parametrize("tail", ["end", "drop"])
def test_stream_equals_cut_segments_for_random_blocks(n_frames, hop, pad, tail):
    config = SegmentConfig(pad=pad, tail=tail)
    spec = spec_of(n_frames, n_bins=8, seed=n_frames)
    rng = np.random.default_rng(n_frames * 7 + hop)
    sizes = [int(rng.integers(0, 150))]  # at least one push, possibly of zero frames
    while sum(sizes) < n_frames:
        sizes.append(int(rng.integers(0, 150)))
    segs, starts = _stream_all(spec, hop, config, sizes)
    ref_segs, ref_starts = cut_segments(spec, hop, config)
    np.testing.assert_array_equal(starts, ref_starts)
    np.testing.assert_array_equal(segs, ref_segs)


def test_stream_full_size_spectrogram_one_frame_at_a_time():
    spec = spec_of(450)
    segs, starts = _stream_all(spec, 40, DEFAULT, [1] * 450)
    ref_segs, ref_starts = cut_segments(spec, 40)
    np.testing.assert_array_equal(starts, ref_starts)
    np.testing.assert_array_equal(segs, ref_segs)


def test_stream_memory_is_bounded():
    stream = SegmentStream(40)
    for i in range(50):
        stream.push(spec_of(97, n_bins=4, seed=i))
        assert stream._buf.shape[1] <= 200 + 97


def test_stream_misuse():
    stream = SegmentStream(40)
    stream.push(spec_of(10, n_bins=4))
    with pytest.raises(ConfigError, match="rows"):
        stream.push(spec_of(10, n_bins=5))
    stream.close()
    with pytest.raises(ConfigError, match="after close"):
        stream.push(spec_of(10, n_bins=4))
    with pytest.raises(ConfigError, match="hop_frames"):
        SegmentStream(0)
