"""D4 score averaging: known answers for both averages, input checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ser_cli.errors import ConfigError
from ser_cli.scoring import ScoringConfig, segment_probabilities, utterance_scores


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="average"):
        ScoringConfig(average="median")


def test_logits_average_then_softmax():
    logits = np.array([[2.0, 0.0], [0.0, 0.0]])
    expected = np.exp([1.0, 0.0]) / np.exp([1.0, 0.0]).sum()
    np.testing.assert_allclose(utterance_scores(logits, ScoringConfig(average="logits")), expected)


def test_probs_average_of_softmaxes():
    logits = np.array([[2.0, 0.0], [0.0, 0.0]])
    first = np.exp([2.0, 0.0]) / np.exp([2.0, 0.0]).sum()
    expected = (first + [0.5, 0.5]) / 2
    np.testing.assert_allclose(utterance_scores(logits, ScoringConfig(average="probs")), expected)


def test_averages_differ_and_can_disagree():
    # one confident segment for class 0 outvotes four mild ones for class 1 in logit space only
    logits = np.array([[10.0, 0.0]] + [[0.0, 1.0]] * 4)
    assert utterance_scores(logits, ScoringConfig(average="logits")).argmax() == 0
    assert utterance_scores(logits, ScoringConfig(average="probs")).argmax() == 1


def test_single_segment_both_averages_agree_and_accept_tensors():
    logits = torch.tensor([[0.3, -1.0, 2.0]])
    a = utterance_scores(logits, ScoringConfig(average="logits"))
    b = utterance_scores(logits, ScoringConfig(average="probs"))
    np.testing.assert_allclose(a, b)
    np.testing.assert_allclose(a.sum(), 1.0)
    np.testing.assert_allclose(segment_probabilities(logits)[0], a)


def test_large_logits_are_stable():
    scores = utterance_scores([[1000.0, 0.0]])
    assert np.all(np.isfinite(scores)) and scores[0] == pytest.approx(1.0)


@pytest.mark.parametrize("bad", [np.zeros(3), np.zeros((0, 2)), [[np.nan, 0.0]]])
def test_bad_input(bad):
    with pytest.raises(ConfigError, match="segment_logits"):
        utterance_scores(bad)
