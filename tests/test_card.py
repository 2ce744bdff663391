"""Model cards are rendered from the model file and evaluate's metrics, never typed by hand."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from ser_cli.card import read_evaluation, render_card, render_evaluation
from ser_cli.cli import main
from ser_cli.errors import ConfigError
from ser_cli.model import read_metadata


def _metrics(partial: bool) -> dict:
    return {
        "classes": ["high", "low"], "primary_average": "logits", "wa": 0.75, "ua": 0.7,
        "recalls": {"high": 0.9, "low": 0.5}, "support": {"high": 10, "low": 10},
        "confusion": [[9, 1], [5, 5]], "n_utterances": 20, "n_folds": 4,
        "folds_run": [1, 2] if partial else [1, 2, 3, 4], "partial": partial, "epochs": 3,
        "by_average": {"logits": {"wa": 0.75, "ua": 0.7}, "probs": {"wa": 0.7, "ua": 0.65}},
        "per_fold": [{"fold": 1, "speakers": ["s1"], "n": 10, "wa": 0.8, "ua": 0.8}],
        "command": "ser-cli evaluate corpus -o ev",
    }


def test_card_carries_data_recipe_decisions_and_evaluation(tiny_model):
    card = render_card(tiny_model, {"Leave-one-speaker-out": _metrics(partial=True)})
    meta = read_metadata(tiny_model)
    assert card.startswith(f"# Model card: {tiny_model.name}")
    assert str(meta["command"]) in card
    for decision in ("D1", "D2", "D3", "D4", "D5"):
        assert decision in card
    assert "WA **75.0 %**, UA **70.0 %**" in card
    assert "partial" in card and "2 of 4 folds" in card
    assert "| high | 9 | 1 |" in card  # confusion row
    assert "probs): WA 70.0 %, UA 65.0 %" in card
    assert "2 s windows of 0–4 kHz" in card and "fmax" not in card


def test_card_states_a_wider_band(tiny_model, tmp_path):
    from ser_cli.model import update_metadata

    meta = read_metadata(tiny_model)
    wide = tmp_path / "wide.pt"
    wide.write_bytes(tiny_model.read_bytes())
    update_metadata(wide, {"feature_config": {**meta["feature_config"], "fmax": 8000}})
    card = render_card(wide)
    assert "2 s windows of 0–8 kHz" in card
    assert "`fmax` = 8000 (paper-faithful default 4000)" in card


def test_evaluation_section_states_its_scoring_rule():
    plain = render_evaluation("run", _metrics(partial=False))
    assert "all 4 folds, 3 epochs; utterance score = average of segment logits (D4)." in plain
    ensemble = render_evaluation("run", {**_metrics(partial=False), "primary_average": "probs",
                                         "scoring": "utterance score = mean of 2 members' probabilities"})
    assert "3 epochs; utterance score = mean of 2 members' probabilities." in ensemble
    assert "average of segment" not in ensemble
    # an ensemble report's other average is the other way of combining members, not D4's
    members = render_evaluation("run", {**_metrics(partial=False), "ensemble_of": [{}, {}]})
    assert "With the members' utterance probabilities averaged instead: WA 70.0 %, UA 65.0 %." in members
    assert "other D4 average" not in members


def test_card_without_evaluation_says_how_to_get_one(tiny_model):
    assert "No evaluation attached yet" in render_card(tiny_model)


def test_read_evaluation_names_the_folder(tmp_path):
    with pytest.raises(ConfigError, match="nowhere: no metrics.json"):
        read_evaluation(tmp_path / "nowhere")


def test_cli_writes_card_and_attaches_metrics(tmp_path, tiny_model):
    model = tmp_path / "m.pt"
    model.write_bytes(tiny_model.read_bytes())
    ev = tmp_path / "ev"
    ev.mkdir()
    (ev / "metrics.json").write_text(json.dumps(_metrics(partial=False)))
    result = CliRunner().invoke(main, ["model-card", str(model), "--evaluation", f"LOSO={ev}", "--attach"])
    assert result.exit_code == 0, result.output
    assert "all 4 folds" in (tmp_path / "m.md").read_text()
    assert read_metadata(model)["metrics"]["LOSO"]["ua"] == 0.7
    bad = CliRunner().invoke(main, ["model-card", str(model), "--evaluation", "no-equals-sign"])
    assert bad.exit_code == 2 and "TITLE=DIR" in bad.output


def test_card_describes_the_recipe_and_each_corpus(tiny_model, tmp_path):
    from ser_cli.card import _recipe_text

    paper = _recipe_text({"optimizer": "sgd", "momentum": 0.9, "weight_decay": 1e-4, "lr": 0.05,
                          "batch_size": 64, "epochs": 50, "seed": 0}, {"train_hop_frames": 100},
                         {"lr_milestones": [21, 31, 41], "n_segments": 300})
    assert "SGD (Nesterov momentum 0.9)" in paper and "after epochs [21, 31, 41]" in paper
    assert "every 1.0 s" in paper and "no augmentation" in paper
    ser = _recipe_text({"optimizer": "adamw", "weight_decay": 0.05, "lr": 0.002, "lr_schedule": "onecycle",
                        "sampling": "crops", "crops_per_utterance": 2, "speed_factors": [0.9, 1.0, 1.1],
                        "noise_snr_db": [10, 30], "noise_prob": 0.5, "freq_masks": 2, "freq_mask_bins": 40,
                        "time_masks": 2, "time_mask_frames": 30, "mixup_alpha": 0.2,
                        "corpus_balance": True, "batch_size": 64, "epochs": 12, "seed": 0},
                       {}, {"n_segments": 2022})
    for text in ("AdamW, decoupled weight decay 0.05", "warmed up to 0.002", "2 random 2 s windows",
                 "speed perturbation 0.9, 1.0, 1.1", "pink noise at 10–30 dB SNR on 50 %",
                 "mixup α = 0.2", "corpus-balanced loss"):
        assert text in ser, text
    joint = _metrics(partial=False)
    joint["by_corpus"] = {"emodb": {"classes": ["high", "low"], "folds": [1, 2], "n": 8, "wa": 0.5,
                                    "ua": 0.5, "recalls": {"high": 0.5, "low": 0.5},
                                    "confusion": [[2, 2], [2, 2]]}}
    card = render_card(tiny_model, {"Joint": joint})
    assert "**emodb** alone (2 classes, folds 1, 2): WA **50.0 %**" in card
