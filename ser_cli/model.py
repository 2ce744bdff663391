"""The CNN_TF network of Li et al. (2018), its three heads, and the model file format.

The network maps a batch of normalised spectrogram segments ``(N, 1, 400, 200)`` (frequency ×
time) to class logits ``(N, K)``. It is split into a trunk (Conv1 … Conv5) and a head so that a
caller can run the trunk once over a long utterance and apply the head to windows of the trunk
map: ``model.head(model.trunk(x))`` equals ``model(x)``, and both work under TorchScript.

Model files are TorchScript archives (``torch.jit.save``) that carry a ``ser_cli.json`` extra file
with the class names and every configuration (decision records D2 and D3 in docs/decisions.md).
Loading never unpickles Python objects: only ``torch.jit.load`` reads the archive.

TorchScript is deprecated from torch 2.13 on; the file format stays TorchScript for now because
it loads without the Python class. :func:`export_program` shows that the ``torch.export`` path
(``torch.export.export`` on the eager model) already works, for the day the format moves.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
import zipfile
import zlib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ser_cli.errors import ConfigError, ModelFileError

__all__ = [
    "MODEL_FORMAT",
    "ModelConfig",
    "CNN",
    "Ensemble",
    "ensemble_models",
    "script_model",
    "export_model",
    "export_program",
    "update_metadata",
    "load_model",
    "LoadedModel",
    "resolve_device",
    "resolve_precision",
    "cpu_has_native_bf16",
    "keep_freed_memory",
]

MODEL_FORMAT = "ser-cli-model/1"
_METADATA_NAME = "ser_cli.json"

_HEADS = ("attention", "gap", "bilinear")
_REDUCE = ("sum", "mean")

# torch 2.13 deprecates TorchScript: each jit call warns. We keep the format (see module
# docstring) and silence exactly these warnings where ser-cli calls jit itself.
_JIT_WARNING_CATEGORIES = (DeprecationWarning, FutureWarning)
_JIT_WARNING_MESSAGE = r"`torch\.jit\.\w+` is deprecated"


class _quiet_jit(warnings.catch_warnings):
    """Context manager: ignore torch's TorchScript deprecation warnings, nothing else."""

    def __enter__(self):
        result = super().__enter__()
        for category in _JIT_WARNING_CATEGORIES:
            warnings.filterwarnings("ignore", message=_JIT_WARNING_MESSAGE, category=category)
        return result


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of CNN_TF (SPEC §3; decisions D2 and D3).

    Parameters
    ----------
    n_classes : int
        K, the number of output classes (taken from the data), >= 2.
    head : {"attention", "gap", "bilinear"}
        Class-score function on the Conv5 map: attention pooling (the paper's method), global
        average pooling + linear, or bilinear pooling (``XᵀX``, signed sqrt, l2) + linear.
    widths : tuple of 4 int, or ()
        Output channels of Conv2 … Conv5 (D2 default 32, 48, 64, 80). ``()`` leaves Conv1
        alone before the head: the network of the paper's filter-shape study (Fig. 2, with one
        Conv1 group of 16 filters and ``head="gap"``).
    pool_after : tuple of int
        Indices 1 … 5 of the convolutions followed by a 2 × 2 max-pool (D2 default (2, 3):
        400 × 200 input → 99 × 49 trunk map; (1, 2, 3) is about 3× faster, 49 × 24).
    conv1_shapes : tuple of (int, int)
        (frequency, time) kernel of each parallel Conv1 group; default ((10, 2), (2, 8)).
    conv1_channels : tuple of int
        Filters in each Conv1 group; default (8, 8), concatenated to 16 channels.
    attention_reduce : {"sum", "mean"}
        D3: attention scores are the sum or the mean over positions of top-down × bottom-up.
    gap_batchnorm : bool
        ``head="gap"`` only: batch-normalise the C pooled features before the linear layer. It
        changes the conditioning, not the function class: in eval mode it is a per-channel affine
        map the linear layer could absorb. Fig. 2's network needs it to train: averaged over
        the whole unpooled Conv1 map, its 16 features vary between segments by a tenth of their
        mean, too little for a linear layer to learn from in the recipe's steps (docs/results.md).
    dropout : float
        Training only: the probability of zeroing each value of the trunk's output map before the
        head (``nn.Dropout``; 0, the default and the paper's, leaves it out). Scoring is unchanged
        (eval mode), so it costs nothing there. Screened as a regulariser for the small corpora
        (docs/results.md, "The levers one at a time").

    Raises
    ------
    ConfigError
        A field out of range; the message names the field.

    Examples
    --------
    >>> ModelConfig(n_classes=4, pool_after=(1, 2, 3)).widths
    (32, 48, 64, 80)
    """

    n_classes: int = 4
    head: str = "attention"
    widths: tuple[int, ...] = (32, 48, 64, 80)
    pool_after: tuple[int, ...] = (2, 3)
    conv1_shapes: tuple[tuple[int, int], ...] = ((10, 2), (2, 8))
    conv1_channels: tuple[int, ...] = (8, 8)
    attention_reduce: str = "sum"
    gap_batchnorm: bool = field(default=False, metadata={"omit_at_default": True})
    dropout: float = field(default=0.0, metadata={"omit_at_default": True})

    def __post_init__(self) -> None:
        # JSON round trips turn tuples into lists: normalise so equality and hashing work.
        object.__setattr__(self, "widths", _int_tuple("widths", self.widths))
        object.__setattr__(self, "pool_after", _int_tuple("pool_after", self.pool_after))
        object.__setattr__(self, "conv1_channels", _int_tuple("conv1_channels", self.conv1_channels))
        try:
            shapes = tuple((int(h), int(w)) for h, w in self.conv1_shapes)
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"conv1_shapes={self.conv1_shapes!r} is not a sequence of (height, width) pairs"
            ) from exc
        object.__setattr__(self, "conv1_shapes", shapes)
        if not isinstance(self.n_classes, int) or isinstance(self.n_classes, bool) or self.n_classes < 2:
            raise ConfigError(f"n_classes={self.n_classes!r} must be an int >= 2")
        if self.head not in _HEADS:
            raise ConfigError(f"head={self.head!r} is not one of {', '.join(_HEADS)}")
        if len(self.widths) not in (0, 4) or min(self.widths, default=1) < 1:
            raise ConfigError(
                f"widths={self.widths!r} must be 4 positive channel counts (Conv2-Conv5), or () "
                "for Conv1 alone"
            )
        if len(set(self.pool_after)) != len(self.pool_after) or any(
            not 1 <= i <= 1 + len(self.widths) for i in self.pool_after
        ):
            raise ConfigError(
                f"pool_after={self.pool_after!r} must be distinct conv indices in 1..{1 + len(self.widths)}"
            )
        if not shapes or any(h < 1 or w < 1 for h, w in shapes):
            raise ConfigError(f"conv1_shapes={self.conv1_shapes!r} must be positive (height, width) pairs")
        if len(self.conv1_channels) != len(shapes) or min(self.conv1_channels) < 1:
            raise ConfigError(
                f"conv1_channels={self.conv1_channels!r} must give one positive count per "
                f"Conv1 group ({len(shapes)} groups)"
            )
        if self.attention_reduce not in _REDUCE:
            raise ConfigError(f"attention_reduce={self.attention_reduce!r} is not one of sum, mean")
        if not isinstance(self.gap_batchnorm, bool):
            raise ConfigError(f"gap_batchnorm={self.gap_batchnorm!r} must be true or false")
        if self.gap_batchnorm and self.head != "gap":
            raise ConfigError(f"gap_batchnorm=True needs head='gap', not {self.head!r}")
        object.__setattr__(self, "dropout", unit_fraction("dropout", self.dropout))

    @property
    def trunk_channels(self) -> int:
        """C, the channel count of the trunk's output (Conv5 width; Conv1's without Conv2-5)."""
        return self.widths[-1] if self.widths else sum(self.conv1_channels)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Build from ``asdict()`` output (lists accepted for tuples); unknown keys are an error."""
        return _config_from_dict(cls, data, "model_config")


def unit_fraction(name: str, value: Any) -> float:
    """``value`` as a float in [0, 1) (a config field such as a probability or a decay), or a
    ConfigError naming the field; bools and strings are refused."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ConfigError(f"{name}={value!r} must be a number in [0, 1)")
    return float(value)


def _int_tuple(name: str, value: Any) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name}={value!r} is not a sequence of integers") from exc


def _config_from_dict(cls, data: dict[str, Any], what: str):
    if not isinstance(data, dict):
        raise ConfigError(f"{what}: expected a JSON object, found {type(data).__name__}")
    names = {f for f in cls.__dataclass_fields__}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{what}: unknown field(s) {', '.join(unknown)}")
    return cls(**data)


# ----------------------------------------------------------------------------------------------
# Network


class _ConvBNReLU(nn.Sequential):
    """Conv → BN → ReLU; with ``relu=False`` the ReLU is left to the max-pool that follows.

    The ReLU slot holds ``nn.Identity`` then, so the state-dict keys are the same either way.
    """

    def __init__(self, c_in: int, c_out: int, kernel: tuple[int, int], padding: tuple[int, int],
                 relu: bool = True):
        super().__init__(
            nn.Conv2d(c_in, c_out, kernel, padding=padding, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True) if relu else nn.Identity(),
        )


class _MaxPoolReLU(nn.MaxPool2d):
    """2 × 2 max-pool, then ReLU: the same values and gradients as ReLU then max-pool.

    Both are monotone selections, so ``relu(max(a, b, c, d)) == max(relu(a), …, relu(d))`` exactly,
    and the gradient reaches the same input (or none, where the maximum is not positive). Applied
    after the pool, the ReLU and its backward touch a quarter of the values: on the ``ser`` layout
    training is 1.36× faster with 2 threads, 1.64× as two 1-thread processes, and inference 1.54×
    (benchmarks/RESULTS.md, "Layer order").
    """

    def __init__(self):
        super().__init__(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _pool_relu(x)


def _pool_relu(x: torch.Tensor) -> torch.Tensor:
    return F.relu(F.max_pool2d(x, 2))


class _Conv1(nn.Module):
    """Parallel Conv1 groups, each conv → BN → ReLU, cropped to a common size and concatenated.

    Group ``(h, w)`` uses padding ``((h - 1) // 2, (w - 1) // 2)``: (4, 0) for 10 × 2 and (0, 3)
    for 2 × 8, both giving 399 × 199 on a 400 × 200 input. Should shapes give different sizes,
    every group is cropped at the end (bottom/right) to the smallest. With ``pool`` (a max-pool
    after Conv1, D2) each group is pooled and rectified before the concatenation, which is
    exact (the pool is per channel; see :class:`_MaxPoolReLU`) and touches a quarter of the values.
    """

    def __init__(self, shapes: tuple[tuple[int, int], ...], channels: tuple[int, ...], pool: bool = False):
        super().__init__()
        self.pool = pool
        self.groups = nn.ModuleList(
            [
                _ConvBNReLU(1, c, (h, w), ((h - 1) // 2, (w - 1) // 2), relu=not pool)
                for (h, w), c in zip(shapes, channels)
            ]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs: list[torch.Tensor] = []
        for group in self.groups:
            outs.append(group(x))
        height = min([o.shape[2] for o in outs])
        width = min([o.shape[3] for o in outs])
        cropped: list[torch.Tensor] = []
        for o in outs:
            o = o[:, :, :height, :width]
            if self.pool:
                o = _pool_relu(o)
            cropped.append(o)
        return torch.cat(cropped, dim=1)


class Trunk(nn.Module):
    """Conv1 … Conv5 with BN + ReLU and 2 × 2 max-pools: ``(N, 1, F, T) -> (N, C, H, W)``.

    Where a max-pool follows a convolution, the ReLU runs after the pool (exactly the same
    network, see :class:`_MaxPoolReLU`); Conv1 pools inside itself, and an ``nn.Identity``
    keeps the pool's place so that ``layers.<i>`` names the same modules as in older models.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        pool1 = 1 in config.pool_after
        layers: list[nn.Module] = [_Conv1(config.conv1_shapes, config.conv1_channels, pool=pool1)]
        if pool1:
            layers.append(nn.Identity())
        c_in = sum(config.conv1_channels)
        for index, width in enumerate(config.widths, start=2):
            pooled = index in config.pool_after
            layers.append(_ConvBNReLU(c_in, width, (3, 3), (1, 1), relu=not pooled))
            if pooled:
                layers.append(_MaxPoolReLU())
            c_in = width
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class _PooledBatchNorm(nn.BatchNorm1d):
    """``nn.BatchNorm1d`` that also trains on a batch of one (an epoch's last batch can be one
    segment): with one sample the batch statistics are undefined, so that sample is normalised by
    the running ones, and the running statistics are left as they are. Built with the default
    momentum of 0.1 only: ``momentum=None`` (a cumulative average) is not supported, and the
    ``None`` test below is only there for TorchScript, which types the field as optional."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            self.training and x.shape[0] > 1,
                            0.1 if self.momentum is None else self.momentum,  # Optional to TorchScript
                            self.eps)


class GAPHead(nn.Module):
    """CNN_TF_GAP: global average pooling, then linear C → K. ``(N, C, H, W) -> (N, K)``.

    With ``batchnorm`` the pooled features are batch-normalised before the linear layer
    (:attr:`ModelConfig.gap_batchnorm`), in float32 under bf16 autocast; without it ``norm`` is
    an ``nn.Identity`` and holds no state, so the state-dict keys are those of the plain head.
    """

    def __init__(self, channels: int, n_classes: int, batchnorm: bool = False):
        super().__init__()
        self.norm = _PooledBatchNorm(channels) if batchnorm else nn.Identity()
        self.fc = nn.Linear(channels, n_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(self.norm(features.mean(dim=(2, 3)).float()))


class BilinearHead(nn.Module):
    """CNN_TF_Bilinear: ``XᵀX / (H·W)``, signed sqrt, l2 normalisation, linear C² → K."""

    def __init__(self, channels: int, n_classes: int):
        super().__init__()
        self.fc = nn.Linear(channels * channels, n_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        n, c = features.shape[0], features.shape[1]
        x = features.float().reshape(n, c, -1)
        gram = torch.bmm(x, x.transpose(1, 2)) / x.shape[2]
        gram = gram.reshape(n, c * c)
        gram = torch.sign(gram) * torch.sqrt(gram.abs() + 1e-8)
        gram = F.normalize(gram, p=2.0, dim=1)
        return self.fc(gram)


class AttentionHead(nn.Module):
    """CNN_TF_Att.pooling: ``score_k = reduce_positions(X a_k ∘ softmax(X b))``.

    A 1 × 1 convolution C → K gives the top-down maps, a 1 × 1 convolution C → 1 the bottom-up
    map, softmax-normalised over all H·W positions. ``reduce`` is D3: "sum" (the rank-1 form of
    second-order pooling) or "mean" (the same divided by H·W). Works on any H, W.
    """

    def __init__(self, channels: int, n_classes: int, reduce: str = "sum"):
        super().__init__()
        self.top_down = nn.Conv2d(channels, n_classes, 1)
        self.bottom_up = nn.Conv2d(channels, 1, 1)
        self.mean = reduce == "mean"

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        top = self.top_down(features).flatten(2)  # (N, K, H·W)
        attention = torch.softmax(self.bottom_up(features).flatten(2).float(), dim=2)  # (N, 1, H·W)
        scores = (top.float() * attention).sum(dim=2)
        if self.mean:
            scores = scores / top.shape[2]
        return scores


class CNN(nn.Module):
    """CNN_TF: ``(N, 1, 400, 200)`` normalised segments → ``(N, K)`` logits.

    ``forward(x) == head(trunk(x))``; ``trunk`` and ``head`` are submodules, so both are callable
    on a scripted model too.

    Parameters
    ----------
    config : ModelConfig

    Examples
    --------
    >>> net = CNN(ModelConfig(n_classes=4, widths=(4, 4, 4, 4))).eval()
    >>> net(torch.zeros(2, 1, 400, 200)).shape
    torch.Size([2, 4])
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.trunk = Trunk(config)
        # no parameters, so the state dict is the same with or without it
        self.dropout = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()
        c, k = config.trunk_channels, config.n_classes
        if config.head == "gap":
            self.head = GAPHead(c, k, config.gap_batchnorm)
        elif config.head == "bilinear":
            self.head = BilinearHead(c, k)
        else:
            self.head = AttentionHead(c, k, config.attention_reduce)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.trunk(x)))

    @torch.jit.export
    def trunk_map(self, x: torch.Tensor) -> torch.Tensor:
        """The trunk alone: ``(N, 1, 400, T)`` → ``(N, C, H, M)``, any T (shared-trunk scoring).

        An exported TorchScript method, kept by ``torch.jit.freeze(...,
        preserved_attrs=["trunk_map", "window_logits"])``; see :mod:`ser_cli.trunk`.
        """
        return self.trunk(x)

    @torch.jit.export
    def window_logits(self, feature_map: torch.Tensor, starts: torch.Tensor, width: int) -> torch.Tensor:
        """The head on windows of one trunk map: ``(1, C, H, M)``, ``(n,)`` → ``(n, K)`` logits.

        Window *j* is map columns ``[starts[j], starts[j] + width)`` (int64 ``starts``, each
        window inside the map); row *j* equals ``head(feature_map[..., s_j : s_j + width])``.
        """
        n = starts.shape[0]
        columns = (starts.reshape(n, 1) + torch.arange(width, device=starts.device)).reshape(-1)
        windows = feature_map[0].index_select(2, columns)  # (C, H, n·width)
        c, h = windows.shape[0], windows.shape[1]
        windows = windows.reshape(c, h, n, width).permute(2, 0, 1, 3)
        return self.head(windows.contiguous())


class Ensemble(nn.Module):
    """Several trained CNNs of one configuration: the segment logits averaged over the members.

    An utterance's score is the mean of its segment logits (D4 ``logits``), so averaging the
    members' segment logits gives the utterance the mean of the members' utterance logits: the
    ensemble that ``docs/ensemble_screen.py --average logits`` evaluates from the members'
    predictions. ``trunk_map`` concatenates the members' trunk maps along the channels and
    ``window_logits`` splits them again, so shared-trunk scoring (:mod:`ser_cli.trunk`) works
    unchanged.

    Examples
    --------
    >>> config = ModelConfig(n_classes=4, widths=(4, 4, 4, 4))
    >>> a, b = CNN(config).eval(), CNN(config).eval()
    >>> x = torch.zeros(2, 1, 400, 200)
    >>> torch.allclose(Ensemble([a, b])(x), (a(x) + b(x)) / 2)
    True
    """

    def __init__(self, members: list[CNN]):
        super().__init__()
        if len(members) < 2:
            raise ConfigError(f"an ensemble needs at least 2 members, got {len(members)}")
        self.members = nn.ModuleList(members)
        self.channels = members[0].config.trunk_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: list[torch.Tensor] = []
        for member in self.members:
            logits.append(member(x))
        return torch.stack(logits).mean(0)

    @torch.jit.export
    def trunk_map(self, x: torch.Tensor) -> torch.Tensor:
        """The members' trunk maps, concatenated along the channels: ``(N, K·C, H, M)``."""
        maps: list[torch.Tensor] = []
        for member in self.members:
            maps.append(member.trunk_map(x))
        return torch.cat(maps, 1)

    @torch.jit.export
    def window_logits(self, feature_map: torch.Tensor, starts: torch.Tensor, width: int) -> torch.Tensor:
        """Each member's head on its own channels of ``feature_map``, logits averaged."""
        logits: list[torch.Tensor] = []
        for i, member in enumerate(self.members):
            own = feature_map[:, i * self.channels : (i + 1) * self.channels]
            logits.append(member.window_logits(own, starts, width))
        return torch.stack(logits).mean(0)


#: Metadata that must agree between the members of an ensemble (what scoring depends on).
_ENSEMBLE_SAME = ("classes", "feature_config", "segment_config", "scoring_config", "model_config",
                  "audio_config")
#: Per-member metadata recorded under ``"ensemble"`` in the ensemble's file.
_ENSEMBLE_MEMBER_KEYS = ("command", "created", "train_config", "training", "data", "metrics")


def ensemble_models(paths: list[str | os.PathLike], output: str | os.PathLike,
                    command: str | None = None) -> Path:
    """Combine trained model files of one configuration into one ensemble model file.

    The members must agree on the classes and every configuration scoring depends on (they
    differ in their seed, or in the data they were trained on); their weights are copied into
    fresh :class:`CNN` s, wrapped in an :class:`Ensemble` and exported as one TorchScript file,
    which ``analyze``, ``evaluate``'s scoring and ``model-card`` read like any model. The
    metadata is the first member's, with each member's recipe, command and training record
    under ``"ensemble"``.

    Raises
    ------
    ModelFileError
        A member cannot be read, or its configuration differs from the first member's (names
        the file and the key).
    ConfigError
        Fewer than two members.
    """
    from datetime import datetime, timezone

    if len(paths) < 2:
        raise ConfigError(f"an ensemble needs at least 2 model files, got {len(paths)}")
    loaded = [load_model(p) for p in paths]
    first = loaded[0]
    members = []
    for item in loaded:
        for key in _ENSEMBLE_SAME:
            if item.metadata.get(key) != first.metadata.get(key):
                raise ModelFileError(
                    f"{item.path}: {key} differs from {first.path}'s; only models of one "
                    "configuration can be averaged"
                )
        if "ensemble" in item.metadata:
            raise ModelFileError(f"{item.path}: already an ensemble; list its members instead")
        net = CNN(item.model_config)
        try:
            net.load_state_dict(item.module.state_dict())
        except RuntimeError as exc:
            raise ModelFileError(f"{item.path}: its weights do not fit its model_config ({exc})") from exc
        members.append(net.eval())
    metadata = {k: v for k, v in first.metadata.items() if k not in _ENSEMBLE_MEMBER_KEYS}
    metadata["ensemble"] = {
        "average": "segment logits",
        "members": [
            {"file": Path(item.path).name, "sha256": item.sha256,
             **{k: item.metadata[k] for k in _ENSEMBLE_MEMBER_KEYS if k in item.metadata}}
            for item in loaded
        ],
    }
    # The card's Data and Recipe sections read the first member's; the members' differences
    # (their seeds) are listed from "ensemble".
    metadata.update({k: first.metadata[k] for k in ("data", "train_config", "training") if k in first.metadata})
    metadata["command"] = command
    metadata["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return export_model(Ensemble(members), output, metadata)


# ----------------------------------------------------------------------------------------------
# Devices and precision


_allocator_tuned = False


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory in the process; True if it now does.

    Every training or scoring step allocates and frees the same large activations (the ``ser``
    layout's Conv1 output is 160 MB at batch 64). glibc serves blocks above 32 MB with ``mmap``
    and unmaps them on free, so each step faults in, and the kernel zeroes, fresh pages: about a
    quarter of a training process's CPU time went to the kernel here. With ``mmap`` off and a 1 GB
    trim threshold the blocks are reused instead: 1.69× the training throughput of two 1-thread
    processes, for 0.3–0.5 GB more resident memory each (benchmarks/RESULTS.md, "Allocator").
    Process-wide and idempotent; a no-op off glibc, or when ``SER_SYSTEM_MALLOC=1`` asks to leave
    the allocator alone.
    """
    global _allocator_tuned
    if _allocator_tuned:
        return True
    if os.environ.get("SER_SYSTEM_MALLOC") == "1":
        return False
    import ctypes
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_max = -1, -4  # <malloc.h>
    _allocator_tuned = bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, 1 << 30))
    return _allocator_tuned


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn a ``--device`` value into a :class:`torch.device`.

    Parameters
    ----------
    device : str
        ``"auto"`` (the first CUDA GPU if present, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.

    Returns
    -------
    torch.device

    Raises
    ------
    ConfigError
        Unknown value, or CUDA asked for where it is not available.

    Examples
    --------
    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if isinstance(device, torch.device):
        device = str(device)
    text = str(device).strip().lower()
    if text == "auto":
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    if text == "cpu":
        return torch.device("cpu")
    if text == "cuda" or text.startswith("cuda:"):
        try:
            resolved = torch.device(text)
        except RuntimeError as exc:
            raise ConfigError(f"device={device!r} is not a valid device") from exc
        if not torch.cuda.is_available():
            raise ConfigError(f"device={device!r}: CUDA is not available on this machine")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ConfigError(
                f"device={device!r}: only {torch.cuda.device_count()} CUDA device(s) present"
            )
        return resolved
    raise ConfigError(f"device={device!r} is not one of auto, cpu, cuda, cuda:N")


def cpu_has_native_bf16(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> bool:
    """True when the CPU flags include ``amx_bf16`` or ``avx512_bf16`` (native bf16 math).

    Without them bf16 autocast is emulated and measured 4-5× slower than fp32 on this
    project's AVX2 machine (benchmarks/RESULTS.md, "Model").
    """
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[-1].split())
            return bool(flags & {"amx_bf16", "avx512_bf16"})
    return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """Pick the arithmetic for ``--precision``: ``"fp32"`` or ``"bf16"``.

    ``"auto"`` is bf16 on CUDA devices that support it and on CPUs with native bf16
    (:func:`cpu_has_native_bf16`), fp32 elsewhere.

    Raises
    ------
    ConfigError
        Unknown value.

    Examples
    --------
    >>> resolve_precision("fp32", torch.device("cpu"))
    'fp32'
    """
    if precision not in ("auto", "fp32", "bf16"):
        raise ConfigError(f"precision={precision!r} is not one of auto, fp32, bf16")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_has_native_bf16() else "fp32"


def autocast(device: torch.device, precision: str):
    """An autocast context for ``precision`` on ``device`` (a no-op for fp32)."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


# ----------------------------------------------------------------------------------------------
# Model files


def script_model(model: nn.Module) -> torch.jit.ScriptModule:
    """A TorchScript copy of ``model`` on the CPU, fp32, contiguous memory format, eval mode.

    :func:`ser_cli.training.train` scripts its network before the first epoch: a model that
    cannot be exported fails at once instead of after hours of training, and the export at the
    end only copies the trained weights into this module, so it no longer depends on the source
    files (``torch.jit.script`` reads them from disk: an upgrade or edit of ser-cli during a long
    run used to make the final export fail).

    Raises
    ------
    ModelFileError
        TorchScript compilation failed (the compiler's reason).
    """
    import copy

    eager = copy.deepcopy(model).to("cpu", dtype=torch.float32)
    eager = eager.to(memory_format=torch.contiguous_format).eval()
    with _quiet_jit():
        try:
            return torch.jit.script(eager)
        except Exception as exc:  # noqa: BLE001 - the compiler raises many kinds
            # No fallback to tracing: a trace freezes shapes and drops the exported methods.
            raise ModelFileError(f"{type(model).__name__}: TorchScript compilation failed ({exc})") from exc


def export_model(model: nn.Module, path: str | os.PathLike, metadata: dict[str, Any]) -> Path:
    """Write ``model`` as a TorchScript archive with ``metadata`` as ``ser_cli.json`` inside.

    An eager model is scripted first (:func:`script_model`); a ScriptModule is written as it is.
    The file is written to a temporary name and renamed, so an interrupted export never leaves a
    truncated model behind.

    Parameters
    ----------
    model : CNN or torch.jit.ScriptModule
    path : path-like
        Output file (``.pt`` by convention).
    metadata : dict
        JSON-serialisable; ``"format"`` is set to ``MODEL_FORMAT`` when absent.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    ModelFileError
        TorchScript compilation failed (names the file and the compiler's reason).

    Examples
    --------
    >>> net = CNN(ModelConfig(n_classes=2, widths=(4, 4, 4, 4)))
    >>> export_model(net, "tiny.pt", {"classes": ["a", "b"]})  # doctest: +SKIP
    """
    path = Path(path)
    metadata = dict(metadata)
    metadata.setdefault("format", MODEL_FORMAT)
    payload = json.dumps(metadata, sort_keys=True, default=_json_default)
    if isinstance(model, torch.jit.ScriptModule):
        scripted = model
    else:
        try:
            scripted = script_model(model)
        except ModelFileError as exc:
            raise ModelFileError(f"{path}: {exc}") from exc.__cause__
    with _quiet_jit():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.jit.save(scripted, str(tmp), _extra_files={_METADATA_NAME: payload})
    os.replace(tmp, path)
    return path


def update_metadata(path: str | os.PathLike, updates: dict[str, Any]) -> dict[str, Any]:
    """Merge ``updates`` into the JSON inside a model file; the weights are not touched.

    Used to attach evaluation metrics to a trained model (``ser-cli model-card --attach``). The
    file is rewritten to a temporary name and renamed.

    Parameters
    ----------
    path : path-like
        A ser-cli model file.
    updates : dict
        Top-level keys to set (a key's old value is replaced whole).

    Returns
    -------
    dict
        The new metadata.

    Raises
    ------
    ModelFileError
        ``path`` is not a readable ser-cli model.

    Examples
    --------
    >>> update_metadata("model.pt", {"metrics": {"ua": 0.8}})  # doctest: +SKIP
    """
    path = Path(path)
    metadata = {**read_metadata(path), **updates}
    payload = json.dumps(metadata, sort_keys=True, default=_json_default)
    with _quiet_jit():
        module = torch.jit.load(str(path), map_location="cpu")
        tmp = path.with_name(path.name + ".tmp")
        torch.jit.save(module, str(tmp), _extra_files={_METADATA_NAME: payload})
    os.replace(tmp, path)
    return metadata


def export_program(model: nn.Module, path: str | os.PathLike | None = None):
    """Export the eager model with ``torch.export`` (the successor of TorchScript).

    Not used by the CLI yet: the model file format is still TorchScript. This keeps the
    migration path tested: ``torch.export.export`` on the eval-mode CPU model with a
    ``(1, 1, 400, 200)`` example input, saved with ``torch.export.save`` when ``path`` is given.

    Returns
    -------
    torch.export.ExportedProgram
    """
    import copy

    eager = copy.deepcopy(model).to("cpu", dtype=torch.float32).eval()
    program = torch.export.export(eager, (torch.zeros(1, 1, 400, 200),))
    if path is not None:
        torch.export.save(program, str(path))
    return program


def _json_default(value: Any):
    if isinstance(value, (tuple, set)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


@dataclass
class LoadedModel:
    """A model file opened by :func:`load_model`.

    Attributes
    ----------
    module : torch.jit.ScriptModule
        Eval mode, on the requested device; ``(N, 1, 400, 200) -> (N, K)`` logits, with
        ``module.trunk`` and ``module.head`` callable separately.
    metadata : dict
        The ``ser_cli.json`` inside the archive.
    classes : list of str
        Class names in output order.
    feature_config, segment_config, scoring_config, model_config
        The configurations the model was trained with; scoring must use these.
    name : str
        File name without extension.
    sha256 : str
        Hex digest of the file.
    """

    module: Any
    metadata: dict[str, Any]
    classes: list[str]
    feature_config: Any
    segment_config: Any
    scoring_config: Any
    model_config: ModelConfig
    name: str
    sha256: str
    path: str = field(default="")


def _read_metadata_from_zip(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise ModelFileError(f"{path}: model file does not exist")
    if not path.is_file():
        raise ModelFileError(f"{path}: not a file")
    if not zipfile.is_zipfile(path):
        raise ModelFileError(f"{path}: not a ser-cli model (not a TorchScript zip archive)")
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.endswith(f"/extra/{_METADATA_NAME}")]
            if not names:
                raise ModelFileError(
                    f"{path}: TorchScript archive without {_METADATA_NAME}: not a ser-cli model "
                    "(export it with ser_cli.model.export_model)"
                )
            raw = archive.read(names[0])
            bad = archive.testzip()
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as exc:
        raise ModelFileError(f"{path}: corrupt model archive ({exc})") from exc
    if bad is not None:
        raise ModelFileError(f"{path}: corrupt model archive (bad CRC in {bad})")
    try:
        metadata = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{path}: {_METADATA_NAME} is not valid JSON ({exc})") from exc
    if not isinstance(metadata, dict):
        raise ModelFileError(f"{path}: {_METADATA_NAME} is not a JSON object")
    if metadata.get("format") != MODEL_FORMAT:
        raise ModelFileError(
            f"{path}: unsupported model format {metadata.get('format')!r}, expected {MODEL_FORMAT!r}"
        )
    return metadata


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The ``ser_cli.json`` of a model file, without loading the network.

    Raises
    ------
    ModelFileError
        Missing, not a zip archive, corrupt, or without ``ser_cli.json``.
    """
    return _read_metadata_from_zip(Path(path))


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> LoadedModel:
    """Open a ser-cli model file (TorchScript + ``ser_cli.json``).

    Parameters
    ----------
    path : path-like
    device : str or torch.device
        Where to put the module (``"cpu"``, ``"cuda"``, ``"auto"``, ...).

    Returns
    -------
    LoadedModel

    Raises
    ------
    ModelFileError
        The file is missing, not a zip archive, truncated or corrupt, a TorchScript archive
        without ``ser_cli.json`` (foreign), or its metadata lacks classes or configs.
    ConfigError
        The device is not available.

    Examples
    --------
    >>> loaded = load_model("model.pt")  # doctest: +SKIP
    >>> loaded.classes  # doctest: +SKIP
    ['neutral', 'happy', 'angry', 'sad']
    """
    path = Path(path)
    metadata = _read_metadata_from_zip(path)
    torch_device = resolve_device(device)
    try:
        with _quiet_jit():
            module = torch.jit.load(str(path), map_location=torch_device)
    except Exception as exc:  # noqa: BLE001 - torch raises RuntimeError and others on bad archives
        raise ModelFileError(f"{path}: cannot load the TorchScript module ({exc})") from exc
    module.eval()
    try:
        classes = [str(c) for c in metadata["classes"]]
        configs = _configs_from_metadata(metadata)
    except KeyError as exc:
        raise ModelFileError(f"{path}: metadata lacks {exc.args[0]!r}") from exc
    except (ConfigError, TypeError) as exc:
        raise ModelFileError(f"{path}: invalid configuration in metadata ({exc})") from exc
    if configs["model_config"].n_classes != len(classes):
        raise ModelFileError(
            f"{path}: {len(classes)} class names but model_config.n_classes="
            f"{configs['model_config'].n_classes}"
        )
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return LoadedModel(
        module=module,
        metadata=metadata,
        classes=classes,
        name=path.stem,
        sha256=digest.hexdigest(),
        path=str(path),
        **configs,
    )


def _configs_from_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    from ser_cli.features import FeatureConfig
    from ser_cli.scoring import ScoringConfig
    from ser_cli.segmentation import SegmentConfig

    return {
        "feature_config": _config_from_dict(FeatureConfig, metadata["feature_config"], "feature_config"),
        "segment_config": _config_from_dict(SegmentConfig, metadata["segment_config"], "segment_config"),
        "scoring_config": _config_from_dict(ScoringConfig, metadata["scoring_config"], "scoring_config"),
        "model_config": ModelConfig.from_dict(metadata["model_config"]),
    }


def config_dict(config: Any) -> dict[str, Any]:
    """``asdict`` of a config dataclass, tuples as lists (JSON-ready).

    A field declared with ``metadata={"omit_at_default": True}`` (one added after runs were made)
    is left out while it has its default, so the configs, and the fingerprints that resume
    checkpoints and finished folds, of every run made before it existed stay the same.
    """
    values = asdict(config)
    for f in fields(config):
        if f.metadata.get("omit_at_default") and values[f.name] == f.default:
            del values[f.name]
    return json.loads(json.dumps(values, default=_json_default))
