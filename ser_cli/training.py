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
4. The model is exported as TorchScript with every configuration inside
   (:func:`ser_cli.model.export_model`) and ``<out>.train.json`` is written beside it.
"""

from __future__ import annotations

import hashlib
import json
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
from ser_cli.errors import ConfigError, SerError
from ser_cli.model import (
    CNN,
    MODEL_FORMAT,
    ModelConfig,
    autocast,
    config_dict,
    export_model,
    resolve_device,
    resolve_precision,
)
from ser_cli.scoring import ScoringConfig

__all__ = [
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
_REFERENCE_EPOCHS = 50


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
        Weight the loss by inverse class frequency of training segments (off: the paper's).

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
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 1e-4
    seed: int = 0
    label_smoothing: float = 0.0
    class_balance: bool = False

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ConfigError(f"{name}={value!r} must be an int")
        if self.epochs < 1:
            raise ConfigError(f"epochs={self.epochs} must be >= 1")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size={self.batch_size} must be >= 1")
        if self.seed < 0:
            raise ConfigError(f"seed={self.seed} must be >= 0")
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


def _lr_for_epoch(config: TrainConfig, epoch: int) -> float:
    """Learning rate of 1-based ``epoch``."""
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
    from ser_cli import audio, features
    from ser_cli.segmentation import cut_segments

    samples = audio.load(path, audio_config.sample_rate, quality=audio_config.resample_quality)
    spec = features.spectrogram(samples)
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
    utterances: Sequence[Utterance],
    hop_frames: int,
    feature_config,
    segment_config,
    cache_dir,
    reporter: "_Reporter",
    what: str,
) -> tuple[list[tuple[Utterance, np.ndarray]], list[dict[str, str]]]:
    """Segments of every utterance; bad files go to the skipped list."""
    done: list[tuple[Utterance, np.ndarray]] = []
    skipped: list[dict[str, str]] = []
    reporter.start_task(f"features ({what})", len(utterances))
    for utt in utterances:
        try:
            segments = extract_segments(utt.path, hop_frames, feature_config, segment_config, cache_dir)
        except SerError as exc:
            skipped.append({"path": utt.path, "reason": str(exc)})
            reporter.message(f"skipped {exc}")
        else:
            done.append((utt, segments))
        reporter.advance()
    reporter.stop_task()
    return done, skipped


# ----------------------------------------------------------------------------------------------
# Progress


class _Reporter:
    """Progress on stderr: a rich bar on a terminal, plain lines otherwise, nothing if off."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.rich = enabled and sys.stderr.isatty()
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
            print(f"{self._label}: {self._count}/{self._total} files", file=sys.stderr, flush=True)

    def message(self, text: str) -> None:
        if not self.enabled:
            return
        if self._progress is not None:
            self._progress.console.print(text, markup=False, highlight=False)
        else:
            print(text, file=sys.stderr, flush=True)

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
                f"epoch {row['epoch']}/{epochs} {info} ({row['seconds']:.1f} s, ETA {eta_s:.0f} s)",
                file=sys.stderr,
                flush=True,
            )


# ----------------------------------------------------------------------------------------------
# Training


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
    command: str | None = None,
    extra_metadata: dict[str, Any] | None = None,
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
    command : str, optional
        Command line recorded in the metadata (default: ``sys.argv``).
    extra_metadata : dict, optional
        Merged into the model metadata (``evaluate`` records its fold here).

    Returns
    -------
    TrainResult

    Raises
    ------
    ConfigError
        Inconsistent configs or device.
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
    torch_device = resolve_device(device)
    precision = resolve_precision(precision, torch_device)
    if threads is not None:
        torch.set_num_threads(int(threads))
    out_path = Path(out_path)
    work = Path(work_dir) if work_dir is not None else out_path.with_name(out_path.name + ".work")
    work.mkdir(parents=True, exist_ok=True)
    reporter = _Reporter(progress)
    if command is None:
        command = shlex.join(sys.argv)

    # 1. features
    items, skipped = _gather(
        utterances, segment_config.train_hop_frames, feature_config, segment_config, cache_dir,
        reporter, "training",
    )
    if not items:
        raise CorpusError(f"none of the {len(utterances)} training files could be read")
    counts = [len(s) for _, s in items]
    n_segments = int(sum(counts))
    data_np = np.concatenate([s for _, s in items]) if len(items) > 1 else items[0][1]
    labels = torch.tensor(
        np.repeat([class_index[u.label] for u, _ in items], counts), dtype=torch.long
    )
    data = torch.from_numpy(np.ascontiguousarray(data_np))
    if torch_device.type == "cuda":
        data = data.to(torch_device)
        labels_dev = labels.to(torch_device)
    else:
        labels_dev = labels
    used = [u for u, _ in items]

    # 2. model, optimiser, resume
    configs = {
        "feature_config": config_dict(feature_config),
        "segment_config": config_dict(segment_config),
        "model_config": config_dict(model_config),
        "train_config": config_dict(train_config),
        "scoring_config": config_dict(scoring_config),
    }
    fingerprint = _fingerprint([configs, classes, [(u.path, u.label) for u in used]])
    torch.manual_seed(train_config.seed)
    model = CNN(model_config).to(torch_device, memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=train_config.lr,
        momentum=train_config.momentum,
        nesterov=train_config.nesterov,
        weight_decay=train_config.weight_decay,
    )
    weight = None
    if train_config.class_balance:
        freq = torch.bincount(labels, minlength=len(classes)).float().clamp(min=1)
        weight = (freq.sum() / (len(classes) * freq)).to(torch_device)
    criterion = nn.CrossEntropyLoss(weight=weight, label_smoothing=train_config.label_smoothing)
    history: list[dict[str, Any]] = []
    start_epoch = 1
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
            torch.set_rng_state(state["torch_rng"].cpu())
            history = list(state["history"])
            start_epoch = int(state["epoch"]) + 1
            reporter.message(f"resuming from {checkpoint_path} after epoch {start_epoch - 1}")
        elif state is not None:
            reporter.message(
                f"{checkpoint_path}: checkpoint of other data or settings; starting over"
            )

    # 3. epochs
    n_batches = (n_segments + train_config.batch_size - 1) // train_config.batch_size
    reporter.start_task("training", train_config.epochs)
    for _ in range(start_epoch - 1):
        reporter.advance()
    for epoch in range(start_epoch, train_config.epochs + 1):
        lr = _lr_for_epoch(train_config, epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        model.train()
        generator = torch.Generator().manual_seed(train_config.seed * 1_000_003 + epoch)
        order = torch.randperm(n_segments, generator=generator)
        t0 = time.perf_counter()
        loss_sum = torch.zeros((), dtype=torch.float64, device=torch_device)
        correct = torch.zeros((), dtype=torch.long, device=torch_device)
        for b in range(n_batches):
            index = order[b * train_config.batch_size : (b + 1) * train_config.batch_size]
            x = _batch(data, index, torch_device)
            y = labels_dev.index_select(0, index.to(labels_dev.device))
            with autocast(torch_device, precision):
                logits = model(x)
            loss = criterion(logits.float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach().double() * len(index)
            correct += (logits.detach().argmax(1) == y).sum()
        seconds = time.perf_counter() - t0
        row = {
            "epoch": epoch,
            "lr": lr,
            "loss": float(loss_sum) / n_segments,
            "accuracy": int(correct) / n_segments,
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
            },
            checkpoint_path,
        )
        eta = seconds * (train_config.epochs - epoch)
        reporter.epoch(row, train_config.epochs, eta)
    reporter.stop_task()

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
    export_model(model, out_path, metadata)
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
