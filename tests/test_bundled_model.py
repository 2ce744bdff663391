"""The shipped model, its card and its evaluation describe one another.

These read the files in the package and under docs/results/default-model/, so they fail when the
`ser` recipe changes without the bundled model being retrained, or when the model is replaced
without its card and evaluation (docs/render_default_model.sh does all three).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from ser_cli import training
from ser_cli.analysis import default_model_path
from ser_cli.model import config_dict, load_model, read_metadata

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results" / "default-model"
CLASSES = ["neutral", "happy", "angry", "sad"]


@pytest.fixture(scope="module")
def meta():
    return read_metadata(default_model_path())


def test_bundled_model_loads_with_the_papers_four_classes():
    model = load_model(default_model_path())
    assert model.classes == CLASSES
    assert default_model_path().stat().st_size < 5e6


def test_bundled_model_is_trained_with_the_default_recipe(meta):
    train_config, overrides = training.recipe_configs("ser")
    assert meta["train_config"] == json.loads(json.dumps(config_dict(train_config)))
    for key, value in overrides["model"].items():
        assert meta["model_config"][key] == list(value)


def test_card_names_this_model_file():
    digest = hashlib.sha256(default_model_path().read_bytes()).hexdigest()
    card = default_model_path().with_suffix(".md").read_text()
    assert f"sha256 `{digest[:16]}" in card


def card_evaluation(meta, kind: str) -> str:
    """The folder under docs/results/default-model/ whose ``kind`` evaluation the card reports.

    A single network's are ``joint`` and ``cross-corpus``; an ensemble's are ``joint-ens`` and
    ``cross-corpus-ens`` (its members' evaluations combined as the file scores;
    docs/render_default_model.sh).
    """
    return f"{kind}-ens" if "ensemble" in meta else kind


@pytest.mark.parametrize("kind", ["joint", "cross-corpus"])
def test_card_evaluations_used_the_models_recipe_and_classes(meta, kind):
    metrics = json.loads((RESULTS / card_evaluation(meta, kind) / "metrics.json").read_text())
    assert metrics["classes"] == meta["classes"]
    assert not metrics["partial"]
    for name in ("train_config", "model_config", "feature_config", "segment_config"):
        assert metrics["configs"][name] == meta[name], name
    attached = {m["command"]: m for m in meta["metrics"].values()}
    assert attached[metrics["command"]]["ua"] == pytest.approx(metrics["ua"])


def test_model_was_trained_on_the_evaluated_utterances(meta):
    metrics = json.loads((RESULTS / "joint" / "metrics.json").read_text())
    assert meta["data"]["n_utterances"] == metrics["n_utterances"]


def test_an_ensembles_evaluation_combines_its_own_members(meta):
    """The card's numbers for an ensemble are those of its members' seeds, scored by its rule."""
    if "ensemble" not in meta:
        pytest.skip("the bundled model is a single network")
    seeds = [m["train_config"]["seed"] for m in meta["ensemble"]["members"]]
    assert len(set(seeds)) == len(seeds) >= 2
    for kind in ("joint", "cross-corpus"):
        metrics = json.loads((RESULTS / card_evaluation(meta, kind) / "metrics.json").read_text())
        assert [m["seed"] for m in metrics["ensemble_of"]] == seeds
        assert metrics["primary_average"] == "logits"
