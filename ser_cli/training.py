"""The paper's training recipe (SPEC §4): features, cache, SGD, checkpoints, export.

``train()`` turns a list of labelled utterances into a model file:

1. Each utterance is decoded (:func:`ser_cli.audio.load`), transformed
   (:func:`ser_cli.features.spectrogram`), cut into 2 s segments every ``train_hop_frames`` frames
   (:func:`ser_cli.segmentation.cut_segments`) and normalised per segment
   (:func:`ser_cli.features.normalize`; with ``normalization="utterance"`` the whole
   spectrogram is normalised before it is cut, so segments share their utterance's scale). The result is cached on disk as float16
   ``(n_segments, 400, 200)`` per utterance, keyed by a hash of everything that changes it (file
   path, size, mtime, feature/segment/audio configs, hop, package version), so a second run (or
   the next fold of an evaluation) reads it back instead of recomputing. A file that cannot be
   decoded is reported, skipped and listed in the report; the run carries on.
2. SGD with Nesterov momentum 0.9, weight decay 1e-4, batch 64, 50 epochs, learning rate 0.05
   divided by 10 at epochs 21, 31 and 41, cross-entropy. With another number of epochs the
   milestones keep their fractions of the run (0.4, 0.6, 0.8: epochs 5, 7, 9 of 10).
3. Reproducible and resumable: the weights are initialised after ``torch.manual_seed(seed)``; the
   order of epoch *e* is a permutation drawn from a ``torch.Generator`` seeded with
   ``(seed, e)``; after every epoch a checkpoint (weights, optimizer state, epoch counter, RNG
   state, history) is written atomically to ``work_dir``. An interrupted run continues from the
   last finished epoch and ends with the same weights as an uninterrupted one.
   One process at a time trains into a work folder (``work_dir/.lock``); a second one is refused.
4. The model is exported as TorchScript with every configuration inside
   (:func:`ser_cli.model.export_model`; the network is scripted before the first epoch, so a
   model that cannot be exported fails at once) and ``<out>.train.json`` is written beside it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ser_cli.corpora import Utterance, describe
from ser_cli.errors import BusyError, ConfigError, SerError
from ser_cli.model import (
    CNN,
    MODEL_FORMAT,
    ModelConfig,
    autocast,
    config_dict,
    export_model,
    keep_freed_memory,
    resolve_device,
    resolve_precision,
    script_model,
    unit_fraction,
)
from ser_cli.scoring import ScoringConfig

__all__ = [
    "RECIPES",
    "recipe_configs",
    "TrainConfig",
    "TrainResult",
    "train",
    "extract_segments",
    "predict_logits",
    "default_cache_dir",
    "effective_milestones",
]

_CACHE_VERSION = 1
_CHECKPOINT_NAME = "checkpoint.pt"
_LOCK_NAME = ".lock"
_REFERENCE_EPOCHS = 50


def _hold_work_dir(work: Path):
    """Take ``work/.lock`` (``flock``) and return its open file, or raise :class:`BusyError`.

    Two processes training into one work folder would overwrite each other's checkpoints, e.g. an
    evaluation fold started twice by a job array. The lock lasts until the file is closed or its
    process ends, however it ends, so a killed run never leaves a stale lock behind. Where
    ``fcntl`` does not exist (Windows) nothing is locked and ``None`` is returned.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        return None
    import socket

    handle = open(work / _LOCK_NAME, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown process"
        handle.close()
        raise BusyError(
            f"{work}: another process is training into this folder ({holder}); wait for it to "
            "finish, or run elsewhere (evaluate: other --only-folds or another output folder)"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()} on {socket.gethostname()}, "
                 f"since {datetime.now(timezone.utc).isoformat(timespec='seconds')}\n")
    handle.flush()
    return handle


@dataclass(frozen=True)
class TrainConfig:
    """The training recipe; defaults are the paper's (SPEC §4).

    Parameters
    ----------
    epochs : int
        Passes over the training segments (50).
    batch_size : int
        Segments per SGD step (64).
    lr : float
        Initial learning rate (0.05).
    lr_milestones : tuple of int
        1-based epochs at which the learning rate is multiplied by ``lr_gamma``, stated for a
        50-epoch run (21, 31, 41). For ``epochs != 50`` each is scaled to keep its fraction of
        the run: ``1 + ceil((m - 1) * epochs / 50)`` (10 epochs: 5, 7, 9; 1 epoch: no drop).
    lr_gamma : float
        Factor at each milestone (0.1).
    lr_schedule : {"step", "onecycle"}
        "step": the paper's drops at ``lr_milestones`` (per epoch); "onecycle": linear warm-up
        from 0 to ``lr`` over the first 10 % of the steps, then a cosine down to 0 (per step),
        which reaches a good optimum in far fewer epochs.
    optimizer : {"sgd", "adamw"}
        "sgd": the paper's SGD with (Nesterov) momentum and L2 ``weight_decay``; "adamw": Adam
        with decoupled ``weight_decay`` (``momentum``/``nesterov`` unused).
    momentum : float
        SGD momentum (0.9, Nesterov).
    nesterov : bool
    weight_decay : float
        L2 penalty on every parameter (1e-4).
    seed : int
        Seeds weight initialisation and the per-epoch shuffles.
    label_smoothing : float
        Cross-entropy label smoothing in [0, 1) (0: the paper's plain cross-entropy).
    class_balance : bool
        Weight the loss by inverse class frequency of the training utterances (off: the paper's).
    corpus_balance : bool
        Weight the loss by inverse corpus-family frequency too, so a small corpus trained beside
        a large one counts as much (off).
    class_balance_scope : {"pooled", "corpus"}
        Where ``class_balance`` counts class frequencies: over all training utterances
        (``pooled``, the ``ser`` recipe's), or within each corpus family (``corpus``), so every
        class of every corpus weighs the same within its corpus, which is what that corpus's UA
        rewards (EMO-DB's 71 happy utterances then weigh as much as its 127 angry ones, where
        pooled with RAVDESS's balanced classes they weigh 0.68 of them). Needs ``class_balance``.
    sampling : {"segments", "crops"}
        What one epoch sees of each utterance: every 2 s segment at ``train_hop_frames`` (the
        paper's), or ``crops_per_utterance`` 2 s windows at random frame offsets, drawn afresh
        each epoch (an epoch then costs the same whatever the utterances' lengths).
    crops_per_utterance : int
        Windows per utterance per epoch with ``sampling="crops"`` (1).
    speed_factors : tuple of float
        Speed perturbation (:func:`ser_cli.augment.speed_perturb`): each epoch every utterance is
        played at one factor drawn uniformly from these, e.g. (0.9, 1.0, 1.1); empty: off.
    noise_snr_db : tuple of 2 float
        Additive pink noise (:func:`ser_cli.augment.add_noise`) at an SNR drawn uniformly from
        ``[low, high]`` dB, for a fraction ``noise_prob`` of the utterances each epoch; empty: off.
    noise_prob : float
        Fraction of utterances that get noise when ``noise_snr_db`` is set (0.5).
    vtlp : tuple of 2 float
        Vocal-tract-length perturbation (:func:`ser_cli.augment.vtlp`): each epoch every
        utterance's spectrogram is warped by a factor drawn uniformly from ``[low, high]``, e.g.
        (0.9, 1.1); empty: off.
    tempo_factors : tuple of float
        Tempo perturbation (:func:`ser_cli.augment.tempo_perturb`): each epoch every utterance's
        spectrogram is played at one factor drawn uniformly from these, pitch kept, e.g.
        (0.9, 1.0, 1.1); empty: off.
    freq_masks, time_masks : int
        SpecAugment-style masks per segment (:func:`ser_cli.augment.mask_batch`); 0: off.
    freq_mask_bins, time_mask_frames : int
        Largest mask widths (40 bins = 400 Hz; 30 frames = 0.3 s).
    mixup_alpha : float
        Mixup's Beta(alpha, alpha) parameter (:func:`ser_cli.augment.mixup`); 0: off.
    ema_decay : float
        Exponential moving average of the weights (0: off, the paper's): after every step each
        floating-point parameter and batch-norm statistic ``a`` of the average becomes
        ``d·a + (1 − d)·w`` with ``d = min(ema_decay, (1 + t) / (10 + t))`` at step ``t``, and
        the model file gets the average instead of the last step's weights. 0.995 averages over
        about the last 200 steps: 6 epochs of the ``ser`` recipe on EMO-DB + RAVDESS (32 steps).

    Any of ``sampling="crops"``, ``speed_factors``, ``noise_snr_db``, ``vtlp``, ``tempo_factors``
    makes training decode the waveforms once and compute each epoch's segments afresh (about a
    second per thousand utterances); otherwise the segments come from the feature cache as in the
    paper's recipe.

    Raises
    ------
    ConfigError
        A field out of range; the message names the field.

    Examples
    --------
    >>> TrainConfig(epochs=10).epochs
    10
    """

    epochs: int = 50
    batch_size: int = 64
    lr: float = 0.05
    lr_milestones: tuple[int, ...] = (21, 31, 41)
    lr_gamma: float = 0.1
    lr_schedule: str = "step"
    optimizer: str = "sgd"
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 1e-4
    seed: int = 0
    label_smoothing: float = 0.0
    class_balance: bool = False
    corpus_balance: bool = False
    sampling: str = "segments"
    crops_per_utterance: int = 1
    speed_factors: tuple[float, ...] = ()
    noise_snr_db: tuple[float, ...] = ()
    noise_prob: float = 0.5
    freq_masks: int = 0
    freq_mask_bins: int = 40
    time_masks: int = 0
    time_mask_frames: int = 30
    mixup_alpha: float = 0.0
    vtlp: tuple[float, ...] = field(default=(), metadata={"omit_at_default": True})
    tempo_factors: tuple[float, ...] = field(default=(), metadata={"omit_at_default": True})
    ema_decay: float = field(default=0.0, metadata={"omit_at_default": True})
    class_balance_scope: str = field(default="pooled", metadata={"omit_at_default": True})

    @property
    def waveform_augmented(self) -> bool:
        """True when each epoch's segments are computed afresh from the waveforms."""
        return (self.sampling == "crops" or bool(self.speed_factors) or bool(self.noise_snr_db)
                or bool(self.vtlp) or bool(self.tempo_factors))

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "seed", "crops_per_utterance", "freq_masks",
                     "freq_mask_bins", "time_masks", "time_mask_frames"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ConfigError(f"{name}={value!r} must be an int")
        if self.epochs < 1:
            raise ConfigError(f"epochs={self.epochs} must be >= 1")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size={self.batch_size} must be >= 1")
        if self.seed < 0:
            raise ConfigError(f"seed={self.seed} must be >= 0")
        for name in ("freq_masks", "freq_mask_bins", "time_masks", "time_mask_frames"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}={getattr(self, name)} must be >= 0")
        if self.crops_per_utterance < 1:
            raise ConfigError(f"crops_per_utterance={self.crops_per_utterance} must be >= 1")
        if self.lr_schedule not in ("step", "onecycle"):
            raise ConfigError(f"lr_schedule={self.lr_schedule!r} is not one of step, onecycle")
        if self.optimizer not in ("sgd", "adamw"):
            raise ConfigError(f"optimizer={self.optimizer!r} is not one of sgd, adamw")
        if self.sampling not in ("segments", "crops"):
            raise ConfigError(f"sampling={self.sampling!r} is not one of segments, crops")
        try:
            speeds = tuple(float(f) for f in self.speed_factors)
            snr = tuple(float(v) for v in self.noise_snr_db)
            warp = tuple(float(v) for v in self.vtlp)
            tempos = tuple(float(f) for f in self.tempo_factors)
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"speed_factors={self.speed_factors!r} / noise_snr_db={self.noise_snr_db!r} / "
                f"vtlp={self.vtlp!r} / tempo_factors={self.tempo_factors!r} must be sequences "
                "of numbers"
            ) from exc
        for name, factors in (("speed_factors", speeds), ("tempo_factors", tempos)):
            if any(not (np.isfinite(f) and 0.5 <= f <= 2.0) for f in factors):
                raise ConfigError(f"{name}={factors} must lie in [0.5, 2]")
        if snr and (len(snr) != 2 or not all(np.isfinite(snr)) or snr[0] > snr[1]):
            raise ConfigError(f"noise_snr_db={snr} must be (low, high) dB with low <= high")
        if warp and (len(warp) != 2 or not all(np.isfinite(warp)) or not 0.5 <= warp[0] <= warp[1] <= 1.5):
            raise ConfigError(f"vtlp={warp} must be (low, high) with 0.5 <= low <= high <= 1.5")
        object.__setattr__(self, "speed_factors", speeds)
        object.__setattr__(self, "noise_snr_db", snr)
        object.__setattr__(self, "vtlp", warp)
        object.__setattr__(self, "tempo_factors", tempos)
        if not 0 <= self.noise_prob <= 1:
            raise ConfigError(f"noise_prob={self.noise_prob} must be in [0, 1]")
        if not (self.mixup_alpha >= 0 and np.isfinite(self.mixup_alpha)):
            raise ConfigError(f"mixup_alpha={self.mixup_alpha} must be >= 0")
        if not (self.lr > 0 and np.isfinite(self.lr)):
            raise ConfigError(f"lr={self.lr} must be a positive number")
        try:
            milestones = tuple(int(m) for m in self.lr_milestones)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"lr_milestones={self.lr_milestones!r} must be epoch numbers") from exc
        if any(m < 1 for m in milestones) or list(milestones) != sorted(milestones):
            raise ConfigError(f"lr_milestones={milestones} must be increasing epochs >= 1")
        object.__setattr__(self, "lr_milestones", milestones)
        if not 0 < self.lr_gamma <= 1:
            raise ConfigError(f"lr_gamma={self.lr_gamma} must be in (0, 1]")
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"momentum={self.momentum} must be in [0, 1)")
        if self.nesterov and self.momentum == 0:
            raise ConfigError("nesterov=True needs momentum > 0")
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay={self.weight_decay} must be >= 0")
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"label_smoothing={self.label_smoothing} must be in [0, 1)")
        object.__setattr__(self, "ema_decay", unit_fraction("ema_decay", self.ema_decay))
        if self.class_balance_scope not in ("pooled", "corpus"):
            raise ConfigError(f"class_balance_scope={self.class_balance_scope!r} must be 'pooled' or 'corpus'")
        if self.class_balance_scope == "corpus" and not self.class_balance:
            raise ConfigError("class_balance_scope='corpus' needs class_balance=True")


#: Named recipes: overrides of the TrainConfig, ModelConfig and FeatureConfig defaults. "paper"
#: is the paper's recipe and architecture exactly (SPEC §3-4); "ser" is ser-cli's recipe for
#: small corpora, each of its departures measured in docs/results.md.
RECIPES: dict[str, dict[str, dict[str, Any]]] = {
    "paper": {"train": {}, "model": {}, "feature": {}},
    "ser": {
        "train": {
            "epochs": 48,
            "optimizer": "adamw",
            "lr": 2e-3,
            "weight_decay": 0.05,
            "lr_schedule": "onecycle",
            "sampling": "crops",
            "crops_per_utterance": 2,
            "speed_factors": (0.9, 1.0, 1.1),
            "freq_masks": 2,
            "time_masks": 2,
            "mixup_alpha": 0.2,
            "label_smoothing": 0.1,
            "class_balance": True,
            "corpus_balance": True,
        },
        "model": {"pool_after": (1, 2, 3)},
        "feature": {},
    },
}


def recipe_configs(name: str, **train_overrides: Any) -> tuple["TrainConfig", dict[str, dict[str, Any]]]:
    """The TrainConfig of a named recipe and its ModelConfig and FeatureConfig overrides.

    Parameters
    ----------
    name : {"paper", "ser"}
        See :data:`RECIPES`.
    **train_overrides
        TrainConfig fields that replace the recipe's (``None`` values are ignored).

    Returns
    -------
    train_config : TrainConfig
    overrides : dict
        ``{"model": {...}, "feature": {...}}``: ModelConfig and FeatureConfig fields the recipe
        sets (``pool_after`` for "ser").

    Raises
    ------
    ConfigError
        Unknown recipe or a bad field.

    Examples
    --------
    >>> recipe_configs("paper")[0] == TrainConfig()
    True
    >>> recipe_configs("ser", epochs=5)[0].epochs
    5
    """
    if name not in RECIPES:
        raise ConfigError(f"recipe={name!r} is not one of {', '.join(RECIPES)}")
    values = dict(RECIPES[name]["train"])
    values.update({k: v for k, v in train_overrides.items() if v is not None})
    return TrainConfig(**values), {part: dict(RECIPES[name][part]) for part in ("model", "feature")}


def effective_milestones(config: TrainConfig) -> tuple[int, ...]:
    """1-based epochs at which the learning rate drops, scaled to ``config.epochs``.

    >>> effective_milestones(TrainConfig())
    (21, 31, 41)
    >>> effective_milestones(TrainConfig(epochs=10))
    (5, 7, 9)
    """
    if config.epochs == _REFERENCE_EPOCHS:
        return config.lr_milestones
    # keep each drop's fraction of the run: it comes after ceil(fraction * epochs) epochs
    return tuple(
        1 + -(-(m - 1) * config.epochs // _REFERENCE_EPOCHS) for m in config.lr_milestones
    )


_WARMUP = 0.1


def _lr_for_epoch(config: TrainConfig, epoch: int, fraction: float = 0.0) -> float:
    """Learning rate of 1-based ``epoch``, ``fraction`` (in [0, 1)) of the way through it."""
    if config.lr_schedule == "onecycle":
        t = (epoch - 1 + fraction) / config.epochs
        if t < _WARMUP:
            return config.lr * max(t / _WARMUP, 1e-3)
        return config.lr * 0.5 * (1.0 + math.cos(math.pi * (t - _WARMUP) / (1.0 - _WARMUP)))
    drops = sum(1 for m in effective_milestones(config) if epoch >= m)
    return config.lr * config.lr_gamma**drops


@dataclass
class TrainResult:
    """What :func:`train` produced.

    Attributes
    ----------
    model_path : Path
        The TorchScript model file.
    report_path : Path
        ``<model>.train.json``.
    classes : list of str
    history : list of dict
        Per epoch: ``epoch``, ``lr``, ``loss``, ``accuracy`` (training segments), ``seconds``,
        ``segments_per_s``.
    skipped : list of dict
        Files left out: ``path`` and ``reason``.
    n_utterances, n_segments : int
        Used for training.
    device, precision : str
    metadata : dict
        The JSON stored in the model file.
    """

    model_path: Path
    report_path: Path
    classes: list[str]
    history: list[dict[str, Any]]
    skipped: list[dict[str, str]]
    n_utterances: int
    n_segments: int
    device: str
    precision: str
    metadata: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------
# Features and cache


def default_cache_dir() -> Path:
    """``$SER_CACHE`` if set, else ``~/.cache/ser-cli``."""
    env = os.environ.get("SER_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "ser-cli"


def _audio_config():
    from ser_cli.audio import AudioConfig

    return AudioConfig()


def _cache_key(path: str, hop_frames: int, feature_config, segment_config, audio_config) -> str:
    from ser_cli import __version__

    stat = os.stat(path)
    payload = {
        "v": _CACHE_VERSION,
        "path": os.path.abspath(path),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "hop_frames": int(hop_frames),
        "feature_config": config_dict(feature_config),
        "segment_config": config_dict(segment_config),
        "audio": {"sample_rate": audio_config.sample_rate, "quality": audio_config.resample_quality},
        "package": __version__,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _compute_segments(path: str, hop_frames: int, feature_config, segment_config, audio_config) -> np.ndarray:
    from ser_cli import audio

    samples = audio.load(path, audio_config.sample_rate, quality=audio_config.resample_quality)
    return _segments_of(samples, path, hop_frames, feature_config, segment_config)


def _segments_of(samples: np.ndarray, path: str, hop_frames: int, feature_config, segment_config) -> np.ndarray:
    """Normalised float16 segments of decoded 16 kHz samples, as the cache stores them (errors
    name ``path``)."""
    from ser_cli import features
    from ser_cli.segmentation import cut_segments

    spec = features.spectrogram(samples, fmax=feature_config.fmax)
    if spec.shape[1] == 0:
        raise SerError(
            f"{path}: too short for one frame ({len(samples)} samples, need at least 640)"
        )
    if feature_config.normalization == "utterance":
        # one scale per utterance (per 60 s block beyond 90 s): normalise, then cut
        spec = features.normalize(spec, "utterance", mu=feature_config.mu)
    segments, _ = cut_segments(spec, hop_frames, segment_config)
    if len(segments) == 0:
        raise SerError(f"{path}: no segment could be cut ({spec.shape[1]} frames)")
    if feature_config.normalization == "utterance":
        return np.asarray(segments, dtype=np.float16)
    normalized = features.normalize(segments, feature_config.normalization, mu=feature_config.mu)
    return np.asarray(normalized, dtype=np.float16)


def extract_segments(
    path: str,
    hop_frames: int,
    feature_config,
    segment_config,
    cache_dir: str | os.PathLike | None = None,
    audio_config=None,
) -> np.ndarray:
    """Normalised segments of one file, from the disk cache when present.

    Parameters
    ----------
    path : str
        Audio file.
    hop_frames : int
        Frames between segment starts (``train_hop_frames`` or ``score_hop_frames``).
    feature_config : ser_cli.features.FeatureConfig
    segment_config : ser_cli.segmentation.SegmentConfig
    cache_dir : path-like, optional
        Cache root (default :func:`default_cache_dir`); ``False``-y string ``""`` disables it.
    audio_config : ser_cli.audio.AudioConfig, optional

    Returns
    -------
    np.ndarray, shape (n_segments, 400, segment_frames), float16
        Values in the normalisation's range ([0, 1] for "max", [-1, 1] for "minmax").

    Raises
    ------
    SerError
        The file cannot be decoded (``AudioError``) or gives no frame; the message names it.
    """
    audio_config = audio_config or _audio_config()
    try:
        key = _cache_key(path, hop_frames, feature_config, segment_config, audio_config)
    except OSError as exc:
        from ser_cli.errors import AudioError

        raise AudioError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    cache_root = default_cache_dir() if cache_dir is None else (Path(cache_dir) if cache_dir != "" else None)
    target = cache_root / "segments" / key[:2] / f"{key}.npy" if cache_root else None
    if target is not None and target.is_file():
        try:
            return np.load(target, allow_pickle=False)
        except (OSError, ValueError):
            pass  # a damaged cache entry is recomputed and overwritten
    segments = _compute_segments(path, hop_frames, feature_config, segment_config, audio_config)
    if target is not None:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as handle:
            np.save(handle, segments, allow_pickle=False)
        os.replace(tmp, target)
    return segments


def _gather(
    utterances: Sequence[Utterance], read, reporter: "_Reporter", label: str
) -> tuple[list[tuple[Utterance, np.ndarray]], list[dict[str, str]]]:
    """``read(path)`` of every utterance; a file it rejects (SerError) goes to the skipped list."""
    done: list[tuple[Utterance, np.ndarray]] = []
    skipped: list[dict[str, str]] = []
    reporter.start_task(label, len(utterances))
    for utt in utterances:
        try:
            array = read(utt.path)
        except SerError as exc:
            skipped.append({"path": utt.path, "reason": str(exc)})
            reporter.message(f"skipped {exc}")
        else:
            done.append((utt, array))
        reporter.advance()
    reporter.stop_task()
    return done, skipped


def _load_waveform(path: str) -> np.ndarray:
    """The decoded 16 kHz waveform of one file (augmented training)."""
    from ser_cli import audio

    audio_config = _audio_config()
    samples = audio.load(path, audio_config.sample_rate, quality=audio_config.resample_quality)
    if len(samples) < 640:
        raise SerError(f"{path}: too short for one frame ({len(samples)} samples, need at least 640)")
    return samples


def _epoch_segments(
    waves: Sequence[np.ndarray], epoch: int, config: "TrainConfig", feature_config, segment_config
) -> tuple[np.ndarray, np.ndarray]:
    """One epoch's training segments, computed afresh from the waveforms.

    Each utterance is speed-perturbed and noised (as ``config`` says, with a generator seeded by
    ``(seed, epoch)``), transformed, warped (VTLP), stretched in time (tempo), normalised as scoring does (D1), and cut:
    every segment at ``train_hop_frames`` or ``crops_per_utterance`` windows at random offsets. An utterance
    shorter than one window gives its padded segment (D5).

    Returns
    -------
    segments : np.ndarray, shape (M, 400, segment_frames), float16
    owner : np.ndarray, shape (M,), int64
        Index into ``waves`` of each segment.
    """
    from ser_cli import features
    from ser_cli.augment import add_noise, speed_perturb, tempo_perturb, vtlp
    from ser_cli.segmentation import cut_segments

    rng = np.random.default_rng([config.seed, epoch, 1])
    length = segment_config.segment_frames
    per_segment = feature_config.normalization != "utterance"
    chunks: list[np.ndarray] = []
    owners: list[np.ndarray] = []
    for i, samples in enumerate(waves):
        if config.speed_factors:
            samples = speed_perturb(samples, float(rng.choice(config.speed_factors)))
        if config.noise_snr_db and rng.random() < config.noise_prob:
            samples = add_noise(samples, float(rng.uniform(*config.noise_snr_db)), rng)
        if len(samples) < 640:  # a sped-up very short file: keep one frame
            samples = np.pad(samples, (0, 640 - len(samples)))
        spec = features.spectrogram(samples, fmax=feature_config.fmax)
        if config.vtlp:
            spec = vtlp(spec, float(rng.uniform(*config.vtlp)))
        if config.tempo_factors:
            spec = tempo_perturb(spec, float(rng.choice(config.tempo_factors)))
        if not per_segment:
            spec = features.normalize(spec, "utterance", mu=feature_config.mu)
        if config.sampling == "crops" and spec.shape[1] > length:
            starts = rng.integers(0, spec.shape[1] - length + 1, size=config.crops_per_utterance)
            segments = np.stack([spec[:, s : s + length] for s in starts])
        else:
            segments, _ = cut_segments(spec, segment_config.train_hop_frames, segment_config)
            if config.sampling == "crops":  # shorter than one window: its padded segment
                segments = np.repeat(segments[:1], config.crops_per_utterance, axis=0)
        if per_segment:
            segments = features.normalize(segments, feature_config.normalization, mu=feature_config.mu)
        chunks.append(segments.astype(np.float16))
        owners.append(np.full(len(segments), i, dtype=np.int64))
    return np.concatenate(chunks), np.concatenate(owners)


def _utterance_weights(
    utterances: Sequence[Utterance], classes: np.ndarray, n_classes: int, config: "TrainConfig"
) -> np.ndarray | None:
    """Loss weight of each utterance's segments: inverse class and/or corpus frequency, or None.

    Frequencies count utterances; class frequencies are counted over all of them or within each
    corpus family (``config.class_balance_scope``); weights are scaled to mean 1.
    """
    if not (config.class_balance or config.corpus_balance):
        return None
    names = [u.family or u.corpus for u in utterances]
    unique, corpus, corpus_freq = np.unique(names, return_inverse=True, return_counts=True)
    weight = np.ones(len(utterances), dtype=np.float64)
    if config.class_balance:
        groups = corpus if config.class_balance_scope == "corpus" else np.zeros_like(corpus)
        for g in np.unique(groups):
            member = groups == g
            freq = np.bincount(classes[member], minlength=n_classes).astype(np.float64)
            weight[member] *= member.sum() / (np.count_nonzero(freq) * freq[classes[member]])
    if config.corpus_balance:
        weight *= len(names) / (len(unique) * corpus_freq[corpus])
    return weight / weight.mean()


class _EpochData:
    """An epoch's segments with their labels and loss weights, as tensors."""

    def __init__(self, segments: np.ndarray, owner: np.ndarray, utt_class: np.ndarray,
                 utt_weight: np.ndarray | None, device: torch.device):
        self.n = int(len(segments))
        self.data = torch.from_numpy(np.ascontiguousarray(segments))
        self.labels = torch.from_numpy(utt_class[owner])
        self.weights = (
            torch.from_numpy(utt_weight[owner].astype(np.float32)) if utt_weight is not None else None
        )
        if device.type == "cuda":
            self.data = self.data.to(device)
            self.labels = self.labels.to(device)
            self.weights = self.weights.to(device) if self.weights is not None else None


def _augment_batch(x: torch.Tensor, y: torch.Tensor, weights: torch.Tensor | None,
                   index: torch.Tensor, config: "TrainConfig", rng: np.random.Generator):
    """Masks and mixup on one batch; returns it and the function from logits to its loss.

    Without weights or mixup the loss is plain (label-smoothed) cross-entropy, the paper's;
    otherwise per-segment cross-entropy, mixed as mixup says, averaged with the weights.
    """
    from torch.nn import functional as F

    from ser_cli.augment import mask_batch, mixup

    if config.freq_masks or config.time_masks:
        x = mask_batch(
            x, rng, freq_masks=config.freq_masks, freq_mask_bins=config.freq_mask_bins,
            time_masks=config.time_masks, time_mask_frames=config.time_mask_frames,
        ).contiguous(memory_format=torch.channels_last)
    smoothing = config.label_smoothing
    w = weights.index_select(0, index.to(weights.device)) if weights is not None else None
    if config.mixup_alpha > 0:
        x, perm, lam = mixup(x, config.mixup_alpha, rng)
        x = x.contiguous(memory_format=torch.channels_last)
        y2 = y.index_select(0, perm.to(y.device))
        w = w if w is None else lam * w + (1 - lam) * w.index_select(0, perm.to(w.device))

        def loss_of(logits):
            per = lam * F.cross_entropy(logits, y, reduction="none", label_smoothing=smoothing) + (
                1 - lam
            ) * F.cross_entropy(logits, y2, reduction="none", label_smoothing=smoothing)
            return per.mean() if w is None else (per * w).sum() / w.sum()

        return x, loss_of
    if w is None:
        return x, lambda logits: F.cross_entropy(logits, y, label_smoothing=smoothing)
    return x, lambda logits: (
        F.cross_entropy(logits, y, reduction="none", label_smoothing=smoothing) * w
    ).sum() / w.sum()


# ----------------------------------------------------------------------------------------------
# Progress


class _Reporter:
    """Progress on stderr: a rich bar on a terminal, plain lines otherwise, nothing if off.

    With a ``prefix`` (one of several processes sharing the terminal) lines are always plain and
    start with it.
    """

    def __init__(self, enabled: bool, prefix: str | None = None):
        self.enabled = enabled
        self.prefix = prefix or ""
        self.rich = enabled and prefix is None and sys.stderr.isatty()
        self._progress = None
        self._task = None
        self._label = ""
        self._total = 0
        self._count = 0
        if self.rich:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=False,
            )

    def start_task(self, label: str, total: int) -> None:
        self._label, self._total, self._count = label, total, 0
        if self._progress is not None:
            self._progress.start()
            self._task = self._progress.add_task(label, total=total, info="")

    def advance(self, info: str = "") -> None:
        self._count += 1
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, advance=1, info=info)

    def stop_task(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._task = None
        elif self.enabled and self._total and self._label.startswith("features"):
            print(f"{self.prefix}{self._label}: {self._count}/{self._total} files", file=sys.stderr,
                  flush=True)

    def message(self, text: str) -> None:
        if not self.enabled:
            return
        if self._progress is not None:
            self._progress.console.print(text, markup=False, highlight=False)
        else:
            print(f"{self.prefix}{text}", file=sys.stderr, flush=True)

    def epoch(self, row: dict[str, Any], epochs: int, eta_s: float) -> None:
        info = (
            f"loss {row['loss']:.4f} acc {row['accuracy']:.3f} "
            f"{row['segments_per_s']:.1f} seg/s lr {row['lr']:.3g}"
        )
        self._count += 1
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, advance=1, info=info)
        elif self.enabled:
            print(
                f"{self.prefix}epoch {row['epoch']}/{epochs} {info} ({row['seconds']:.1f} s, "
                f"ETA {eta_s:.0f} s)",
                file=sys.stderr,
                flush=True,
            )


# ----------------------------------------------------------------------------------------------
# Training


class _WeightAverage:
    """The exponential moving average of a model's state (``TrainConfig.ema_decay``).

    Floating-point entries (parameters, batch-norm means and variances) are averaged; the others
    (batch-norm step counts) follow the model. ``state`` is a state dict of the model's keys.
    """

    def __init__(self, model: nn.Module, decay: float, state: dict[str, torch.Tensor] | None = None,
                 steps: int = 0):
        self.decay = decay
        self.steps = steps
        self.state = {k: v.detach().clone() for k, v in (state or model.state_dict()).items()}

    def update(self, model: nn.Module) -> None:
        self.steps += 1
        d = min(self.decay, (1 + self.steps) / (10 + self.steps))
        with torch.no_grad():
            for key, value in model.state_dict().items():
                average = self.state[key]
                if average.is_floating_point():
                    average.lerp_(value.detach(), 1 - d)
                else:
                    average.copy_(value)


def _training_identity(configs: dict[str, dict], train_config: "TrainConfig") -> dict[str, dict]:
    """The configs with the settings that cannot change training set to their defaults.

    A checkpoint is resumed when this identity matches, so a finished run rescored with another
    D4 average, scoring hop or (for crop sampling, which never cuts a tail) D5 tail policy reuses
    its trained weights. Runs at the defaults keep the fingerprint they always had.
    """
    from ser_cli.segmentation import SegmentConfig

    default_segments = config_dict(SegmentConfig())
    scoring_only = ["score_hop_frames"] + (["tail"] if train_config.sampling == "crops" else [])
    segments = dict(configs["segment_config"])
    for name in scoring_only:
        segments[name] = default_segments[name]
    return {**configs, "segment_config": segments, "scoring_config": config_dict(ScoringConfig())}


def _fingerprint(items: Sequence[Any]) -> str:
    return hashlib.sha256(json.dumps(items, sort_keys=True, default=str).encode()).hexdigest()


def _atomic_torch_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _batch(data: torch.Tensor, index: torch.Tensor, device: torch.device) -> torch.Tensor:
    x = data.index_select(0, index.to(data.device)).to(device, non_blocking=True).float()
    return x.unsqueeze(1).contiguous(memory_format=torch.channels_last)


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    segments: np.ndarray | torch.Tensor,
    device: torch.device,
    precision: str = "fp32",
    batch_size: int = 64,
) -> np.ndarray:
    """Logits of a stack of normalised segments with an eval-mode model.

    Parameters
    ----------
    model : CNN or ScriptModule
        Already on ``device`` and in eval mode.
    segments : array, shape (n, 400, 200), float16 or float32
    device : torch.device
    precision : {"fp32", "bf16"}
    batch_size : int

    Returns
    -------
    np.ndarray, shape (n, K), float32
    """
    data = torch.as_tensor(np.asarray(segments)) if not isinstance(segments, torch.Tensor) else segments
    out = []
    for start in range(0, data.shape[0], batch_size):
        index = torch.arange(start, min(start + batch_size, data.shape[0]))
        with autocast(device, precision):
            logits = model(_batch(data, index, device))
        out.append(logits.float().cpu())
    if not out:
        return np.zeros((0, 0), dtype=np.float32)
    return torch.cat(out).numpy()


def train(
    utterances: Sequence[Utterance],
    out_path: str | os.PathLike,
    *,
    classes: Sequence[str] | None = None,
    feature_config=None,
    segment_config=None,
    model_config: ModelConfig | None = None,
    train_config: TrainConfig | None = None,
    scoring_config: ScoringConfig | None = None,
    work_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    device: str | torch.device = "auto",
    precision: str = "auto",
    threads: int | None = None,
    progress: bool = True,
    progress_prefix: str | None = None,
    command: str | None = None,
    extra_metadata: dict[str, Any] | None = None,
    resume_only: bool = False,
) -> TrainResult:
    """Train CNN_TF on labelled utterances and write a model file.

    Parameters
    ----------
    utterances : sequence of Utterance
        Training data (see :func:`ser_cli.corpora.read_corpus`, :func:`~ser_cli.corpora.select_classes`).
    out_path : path-like
        Model file to write (TorchScript with embedded configs); ``<out>.train.json`` goes beside it.
    classes : sequence of str, optional
        Output classes in order; default: the sorted labels of ``utterances``. Utterances with
        another label are an error. ``model_config.n_classes`` is set from it.
    feature_config, segment_config, model_config, train_config, scoring_config
        Stage configs; ``None`` means the defaults (the paper's values).
    work_dir : path-like, optional
        Checkpoints (default ``<out>.work``). A checkpoint of the same data and configs is resumed.
    cache_dir : path-like, optional
        Feature cache root (default ``$SER_CACHE`` or ``~/.cache/ser-cli``).
    device : str
        ``auto``, ``cpu``, ``cuda``, ``cuda:N``.
    precision : {"auto", "fp32", "bf16"}
        See :func:`ser_cli.model.resolve_precision`.
    threads : int, optional
        ``torch.set_num_threads`` for the run (default: torch's, one per core).
    progress : bool
        Progress on stderr.
    progress_prefix : str, optional
        Plain progress lines starting with this (parallel folds of :func:`ser_cli.evaluate`).
    command : str, optional
        Command line recorded in the metadata (default: ``sys.argv``).
    extra_metadata : dict, optional
        Merged into the model metadata (``evaluate`` records its fold here).
    resume_only : bool
        Refuse to start training from scratch: the work folder must hold a checkpoint of the
        same data and training settings (``evaluate(reuse_models=...)``).

    Returns
    -------
    TrainResult

    Raises
    ------
    ConfigError
        Inconsistent configs or device; with ``resume_only``, no matching checkpoint.
    CorpusError
        No usable utterance, or a label outside ``classes``.

    Examples
    --------
    >>> from ser_cli.corpora import read_corpus, select_classes
    >>> utts, classes = select_classes(read_corpus("data/emodb"), ["neutral", "happy", "angry", "sad"])  # doctest: +SKIP
    >>> train(utts, "emodb.pt", classes=classes, train_config=TrainConfig(epochs=10))  # doctest: +SKIP
    """
    from ser_cli import __version__
    from ser_cli.errors import CorpusError
    from ser_cli.features import FeatureConfig
    from ser_cli.segmentation import SegmentConfig

    started = time.time()
    feature_config = feature_config or FeatureConfig()
    segment_config = segment_config or SegmentConfig()
    train_config = train_config or TrainConfig()
    scoring_config = scoring_config or ScoringConfig()
    utterances = list(utterances)
    if not utterances:
        raise CorpusError("no training utterances")
    classes = list(classes) if classes is not None else sorted({u.label for u in utterances})
    if len(classes) < 2:
        raise CorpusError(f"training needs at least 2 classes, found {classes}")
    class_index = {c: i for i, c in enumerate(classes)}
    for utt in utterances:
        if utt.label not in class_index:
            raise CorpusError(f"{utt.path}: label {utt.label!r} is not one of the classes {classes}")
    model_config = replace(model_config or ModelConfig(), n_classes=len(classes))
    keep_freed_memory()
    torch_device = resolve_device(device)
    precision = resolve_precision(precision, torch_device)
    if threads is not None:
        torch.set_num_threads(int(threads))
    out_path = Path(out_path)
    work = Path(work_dir) if work_dir is not None else out_path.with_name(out_path.name + ".work")
    work.mkdir(parents=True, exist_ok=True)
    lock = _hold_work_dir(work)
    try:
        reporter = _Reporter(progress, progress_prefix)
        if command is None:
            command = shlex.join(sys.argv)

        # 1. features: cached segments (the paper's recipe), or waveforms re-segmented every epoch
        if train_config.waveform_augmented:
            items, skipped = _gather(utterances, _load_waveform, reporter, "features (decoding for augmentation)")
        else:
            hop = segment_config.train_hop_frames
            items, skipped = _gather(
                utterances, lambda path: extract_segments(path, hop, feature_config, segment_config, cache_dir),
                reporter, "features (training)",
            )
        if not items:
            raise CorpusError(f"none of the {len(utterances)} training files could be read")
        used = [u for u, _ in items]
        utt_class = np.array([class_index[u.label] for u in used], dtype=np.int64)
        utt_weight = _utterance_weights(used, utt_class, len(classes), train_config)
        fixed = None
        if not train_config.waveform_augmented:
            counts = [len(s) for _, s in items]
            data_np = np.concatenate([s for _, s in items]) if len(items) > 1 else items[0][1]
            fixed = _EpochData(data_np, np.repeat(np.arange(len(items)), counts), utt_class, utt_weight,
                               torch_device)

        def epoch_data(epoch: int) -> _EpochData:
            if fixed is not None:
                return fixed
            segments, owner = _epoch_segments(
                [w for _, w in items], epoch, train_config, feature_config, segment_config
            )
            return _EpochData(segments, owner, utt_class, utt_weight, torch_device)

        # 2. model, optimiser, resume
        configs = {
            "feature_config": config_dict(feature_config),
            "segment_config": config_dict(segment_config),
            "model_config": config_dict(model_config),
            "train_config": config_dict(train_config),
            "scoring_config": config_dict(scoring_config),
        }
        fingerprint = _fingerprint(
            [_training_identity(configs, train_config), classes,
             [(u.path, u.label, u.family or u.corpus) for u in used]]
        )
        torch.manual_seed(train_config.seed)
        model = CNN(model_config).to(torch_device, memory_format=torch.channels_last)
        # scripted now: fails before the first epoch if it cannot be exported, and the export at the
        # end copies the trained weights into it without reading the (possibly changed) source again
        scripted = script_model(model)
        if train_config.optimizer == "adamw":
            optimizer = torch.optim.AdamW(
                model.parameters(), lr=train_config.lr, weight_decay=train_config.weight_decay
            )
        else:
            optimizer = torch.optim.SGD(
                model.parameters(),
                lr=train_config.lr,
                momentum=train_config.momentum,
                nesterov=train_config.nesterov,
                weight_decay=train_config.weight_decay,
            )
        history: list[dict[str, Any]] = []
        start_epoch = 1
        average = _WeightAverage(model, train_config.ema_decay) if train_config.ema_decay else None
        checkpoint_path = work / _CHECKPOINT_NAME
        if checkpoint_path.is_file():
            try:
                state = torch.load(checkpoint_path, map_location=torch_device, weights_only=True)
            except Exception as exc:  # noqa: BLE001 - an unreadable checkpoint is restarted
                reporter.message(f"{checkpoint_path}: unreadable checkpoint ({exc}); starting over")
                state = None
            if state is not None and state.get("fingerprint") == fingerprint:
                model.load_state_dict(state["model"])
                optimizer.load_state_dict(state["optimizer"])
                if average is not None:
                    average = _WeightAverage(model, train_config.ema_decay, state["ema"], int(state["ema_steps"]))
                torch.set_rng_state(state["torch_rng"].cpu())
                history = list(state["history"])
                start_epoch = int(state["epoch"]) + 1
                reporter.message(f"resuming from {checkpoint_path} after epoch {start_epoch - 1}")
            elif state is not None and not resume_only:
                reporter.message(
                    f"{checkpoint_path}: checkpoint of other data or settings; starting over"
                )
        if resume_only and not history:
            raise ConfigError(
                f"{checkpoint_path}: no checkpoint of these data and training settings to reuse "
                "(only the D4 average, the scoring hop and, for crop recipes, the D5 tail may differ)"
            )

        # 3. epochs
        reporter.start_task("training", train_config.epochs)
        for _ in range(start_epoch - 1):
            reporter.advance()
        n_segments = fixed.n if fixed is not None else 0
        for epoch in range(start_epoch, train_config.epochs + 1):
            lr = _lr_for_epoch(train_config, epoch)
            for group in optimizer.param_groups:
                group["lr"] = lr
            model.train()
            t0 = time.perf_counter()
            batches = epoch_data(epoch)
            n_segments = batches.n
            n_batches = (n_segments + train_config.batch_size - 1) // train_config.batch_size
            generator = torch.Generator().manual_seed(train_config.seed * 1_000_003 + epoch)
            order = torch.randperm(n_segments, generator=generator)
            batch_rng = np.random.default_rng([train_config.seed, epoch, 2])
            loss_sum = torch.zeros((), dtype=torch.float64, device=torch_device)
            correct = torch.zeros((), dtype=torch.long, device=torch_device)
            for b in range(n_batches):
                if train_config.lr_schedule != "step":
                    lr = _lr_for_epoch(train_config, epoch, b / n_batches)
                    for group in optimizer.param_groups:
                        group["lr"] = lr
                index = order[b * train_config.batch_size : (b + 1) * train_config.batch_size]
                x = _batch(batches.data, index, torch_device)
                y = batches.labels.index_select(0, index.to(batches.labels.device))
                x, loss_of = _augment_batch(x, y, batches.weights, index, train_config, batch_rng)
                with autocast(torch_device, precision):
                    logits = model(x)
                loss = loss_of(logits.float())
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if average is not None:
                    average.update(model)
                loss_sum += loss.detach().double() * len(index)
                correct += (logits.detach().argmax(1) == y).sum()
            seconds = time.perf_counter() - t0
            row = {
                "epoch": epoch,
                "lr": lr,
                "loss": float(loss_sum) / n_segments,
                "accuracy": int(correct) / n_segments,
                "segments": n_segments,
                "seconds": round(seconds, 3),
                "segments_per_s": round(n_segments / max(seconds, 1e-9), 2),
            }
            if not np.isfinite(row["loss"]):
                raise ConfigError(
                    f"training diverged at epoch {epoch} (loss {row['loss']}); lower --lr (now {train_config.lr})"
                )
            history.append(row)
            _atomic_torch_save(
                {
                    "fingerprint": fingerprint,
                    "epoch": epoch,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": {"epoch": epoch, "lr": lr},
                    "torch_rng": torch.get_rng_state(),
                    "history": history,
                    **({"ema": average.state, "ema_steps": average.steps} if average is not None else {}),
                },
                checkpoint_path,
            )
            eta = seconds * (train_config.epochs - epoch)
            reporter.epoch(row, train_config.epochs, eta)
        reporter.stop_task()
        if history:
            n_segments = int(history[-1].get("segments", n_segments))

        # 4. export
        model.eval()
        from ser_cli.audio import AudioConfig

        metadata: dict[str, Any] = {
            "format": MODEL_FORMAT,
            "classes": classes,
            **configs,
            "audio_config": config_dict(AudioConfig()),
            "package_version": __version__,
            "torch_version": torch.__version__,
            "command": command,
            "data": describe(used),
            "skipped": skipped,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "training": {
                "epochs": len(history),
                "n_segments": n_segments,
                "final_loss": history[-1]["loss"] if history else None,
                "final_accuracy": history[-1]["accuracy"] if history else None,
                "device": str(torch_device),
                "precision": precision,
                "lr_milestones": list(effective_milestones(train_config)),
            },
        }
        if extra_metadata:
            metadata.update(extra_metadata)
        # copy_ into the scripted module's own (CPU, fp32, contiguous) tensors
        weights = average.state if average is not None else model.state_dict()
        scripted.load_state_dict({name: value.detach().cpu() for name, value in weights.items()})
        export_model(scripted.eval(), out_path, metadata)
        report_path = out_path.with_name(out_path.name + ".train.json")
        report = {
            **{k: metadata[k] for k in ("classes", "command", "data", "skipped", "created", "package_version", "torch_version")},
            "configs": configs,
            "history": history,
            "n_utterances": len(used),
            "n_segments": n_segments,
            "device": str(torch_device),
            "precision": precision,
            "threads": torch.get_num_threads(),
            "seconds_total": round(time.time() - started, 3),
            "model": str(out_path),
        }
        tmp = report_path.with_name(report_path.name + ".tmp")
        tmp.write_text(json.dumps(report, indent=2) + "\n")
        os.replace(tmp, report_path)
        return TrainResult(
            model_path=out_path,
            report_path=report_path,
            classes=classes,
            history=history,
            skipped=skipped,
            n_utterances=len(used),
            n_segments=n_segments,
            device=str(torch_device),
            precision=precision,
            metadata=metadata,
        )
    finally:
        if lock is not None:
            lock.close()
