"""Shared-trunk scoring (ser_cli/trunk.py): index arithmetic, exact cases, blocks, agreement.

Known answers: a window of the utterance's trunk map equals the segment's own trunk output in
every column whose receptive field lies inside the segment; an utterance of exactly one segment
(or shorter, padded) scores identically both ways; scoring in small streamed blocks equals one
pass over the whole utterance.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

import signals
from conftest import SPEAKER_FORMANTS, tiny_model_config, write_pitch_corpus
from ser_cli.errors import ConfigError
from ser_cli.features import FeatureConfig, UtteranceNormalizer, normalize, utterance_blocks
from ser_cli.model import CNN, ModelConfig, config_dict, export_model, load_model
from ser_cli.segmentation import SegmentConfig, cut_segments, segment_starts
from ser_cli.trunk import (
    PRESERVED_METHODS,
    TrunkGeometry,
    conv_flops,
    conv_flops_per_second,
    plan_blocks,
    shared_trunk_logits,
)

POOLS = [(2, 3), (1, 2, 3)]


def _net(pool_after, seed=0):
    """A small eval-mode CNN with non-trivial batch-norm statistics."""
    torch.manual_seed(seed)
    net = CNN(ModelConfig(n_classes=3, widths=(6, 6, 6, 6), conv1_channels=(4, 4),
                          pool_after=pool_after)).eval()
    gen = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(0.2 * torch.rand(m.running_mean.shape, generator=gen) - 0.1)
            m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=gen))
    return net


def _spec(n_frames, seed=0):
    rng = np.random.default_rng(seed)
    return normalize(rng.random((400, n_frames), dtype=np.float32) ** 3, "utterance")


def _per_segment(net, spec, config=SegmentConfig()):
    segments, starts = cut_segments(spec, config.score_hop_frames, config)
    with torch.inference_mode():
        return net(torch.from_numpy(segments)[:, None]).numpy(), starts


@pytest.mark.parametrize("pool_after, f, w", [((2, 3), 4, 49), ((1, 2, 3), 8, 24)])
def test_geometry_matches_the_network(pool_after, f, w):
    net = _net(pool_after)
    geometry = TrunkGeometry.from_model_config(net.config)
    assert (geometry.pool_factor, geometry.window_columns) == (f, w)
    assert geometry.margin_left % f == 0 and geometry.margin_left >= geometry.reach_left
    with torch.inference_mode():
        for n in (16, 17, 199, 200, 201, 203, 204, 333):
            assert net.trunk_map(torch.zeros(1, 1, 400, n)).shape[3] == geometry.map_width(n), n
    # receptive field: a change at frame t moves map column P only if fP-left <= t <= fP+right
    x = torch.from_numpy(_spec(400))[None, None]
    with torch.inference_mode():
        base = net.trunk_map(x)
        for t in (150, 201, 222):
            y = x.clone()
            y[..., t] += 1.0
            moved = (net.trunk_map(y) - base).abs().amax(dim=(0, 1, 2)) > 0
            cols = np.flatnonzero(moved.numpy())
            lo = math.ceil((t - geometry.reach_right) / f)
            hi = math.floor((t + geometry.reach_left) / f)
            assert cols.min() >= lo and cols.max() <= hi, (t, cols, lo, hi)


@pytest.mark.parametrize("pool_after", POOLS)
def test_window_slice_equals_segment_trunk_in_interior_columns(pool_after):
    net = _net(pool_after)
    g = TrunkGeometry.from_model_config(net.config)
    spec = _spec(420)
    first = math.ceil(g.reach_left / g.pool_factor)  # columns untouched by segment-edge padding
    last = (g.segment_frames - 1 - g.reach_right) // g.pool_factor
    with torch.inference_mode():
        whole = net.trunk_map(torch.from_numpy(spec)[None, None])
        for start in segment_starts(420, 40)[:-1]:  # the regular windows
            own = net.trunk_map(torch.from_numpy(spec[:, start : start + 200])[None, None])
            assert own.shape[3] == g.window_columns
            col = int(start) // g.pool_factor
            window = whole[..., col : col + g.window_columns]
            torch.testing.assert_close(window[..., first : last + 1], own[..., first : last + 1],
                                       rtol=0, atol=1e-5)
            if start > 0:  # an edge column did see zero padding in the segment
                assert not torch.allclose(window[..., :1], own[..., :1], atol=1e-5)


@pytest.mark.parametrize("pool_after", POOLS)
@pytest.mark.parametrize("n_frames, pad", [(200, "repeat"), (150, "repeat"), (60, "zeros")])
def test_one_segment_utterance_scores_exactly_as_per_segment(pool_after, n_frames, pad):
    net = _net(pool_after)
    config = SegmentConfig(pad=pad)
    spec = _spec(n_frames)
    with torch.inference_mode():
        shared, starts = shared_trunk_logits(net, spec, 40, config, net.config)
    ref, ref_starts = _per_segment(net, spec, config)
    assert starts.tolist() == ref_starts.tolist() == [0]
    np.testing.assert_allclose(shared, ref, rtol=0, atol=1e-6)


@pytest.mark.parametrize("pool_after", POOLS)
@pytest.mark.parametrize("n_frames", [201, 237, 611])
def test_streamed_blocks_give_the_whole_utterance_map(pool_after, n_frames):
    net = _net(pool_after)
    g = TrunkGeometry.from_model_config(net.config)
    spec = _spec(n_frames, seed=n_frames)
    blocks = plan_blocks(spec, 40, SegmentConfig(), g, block_frames=120)
    assert np.concatenate([b.starts for b in blocks]).tolist() == segment_starts(n_frames, 40).tolist()
    with torch.inference_mode():
        whole = net.trunk_map(torch.from_numpy(spec)[None, None])
        for b in blocks:
            assert b.start_frame % g.pool_factor == 0
            assert np.array_equal(b.frames, spec[:, b.start_frame : b.start_frame + b.frames.shape[1]])
            part = net.trunk_map(torch.from_numpy(b.frames)[None, None])
            for col, local in zip(b.columns, b.local_columns):
                torch.testing.assert_close(part[..., local : local + g.window_columns],
                                           whole[..., col : col + g.window_columns],
                                           rtol=0, atol=1e-5)
        one, _ = shared_trunk_logits(net, spec, 40, SegmentConfig(), net.config, block_frames=10**6)
        many, _ = shared_trunk_logits(net, spec, 40, SegmentConfig(), net.config, block_frames=120)
    np.testing.assert_allclose(many, one, rtol=0, atol=1e-5)
    # the end-aligned tail uses the window that ends at the map's end
    assert blocks[-1].columns[-1] + g.window_columns == g.map_width(n_frames)


def test_blocks_are_streamable_in_any_pushes():
    from ser_cli.trunk import TrunkBlockStream

    net = _net((2, 3))
    g = TrunkGeometry.from_model_config(net.config)
    spec = _spec(2500, seed=3)
    whole = plan_blocks(spec, 40, SegmentConfig(), g, block_frames=400)
    stream = TrunkBlockStream(g, 40, SegmentConfig(), block_frames=400)
    got, i, rng = [], 0, np.random.default_rng(0)
    while i < spec.shape[1]:
        k = int(rng.integers(0, 300))
        got += stream.push(spec[:, i : i + k])
        i += k
    got += stream.close()
    assert len(got) == len(whole) > 3
    for a, b in zip(got, whole):
        assert a.start_frame == b.start_frame and np.array_equal(a.frames, b.frames)
        assert a.columns.tolist() == b.columns.tolist()


def test_utterance_normalisation_streams_and_blocks():
    rng = np.random.default_rng(1)
    spec = rng.random((400, 14_500), dtype=np.float32)
    spec[:, 7000:] *= 50.0
    assert utterance_blocks(14_500).tolist() == [0, 6000, 14_500]
    whole = normalize(spec, "utterance")
    assert whole[:, :6000].max() == 1.0 and whole[:, 6000:].max() == 1.0
    norm = UtteranceNormalizer()
    parts, i = [], 0
    while i < spec.shape[1]:
        k = int(rng.integers(1, 2000))
        parts.append(norm.push(spec[:, i : i + k]))
        i += k
    parts.append(norm.close())
    assert np.array_equal(np.concatenate(parts, axis=1), whole)
    short = spec[:, :300]
    segments, _ = cut_segments(normalize(short, "utterance"), 100)
    # segments share the utterance's scale: only the loudest reaches 1
    assert sum(float(s.max()) == 1.0 for s in segments) == 1
    assert np.array_equal(normalize(short[:, :200], "utterance"), normalize(short[:, :200], "max"))


def test_flop_count_and_ratio():
    config = ModelConfig()
    # Conv1 8·(10·2) + 8·(2·8) taps on 399 × 199, then 3 × 3 convs: 2.04 GFLOP per segment
    assert conv_flops(config, 200) == 2 * (
        8 * 20 * 399 * 199 + 8 * 16 * 399 * 199 + 16 * 32 * 9 * 399 * 199
        + 32 * 48 * 9 * 199 * 99 + 48 * 64 * 9 * 99 * 49 + 64 * 80 * 9 * 99 * 49
    )
    long = conv_flops_per_second(config, [60_000], SegmentConfig())
    assert long["ratio"] >= 4.0
    short = conv_flops_per_second(config, [200], SegmentConfig())
    assert short["ratio"] == pytest.approx(1.0)


def test_exported_model_has_the_shared_trunk_methods(tmp_path):
    net = _net((2, 3))
    path = _export(net, tmp_path / "m.pt", "utterance")
    loaded = load_model(path)
    spec = _spec(450)
    with torch.inference_mode():
        fmap = loaded.module.trunk_map(torch.from_numpy(spec)[None, None])
        starts = torch.tensor([0, 10, 50])
        got = loaded.module.window_logits(fmap, starts, 49)
        want = torch.cat([loaded.module.head(fmap[..., s : s + 49]) for s in starts.tolist()])
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
        frozen = torch.jit.freeze(loaded.module.to(memory_format=torch.channels_last),
                                  preserved_attrs=PRESERVED_METHODS)
        a, _ = shared_trunk_logits(frozen, spec, 40, SegmentConfig(), net.config)
        b, _ = shared_trunk_logits(net, spec, 40, SegmentConfig(), net.config)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-4)


def _export(net, path, normalization):
    meta = {"classes": ["a", "b", "c"],
            "feature_config": config_dict(FeatureConfig(normalization=normalization)),
            "segment_config": config_dict(SegmentConfig()),
            "scoring_config": {"average": "logits"}, "model_config": config_dict(net.config)}
    return export_model(net, path, meta)


def test_per_segment_normalised_model_is_refused(tmp_path, synthetic_corpus):
    from ser_cli import analyze, evaluate
    from ser_cli.cli import main
    from ser_cli.corpora import read_corpus

    tiny_model = _export(_net((2, 3)), tmp_path / "per-segment.pt", "max")
    wav = tmp_path / "a.wav"
    sf.write(wav, signals.vowel(120.0, duration_s=1.0), 16000)
    with pytest.raises(ConfigError, match=rf"{tiny_model.name}.*normalization='utterance'"):
        analyze([wav], tmp_path / "out", model=tiny_model, shared_trunk=True, progress=False)
    with pytest.raises(ConfigError, match="normalization='utterance'"):
        evaluate(read_corpus(synthetic_corpus), tmp_path / "ev", shared_trunk=True, progress=False)
    result = CliRunner().invoke(main, ["analyze", str(wav), "-o", str(tmp_path / "o2"), "--model",
                                       str(tiny_model), "--shared-trunk", "-q"])
    assert result.exit_code == 1 and tiny_model.name in result.output
    help_text = CliRunner().invoke(main, ["train", "--help"]).output
    assert "utterance" in help_text


@pytest.fixture(scope="module")
def utterance_model(tmp_path_factory, feature_cache):
    """A tiny model trained 2 epochs with normalization="utterance" on 3 s pitch files."""
    from ser_cli.corpora import read_corpus
    from ser_cli.training import TrainConfig, train

    root = write_pitch_corpus(tmp_path_factory.mktemp("pitch3s") / "pitch", per_class=1,
                              duration_s=3.0)
    out = tmp_path_factory.mktemp("utt-model") / "utt.pt"
    train(read_corpus(root), out, model_config=tiny_model_config(pool_after=(2, 3)),
          feature_config=FeatureConfig(normalization="utterance"),
          train_config=TrainConfig(epochs=2, batch_size=8), cache_dir=feature_cache,
          device="cpu", precision="fp32", progress=False, command="pytest utterance_model")
    return out


def test_trained_utterance_model_shared_and_per_segment_agree(utterance_model, tmp_path):
    from ser_cli import analyze

    files = []
    for i, (speaker, formants) in enumerate(SPEAKER_FORMANTS.items()):
        f0 = 110.0 if i % 2 else 240.0
        y = signals.vowel(f0, formants, 4.0 + 1.3 * i, seed=i)
        path = tmp_path / f"{speaker}.wav"
        sf.write(path, y, 16000, subtype="PCM_16")
        files.append(path)
    sf.write(tmp_path / "short.wav", signals.vowel(120.0, duration_s=1.2, seed=9), 16000)
    files.append(tmp_path / "short.wav")
    runs = {}
    for shared in (False, True):
        result = analyze(files, tmp_path / f"out-{shared}", model=utterance_model, device="cpu",
                         precision="fp32", shared_trunk=shared, progress=False)
        assert result.n_error == 0
        runs[shared] = {u["file"]: u for u in result.utterances}
        assert result.summary["settings"]["shared_trunk"] is shared
    seg_agree = seg_total = 0
    for name, per_seg in runs[False].items():
        shared = runs[True][name]
        assert shared["n_segments"] == per_seg["n_segments"]
        assert shared["label"] == per_seg["label"]
    for shared in (False, True):
        text = (tmp_path / f"out-{shared}" / "segments.jsonl").read_text()
        rows = [json.loads(line) for line in text.splitlines()]
        runs[shared] = {(r["file"], r["index"]): r["label"] for r in rows}
    for key, label in runs[False].items():
        seg_total += 1
        seg_agree += runs[True][key] == label
    print(f"segment labels agree: {seg_agree}/{seg_total}")
    assert seg_total >= 40 and seg_agree / seg_total >= 0.9


def test_evaluation_scoring_helper_matches_the_pipeline_segments(utterance_model, tmp_path):
    from ser_cli.evaluation import _shared_trunk_logits
    from ser_cli.training import extract_segments, predict_logits

    path = tmp_path / "v.wav"
    sf.write(path, signals.vowel(200.0, duration_s=3.5, seed=4), 16000)
    loaded = load_model(utterance_model)
    shared = _shared_trunk_logits(str(path), loaded, torch.device("cpu"))
    segments = extract_segments(str(path), 40, loaded.feature_config, loaded.segment_config, "")
    per_segment = predict_logits(loaded.module, segments, torch.device("cpu"))
    assert shared.shape == per_segment.shape
    assert (shared.argmax(1) == per_segment.argmax(1)).mean() >= 0.9
