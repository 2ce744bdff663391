"""Segment scores → utterance scores (SPEC §2; decision D4).

At scoring time an utterance is cut into 2 s segments every
``SegmentConfig.score_hop_frames`` frames (0.4 s); the network gives one logit vector per segment, and the utterance's class probabilities are their
average: of the logits, then a softmax (``average="logits"``), or of the per-segment softmax
outputs (``average="probs"``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ser_cli.errors import ConfigError

__all__ = ["ScoringConfig", "utterance_scores", "segment_probabilities", "softmax"]

_AVERAGES = ("logits", "probs")


@dataclass(frozen=True)
class ScoringConfig:
    """How segment scores become an utterance score.

    Parameters
    ----------
    average : {"logits", "probs"}
        D4: average the segments' logits then apply a softmax, or average their softmax outputs.

    Raises
    ------
    ConfigError
        A field out of range; the message names the field.

    Examples
    --------
    >>> ScoringConfig().average
    'logits'
    """

    average: str = "logits"

    def __post_init__(self) -> None:
        if self.average not in _AVERAGES:
            raise ConfigError(f"average={self.average!r} is not one of logits, probs")


def _as_logits(segment_logits) -> np.ndarray:
    if hasattr(segment_logits, "detach"):  # torch.Tensor, without importing torch
        segment_logits = segment_logits.detach().float().cpu().numpy()
    logits = np.asarray(segment_logits, dtype=np.float64)
    if logits.ndim != 2 or logits.shape[0] < 1 or logits.shape[1] < 1:
        raise ConfigError(f"segment_logits has shape {logits.shape}, expected (n_segments >= 1, K)")
    if not np.all(np.isfinite(logits)):
        raise ConfigError("segment_logits contains NaN or infinite values")
    return logits


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax along ``axis`` (float64)."""
    shifted = logits - np.max(logits, axis=axis, keepdims=True)
    exp = np.exp(shifted)
    return exp / np.sum(exp, axis=axis, keepdims=True)


def segment_probabilities(segment_logits) -> np.ndarray:
    """Per-segment class probabilities.

    Parameters
    ----------
    segment_logits : array-like or torch.Tensor, shape (n_segments, K)
        Raw network outputs, finite.

    Returns
    -------
    np.ndarray, shape (n_segments, K), float64
        Rows are softmax distributions (non-negative, sum to 1).

    Raises
    ------
    ConfigError
        Wrong shape or non-finite values.

    Examples
    --------
    >>> segment_probabilities([[0.0, 0.0]])
    array([[0.5, 0.5]])
    """
    return softmax(_as_logits(segment_logits), axis=1)


def utterance_scores(segment_logits, config: ScoringConfig | None = None) -> np.ndarray:
    """Class probabilities of one utterance from the logits of its segments (D4).

    Parameters
    ----------
    segment_logits : array-like or torch.Tensor, shape (n_segments, K)
        Network outputs for every scoring segment of the utterance.
    config : ScoringConfig, optional
        ``average="logits"``: ``softmax(mean(logits))``; ``"probs"``: ``mean(softmax(logits))``.

    Returns
    -------
    np.ndarray, shape (K,), float64
        Probabilities summing to 1.

    Raises
    ------
    ConfigError
        Wrong shape or non-finite values.

    Examples
    --------
    >>> utterance_scores([[2.0, 0.0], [0.0, 2.0]])
    array([0.5, 0.5])
    """
    config = config or ScoringConfig()
    logits = _as_logits(segment_logits)
    if config.average == "logits":
        return softmax(logits.mean(axis=0))
    return softmax(logits, axis=1).mean(axis=0)
