"""Shared fixtures: a synthetic two-class corpus and a tiny model trained on it.

``synthetic_corpus`` is a folder of 1 s WAV files (16 kHz mono) with a ``manifest.csv``
(``path,speaker,label``): two classes, ``low`` (glottal pitch 90-130 Hz) and ``high``
(200-280 Hz), spoken by four synthetic speakers ``s1``-``s4`` who differ by their formants
(tests/signals.py ``vowel``), three utterances per speaker and class. Pitch is a local texture
in the spectrogram (harmonic spacing 9-13 vs 20-28 bins), so even a CNN with 4 channels per
layer separates the classes on held-out speakers after a few epochs.

``tiny_model`` is a TorchScript model file trained on it for 3 epochs by
:func:`ser_cli.training.train` with the tiny architecture :data:`TINY_MODEL` (attention head).
Both are session-scoped: built once per test run.
"""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

import signals

SPEAKER_FORMANTS = {
    "s1": (700.0, 1200.0, 2600.0),
    "s2": (300.0, 2300.0, 3000.0),
    "s3": (500.0, 1500.0, 2500.0),
    "s4": (400.0, 1900.0, 2700.0),
}
PITCH_RANGES_HZ = {"low": (90.0, 130.0), "high": (200.0, 280.0)}


def tiny_model_config(**overrides):
    """A CNN_TF small enough for tests: 4 channels per layer, pools after Conv1-Conv3."""
    from ser_cli.model import ModelConfig

    values = dict(n_classes=2, widths=(4, 4, 4, 4), conv1_channels=(4, 4), pool_after=(1, 2, 3))
    values.update(overrides)
    return ModelConfig(**values)


def write_pitch_corpus(root, speakers=SPEAKER_FORMANTS, per_class: int = 3, duration_s: float = 1.0):
    """Write the two-class pitch corpus under ``root``; returns ``root``.

    File ``<speaker>_<label>_<i>.wav``; the manifest lists ``path,speaker,label``.
    """
    root.mkdir(parents=True, exist_ok=True)
    rows = ["path,speaker,label"]
    for k, (speaker, formants) in enumerate(speakers.items()):
        for c, (label, (lo, hi)) in enumerate(PITCH_RANGES_HZ.items()):
            for i in range(per_class):
                rng = np.random.default_rng(1000 * k + 10 * i + c)
                f0 = rng.uniform(lo, hi)
                y = signals.vowel(f0, formants, duration_s, seed=int(rng.integers(1 << 30)))
                y = y + (0.005 * rng.standard_normal(len(y))).astype(np.float32)
                name = f"{speaker}_{label}_{i}.wav"
                sf.write(root / name, y, 16000, subtype="PCM_16")
                rows.append(f"{name},{speaker},{label}")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture(scope="session")
def synthetic_corpus(tmp_path_factory):
    """Folder with 24 WAV files (2 classes × 4 speakers × 3) and a manifest.csv."""
    return write_pitch_corpus(tmp_path_factory.mktemp("synthetic") / "pitch")


@pytest.fixture(scope="session")
def feature_cache(tmp_path_factory):
    """A session-wide feature cache folder, so tests never write to ~/.cache."""
    return tmp_path_factory.mktemp("ser-cache")


@pytest.fixture(scope="session")
def tiny_model(synthetic_corpus, feature_cache, tmp_path_factory):
    """Path of a TorchScript model (classes high, low) trained 3 epochs on ``synthetic_corpus``."""
    from ser_cli.corpora import read_corpus
    from ser_cli.training import TrainConfig, train

    out = tmp_path_factory.mktemp("tiny-model") / "tiny.pt"
    result = train(
        read_corpus(synthetic_corpus),
        out,
        model_config=tiny_model_config(),
        train_config=TrainConfig(epochs=3, batch_size=8),
        cache_dir=feature_cache,
        device="cpu",
        precision="fp32",
        progress=False,
        command="pytest tiny_model fixture",
    )
    return result.model_path
