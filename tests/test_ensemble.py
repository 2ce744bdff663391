"""Ensembles of trained models (ser_cli.model.Ensemble, `ser-cli ensemble`): one file whose
segment logits are the mean of its members', scored by every path that scores a model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

import signals
from ser_cli.card import render_card
from ser_cli.cli import main
from ser_cli.errors import ConfigError, ModelFileError
from ser_cli.features import FeatureConfig, normalize
from ser_cli.model import (
    CNN,
    Ensemble,
    ModelConfig,
    config_dict,
    ensemble_models,
    export_model,
    load_model,
    read_metadata,
)
from ser_cli.segmentation import SegmentConfig
from ser_cli.trunk import PRESERVED_METHODS, shared_trunk_logits


def _member(tiny_model, path, seed, **meta_overrides):
    """A copy of ``tiny_model``'s metadata with a freshly initialised network of seed ``seed``."""
    meta = read_metadata(tiny_model)
    meta["train_config"] = {**meta["train_config"], "seed": seed}
    meta["command"] = f"ser-cli train corpus --seed {seed} -o {path.name}"
    meta.update(meta_overrides)
    torch.manual_seed(seed)
    net = CNN(ModelConfig.from_dict(meta["model_config"])).eval()
    for m in net.modules():  # non-trivial batch-norm statistics, so freezing has work to do
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return export_model(net, path, meta)


@pytest.fixture()
def members(tiny_model, tmp_path):
    return [_member(tiny_model, tmp_path / f"seed{s}.pt", s) for s in (0, 1)]


def test_ensemble_file_scores_the_mean_of_its_members(members, tmp_path):
    out = ensemble_models(members, tmp_path / "ens.pt", command="ser-cli ensemble seed0.pt seed1.pt")
    ens, a, b = (load_model(p) for p in (out, *members))
    x = torch.from_numpy(np.random.default_rng(0).random((3, 1, 400, 200), dtype=np.float32))
    with torch.inference_mode():
        want = (a.module(x) + b.module(x)) / 2
        torch.testing.assert_close(ens.module(x), want, rtol=0, atol=1e-6)
        # analyze freezes the module (batch norm folded into the convolutions)
        frozen = torch.jit.freeze(ens.module.eval())
        torch.testing.assert_close(frozen(x), want, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(a.module(x), b.module(x)), "members must differ for the test to mean anything"
    assert ens.classes == a.classes and ens.model_config == a.model_config
    meta = ens.metadata
    assert [m["train_config"]["seed"] for m in meta["ensemble"]["members"]] == [0, 1]
    assert [m["sha256"] for m in meta["ensemble"]["members"]] == [a.sha256, b.sha256]
    assert meta["command"] == "ser-cli ensemble seed0.pt seed1.pt"


def test_ensemble_shared_trunk_equals_the_mean_of_its_members(tmp_path):
    """trunk_map stacks the members' maps along the channels, window_logits splits them."""
    config = ModelConfig(n_classes=3, widths=(6, 6, 6, 6), conv1_channels=(4, 4))
    meta = {"classes": ["a", "b", "c"], "feature_config": config_dict(FeatureConfig(normalization="utterance")),
            "segment_config": config_dict(SegmentConfig()), "scoring_config": {"average": "logits"},
            "model_config": config_dict(config)}
    nets = []
    for seed in (0, 1, 2):
        torch.manual_seed(seed)
        nets.append(CNN(config).eval())
    paths = [export_model(n, tmp_path / f"m{i}.pt", meta) for i, n in enumerate(nets)]
    ens = load_model(ensemble_models(paths, tmp_path / "ens.pt"))
    spec = normalize(np.random.default_rng(1).random((400, 650), dtype=np.float32) ** 3, "utterance")
    with torch.inference_mode():
        frozen = torch.jit.freeze(ens.module.eval().to(memory_format=torch.channels_last),
                                  preserved_attrs=PRESERVED_METHODS)
        got, starts = shared_trunk_logits(frozen, spec, 40, SegmentConfig(), config)
        each = [shared_trunk_logits(n, spec, 40, SegmentConfig(), config) for n in nets]
    np.testing.assert_array_equal(starts, each[0][1])
    np.testing.assert_allclose(got, np.mean([e[0] for e in each], axis=0), rtol=0, atol=1e-4)


def test_members_of_another_configuration_are_refused(tiny_model, members, tmp_path):
    other = _member(tiny_model, tmp_path / "other.pt", 2, classes=["low", "high"])
    with pytest.raises(ModelFileError, match=r"other\.pt: classes differs"):
        ensemble_models([members[0], other], tmp_path / "ens.pt")
    with pytest.raises(ConfigError, match="at least 2"):
        ensemble_models(members[:1], tmp_path / "ens.pt")
    ens = ensemble_models(members, tmp_path / "ens.pt")
    with pytest.raises(ModelFileError, match="already an ensemble"):
        ensemble_models([ens, members[0]], tmp_path / "ens2.pt")
    with pytest.raises(ConfigError, match="at least 2"):
        Ensemble([CNN(ModelConfig(n_classes=2, widths=(4, 4, 4, 4)))])
    assert not (tmp_path / "ens2.pt").exists()


def test_cli_builds_an_ensemble_that_analyze_info_and_card_read(members, tmp_path):
    out = tmp_path / "ens.pt"
    result = CliRunner().invoke(main, ["ensemble", *map(str, members), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "2 members" in result.output

    info = CliRunner().invoke(main, ["model-info", str(out)])
    assert info.exit_code == 0, info.output
    assert "member 1: seed0.pt" in info.output and "seed 1): ser-cli train corpus --seed 1" in info.output

    card = render_card(out)
    assert "An ensemble of 2 networks trained with this recipe, differing in `seed`" in card
    assert "seeds 0, 1" in card and "| 2 | `seed1.pt` |" in card
    assert "ser-cli train corpus --seed 0 -o seed0.pt\nser-cli train corpus --seed 1 -o seed1.pt\n" in card

    wav = tmp_path / "audio" / "a.wav"
    wav.parent.mkdir()
    sf.write(wav, signals.vowel(150.0, duration_s=3.0, seed=0), 16000)
    reports = tmp_path / "reports"
    run = CliRunner().invoke(main, ["analyze", str(wav.parent), "--model", str(out), "-o", str(reports), "--quiet"])
    assert run.exit_code == 0, run.output
    rows = json.loads((reports / "utterances.json").read_text())
    assert [r["status"] for r in rows] == ["ok"]
    summary = json.loads((reports / "summary.json").read_text())
    assert json.dumps(summary).count(load_model(out).sha256) >= 1  # the reports name the ensemble

    bad = CliRunner().invoke(main, ["ensemble", str(members[0]), "-o", str(tmp_path / "one.pt")])
    assert bad.exit_code == 1 and "at least 2" in bad.output
