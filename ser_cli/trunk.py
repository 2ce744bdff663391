"""Shared-trunk scoring: run the convolutions once per utterance, the head once per window.

At the scoring hop (40 frames, 0.4 s) every frame lies in five overlapping 200-frame segments,
so scoring segment by segment runs Conv1 … Conv5 five times over the same frames. With
``"utterance"`` normalisation (D1 variant: one scale for the whole utterance,
:func:`ser_cli.features.normalize`) the segments of an utterance are literally slices of one
normalised spectrogram, so the trunk can run over the utterance (or long blocks of it) and the
head is applied to each 2 s window of the trunk's output map. Design, index arithmetic and what
is exact: docs/shared_trunk.md.

Index arithmetic (:class:`TrunkGeometry`). Along time the trunk is Conv1 (each group a
``w``-frame kernel with ``(w - 1) // 2`` frames of zero padding: output column ``c`` covers
frames ``[c - pw, c - pw + w)``; every default group gives ``T - 1`` columns), 3 × 3 convolutions
with padding 1 (shift-invariant, same width) and 2 × 2 max-pools (column ``q`` takes columns
``2q, 2q + 1``; floor). With ``p`` pools the pool factor is ``f = 2**p`` (4 for pool_after=(2, 3),
8 for (1, 2, 3)) and, for a segment starting at a frame divisible by ``f``, trunk column ``q`` of
the segment is column ``start / f + q`` of the utterance's map. A 200-frame segment has
``W = map_width(200)`` columns (49 resp. 24), so window *j* is map columns
``[start_j / f, start_j / f + W)``. Map column ``P`` depends on input frames
``[f P - reach_left, f P + reach_right]`` (14 and 18 frames for the default net): columns of a
window that far from the segment's edges are exactly the segment's own trunk output; the others
see real neighbouring frames where the segment saw zero padding.

Blocks. A file is processed in blocks that own the windows starting in ``[b B, (b + 1) B)``
(``B = block_frames``, default 2000 frames = 20 s). Block *b* runs the trunk on frames
``[b B - L, s_last + R)`` (clipped to the utterance), where ``L >= reach_left`` and
``R >= f W + reach_right`` are multiples of ``f`` (so the block's pooling grid is the
utterance's): its window columns are bit-for-bit those of the whole-utterance map, up to
float rounding of the convolution algorithm. An utterance of at most about ``B + 200`` frames is
one block, i.e. the whole utterance at once.

Edges (D5). An utterance shorter than the segment is padded as the per-segment path pads it
(repeat or zeros) to exactly one segment, so its single window is exactly the per-segment
input. The end-aligned tail segment (``tail="end"``) generally does not start on a multiple of
``f``; its window is the last ``W`` columns of the map (it starts up to ``f - 1`` frames before
the tail segment, never after). Reports keep the per-segment start frames.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from ser_cli.errors import ConfigError

__all__ = [
    "TrunkGeometry",
    "TrunkBlock",
    "TrunkBlockStream",
    "plan_blocks",
    "block_logits",
    "shared_trunk_logits",
    "require_shared_trunk",
    "conv_flops",
    "conv_flops_per_second",
    "DEFAULT_BLOCK_FRAMES",
    "PRESERVED_METHODS",
]

#: Frames of window starts per trunk block (20 s): ~10 % of the trunk work is overlap.
DEFAULT_BLOCK_FRAMES = 2000
#: Methods to keep when the scripted model is frozen (``torch.jit.freeze(preserved_attrs=...)``).
PRESERVED_METHODS = ["trunk_map", "window_logits"]


def _layers(model_config) -> list[tuple]:
    """The trunk's layers as ``("conv1", groups)``, ``("conv", c_in, c_out)``, ``("pool",)``."""
    groups = [(h, w, c) for (h, w), c in zip(model_config.conv1_shapes, model_config.conv1_channels)]
    layers: list[tuple] = [("conv1", groups)]
    if 1 in model_config.pool_after:
        layers.append(("pool",))
    c_in = sum(model_config.conv1_channels)
    for index, width in enumerate(model_config.widths, start=2):
        layers.append(("conv", c_in, width))
        if index in model_config.pool_after:
            layers.append(("pool",))
        c_in = width
    return layers


def _out_size(layers, size: int, axis: int) -> int:
    """Trunk output size along frequency (axis 0) or time (axis 1) for an input of ``size``."""
    for layer in layers:
        if layer[0] == "conv1":
            size = min(size + 2 * ((k[axis] - 1) // 2) - k[axis] + 1 for k in layer[1])
        elif layer[0] == "pool":
            size //= 2
        if size <= 0:
            return 0
    return size


@dataclass(frozen=True)
class TrunkGeometry:
    """How trunk map columns relate to spectrogram frames (see the module docstring).

    Attributes
    ----------
    pool_factor : int
        ``f = 2**(number of max-pools)``: frames per map column.
    reach_left, reach_right : int
        Map column ``P`` depends on frames ``[f P - reach_left, f P + reach_right]``.
    segment_frames : int
        Frames per segment (200).
    window_columns : int
        ``W``, map columns of one segment (49 for pool_after=(2, 3), 24 for (1, 2, 3)).

    Examples
    --------
    >>> from ser_cli.model import ModelConfig
    >>> g = TrunkGeometry.from_model_config(ModelConfig())
    >>> g.pool_factor, g.reach_left, g.reach_right, g.window_columns, g.map_width(600)
    (4, 14, 18, 49, 149)
    """

    pool_factor: int
    reach_left: int
    reach_right: int
    segment_frames: int
    window_columns: int
    _layers: tuple = ()

    @classmethod
    def from_model_config(cls, model_config, segment_frames: int = 200) -> "TrunkGeometry":
        layers = _layers(model_config)
        scale, lo, hi = 1, 0, 0  # map column P depends on frames [scale P + lo, scale P + hi]
        for layer in reversed(layers):
            if layer[0] == "conv":
                lo, hi = lo - 1, hi + 1
            elif layer[0] == "pool":
                scale, lo, hi = 2 * scale, 2 * lo, 2 * hi + 1
            else:
                lo -= max((w - 1) // 2 for _, w, _ in layer[1])
                hi += max(w - 1 - (w - 1) // 2 for _, w, _ in layer[1])
        width = _out_size(layers, segment_frames, 1)
        if width < 1:
            raise ConfigError(
                f"segment_frames={segment_frames} gives an empty trunk map for pool_after="
                f"{model_config.pool_after}"
            )
        return cls(scale, -lo, hi, int(segment_frames), width, tuple(layers))

    def map_width(self, n_frames: int) -> int:
        """Columns of the trunk map of ``n_frames`` input frames (0 if too short)."""
        return _out_size(self._layers, int(n_frames), 1)

    @property
    def margin_left(self) -> int:
        """``L``: frames of left context a block needs, a multiple of ``f``."""
        f = self.pool_factor
        return f * math.ceil(self.reach_left / f)

    @property
    def margin_right(self) -> int:
        """Frames a block needs after its last window start: covers ``W`` columns plus reach."""
        f = self.pool_factor
        return max(self.segment_frames, f * self.window_columns + f * math.ceil(self.reach_right / f))


@dataclass
class TrunkBlock:
    """One trunk call: normalised frames and the windows to cut from its map.

    Attributes
    ----------
    frames : numpy.ndarray
        ``(400, n)`` float32 normalised frames ``[start_frame, start_frame + n)`` of the utterance
        (for an utterance shorter than a segment: its padded single segment).
    start_frame : int
        First frame, a multiple of ``f``; map column ``col_offset = start_frame / f``.
    col_offset : int
    columns : numpy.ndarray
        ``(k,)`` int64 utterance map column where each window starts.
    starts : numpy.ndarray
        ``(k,)`` int64 start frames of the matching per-segment segments (for reports).
    """

    frames: np.ndarray
    start_frame: int
    col_offset: int
    columns: np.ndarray
    starts: np.ndarray

    @property
    def local_columns(self) -> np.ndarray:
        return self.columns - self.col_offset


class TrunkBlockStream:
    """Cut a streamed, normalised spectrogram into :class:`TrunkBlock` s.

    :meth:`push` returns the blocks that are complete; :meth:`close` the last one. Their
    ``starts`` concatenated are exactly ``segment_starts(n_frames, hop_frames, segment_config)``.
    Memory: at most ``block_frames + margins`` frames are held (plus the last push).

    Parameters
    ----------
    geometry : TrunkGeometry
    hop_frames : int
        Scoring hop; must be a multiple of ``geometry.pool_factor``.
    segment_config : ser_cli.segmentation.SegmentConfig
    block_frames : int
        Frames of window starts per block (rounded up to a multiple of ``hop_frames``).

    Raises
    ------
    ConfigError
        The hop is not a multiple of the pool factor.
    """

    def __init__(self, geometry: TrunkGeometry, hop_frames: int, segment_config,
                 block_frames: int = DEFAULT_BLOCK_FRAMES) -> None:
        f = geometry.pool_factor
        if hop_frames % f:
            raise ConfigError(
                f"score_hop_frames={hop_frames} is not a multiple of the trunk's pool factor {f}: "
                "windows of the shared trunk map would not line up with the segments"
            )
        if segment_config.segment_frames != geometry.segment_frames:
            raise ConfigError(
                f"segment_frames={segment_config.segment_frames} differs from the geometry's "
                f"{geometry.segment_frames}"
            )
        self.geometry = geometry
        self.hop = int(hop_frames)
        self.config = segment_config
        self.block = max(1, math.ceil(block_frames / self.hop)) * self.hop
        self._buf = np.zeros((400, 0), dtype=np.float32)  # frames [self._buf_start, self._n)
        self._buf_start = 0
        self._n = 0
        self._next = 0  # first window start not yet emitted (a multiple of self.block)
        self._closed = False

    def _slice(self, a: int, e: int) -> np.ndarray:
        if a < self._buf_start:  # pragma: no cover - guarded by the keep rule below
            raise AssertionError(f"frame {a} already dropped (buffer starts at {self._buf_start})")
        return np.ascontiguousarray(self._buf[:, a - self._buf_start : e - self._buf_start])

    def _block(self, a: int, e: int, starts: np.ndarray, columns: np.ndarray) -> TrunkBlock:
        f = self.geometry.pool_factor
        return TrunkBlock(self._slice(a, e), a, a // f, columns.astype(np.int64), starts.astype(np.int64))

    def push(self, frames: np.ndarray) -> list[TrunkBlock]:
        """Add ``(400, k)`` normalised frames; return the blocks now complete."""
        if self._closed:
            raise ConfigError("TrunkBlockStream: push() after close()")
        frames = np.asarray(frames, dtype=np.float32)
        if frames.shape[1]:
            self._buf = np.concatenate([self._buf, frames], axis=1)
            self._n += frames.shape[1]
        g, out = self.geometry, []
        while True:
            last = self._next + self.block - self.hop  # last window start of this block
            if self._n < last + g.margin_right:
                break
            starts = np.arange(self._next, last + 1, self.hop, dtype=np.int64)
            a = max(0, self._next - g.margin_left)
            out.append(self._block(a, last + g.margin_right, starts, starts // g.pool_factor))
            self._next += self.block
        keep = max(0, self._next - g.margin_left - g.segment_frames)
        if keep > self._buf_start:
            self._buf = self._buf[:, keep - self._buf_start :].copy()
            self._buf_start = keep
        return out

    def close(self) -> list[TrunkBlock]:
        """The last block: remaining regular windows, the end-aligned tail, or the padded segment."""
        from ser_cli.segmentation import _pad, segment_starts

        if self._closed:
            raise ConfigError("TrunkBlockStream: close() called twice")
        self._closed = True
        g, n, seg = self.geometry, self._n, self.geometry.segment_frames
        f, width = g.pool_factor, g.window_columns
        if n == 0:
            return []
        if n < seg:  # D5: one padded segment, exactly the per-segment input
            padded = np.ascontiguousarray(_pad(self._buf, seg, self.config.pad))
            zero = np.zeros(1, dtype=np.int64)
            return [TrunkBlock(padded, 0, 0, zero, zero)]
        every = segment_starts(n, self.hop, self.config)
        # regular windows not emitted yet, then the end-aligned tail (never on the hop grid;
        # it may start before self._next when the last pushed block took the windows around it)
        starts = every[(every % self.hop == 0) & (every >= self._next)]
        columns = starts // f
        if self.config.tail == "end" and every[-1] % self.hop:
            starts = np.append(starts, every[-1])
            columns = np.append(columns, g.map_width(n) - width)  # the window ending the map
        if not len(starts):
            return []
        a = max(0, min(self._next, int(columns.min()) * f) - g.margin_left)
        return [self._block(a, n, starts, columns)]


def plan_blocks(spec, hop_frames: int, segment_config, geometry: TrunkGeometry,
                block_frames: int = DEFAULT_BLOCK_FRAMES) -> list[TrunkBlock]:
    """All blocks of a whole normalised spectrogram ``(400, n_frames)`` (push + close)."""
    stream = TrunkBlockStream(geometry, hop_frames, segment_config, block_frames)
    return stream.push(np.asarray(spec, dtype=np.float32)) + stream.close()


def block_logits(module, block: TrunkBlock, window_columns: int, device="cpu") -> np.ndarray:
    """Run the trunk over one block and the head over its windows: ``(k, K)`` float32 logits.

    ``module`` is a scripted (optionally frozen with :data:`PRESERVED_METHODS`) or eager
    :class:`ser_cli.model.CNN`; a module without ``trunk_map``/``window_logits`` (an older
    export) is served by its ``trunk`` and ``head`` submodules.
    """
    import torch

    x = torch.from_numpy(block.frames)[None, None].to(device)
    x = x.contiguous(memory_format=torch.channels_last)
    cols = torch.from_numpy(block.local_columns).to(device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        if hasattr(module, "window_logits"):
            fmap = module.trunk_map(x)
            logits = module.window_logits(fmap, cols, int(window_columns))
        else:  # pragma: no cover - model files exported before trunk_map existed
            fmap = module.trunk(x)
            logits = torch.cat([module.head(fmap[..., c : c + window_columns]) for c in cols.tolist()])
    return logits.float().cpu().numpy()


def shared_trunk_logits(module, spec, hop_frames: int, segment_config, model_config, *,
                        device="cpu", block_frames: int = DEFAULT_BLOCK_FRAMES):
    """Segment logits of one utterance by shared-trunk scoring.

    Parameters
    ----------
    module : CNN or torch.jit.ScriptModule
        Eval mode, on ``device``.
    spec : numpy.ndarray
        ``(400, n_frames)`` float32 spectrogram, already normalised with ``"utterance"``.
    hop_frames : int
        Scoring hop (a multiple of the pool factor).
    segment_config : SegmentConfig
    model_config : ModelConfig
    device : str or torch.device
    block_frames : int
        See :class:`TrunkBlockStream`.

    Returns
    -------
    logits : numpy.ndarray, shape (n_segments, K), float32
    starts : numpy.ndarray, shape (n_segments,), int64
        As ``segment_starts(n_frames, hop_frames, segment_config)``.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from ser_cli.model import CNN, ModelConfig
    >>> from ser_cli.segmentation import SegmentConfig
    >>> cfg = ModelConfig(n_classes=2, widths=(4, 4, 4, 4))
    >>> spec = np.random.default_rng(0).random((400, 450), dtype=np.float32)
    >>> logits, starts = shared_trunk_logits(CNN(cfg).eval(), spec, 40, SegmentConfig(), cfg)
    >>> logits.shape, starts.tolist()
    ((8, 2), [0, 40, 80, 120, 160, 200, 240, 250])
    """
    import torch

    geometry = TrunkGeometry.from_model_config(model_config, segment_config.segment_frames)
    blocks = plan_blocks(spec, hop_frames, segment_config, geometry, block_frames)
    if not blocks:
        return np.zeros((0, model_config.n_classes), np.float32), np.zeros(0, np.int64)
    with torch.inference_mode():
        logits = [block_logits(module, b, geometry.window_columns, device) for b in blocks]
    return np.concatenate(logits), np.concatenate([b.starts for b in blocks])


def require_shared_trunk(loaded) -> TrunkGeometry:
    """Check that a loaded model can be scored with a shared trunk; return its geometry.

    Raises
    ------
    ConfigError
        The model was trained with per-segment normalisation, or its scoring hop is not a
        multiple of the trunk's pool factor; the message names the model file.
    """
    where = loaded.path or loaded.name
    normalization = loaded.feature_config.normalization
    if normalization != "utterance":
        raise ConfigError(
            f"{where}: shared-trunk scoring needs a model trained with normalization='utterance' "
            f"(this one uses {normalization!r}, per segment: its segments are not slices of one "
            "normalised spectrogram). Train with 'ser-cli train --normalization utterance', or "
            "score without --shared-trunk."
        )
    geometry = TrunkGeometry.from_model_config(loaded.model_config, loaded.segment_config.segment_frames)
    hop = loaded.segment_config.score_hop_frames
    if hop % geometry.pool_factor:
        raise ConfigError(
            f"{where}: score_hop_frames={hop} is not a multiple of the trunk's pool factor "
            f"{geometry.pool_factor}; shared-trunk scoring needs aligned windows"
        )
    return geometry


def conv_flops(model_config, n_frames: int, n_bins: int = 400) -> int:
    """Convolution FLOPs (2 per multiply-add) of the trunk on a ``(n_bins, n_frames)`` input.

    Counts every output position each convolution computes (Conv1 groups before cropping);
    batch norm, ReLU, pooling and the head are left out (< 1 % of the total).

    Examples
    --------
    >>> from ser_cli.model import ModelConfig
    >>> round(conv_flops(ModelConfig(), 200) / 1e9, 2)
    2.04
    """
    size = [int(n_bins), int(n_frames)]
    total = 0
    for layer in _layers(model_config):
        if layer[0] == "conv1":
            outs = []
            for h, w, c in layer[1]:
                oh = size[0] + 2 * ((h - 1) // 2) - h + 1
                ow = size[1] + 2 * ((w - 1) // 2) - w + 1
                total += 2 * c * h * w * max(oh, 0) * max(ow, 0)
                outs.append((oh, ow))
            size = [min(o[0] for o in outs), min(o[1] for o in outs)]
        elif layer[0] == "pool":
            size = [size[0] // 2, size[1] // 2]
        else:
            total += 2 * layer[1] * layer[2] * 9 * max(size[0], 0) * max(size[1], 0)
    return int(total)


def conv_flops_per_second(model_config, n_frames_list, segment_config, hop_frames: int | None = None,
                          block_frames: int = DEFAULT_BLOCK_FRAMES) -> dict[str, Any]:
    """Convolution FLOPs per second of audio, per-segment vs shared trunk, for utterance lengths.

    Parameters
    ----------
    model_config : ModelConfig
    n_frames_list : iterable of int
        Frame counts of the utterances (audio seconds ≈ (frames - 1) / 100 + 0.04).
    segment_config : SegmentConfig
    hop_frames : int, optional
        Default ``segment_config.score_hop_frames``.

    Returns
    -------
    dict
        ``per_segment`` and ``shared`` FLOPs per audio second, and their ``ratio``.
    """
    from ser_cli.segmentation import segment_starts

    hop = hop_frames or segment_config.score_hop_frames
    seg = segment_config.segment_frames
    geometry = TrunkGeometry.from_model_config(model_config, seg)
    per_segment = shared = 0
    seconds = 0.0
    f_seg = conv_flops(model_config, seg)
    for n in n_frames_list:
        n = int(n)
        if n <= 0:
            continue
        seconds += ((n - 1) * 160 + 640) / 16000
        per_segment += len(segment_starts(n, hop, segment_config)) * f_seg
        stream = TrunkBlockStream(geometry, hop, segment_config, block_frames)
        # only the block extents matter: push zero frames in one go
        blocks = stream.push(np.zeros((400, n), np.float32)) + stream.close()
        shared += sum(conv_flops(model_config, b.frames.shape[1]) for b in blocks)
    return {
        "audio_s": seconds,
        "per_segment": per_segment / seconds if seconds else 0.0,
        "shared": shared / seconds if seconds else 0.0,
        "ratio": per_segment / shared if shared else float("nan"),
    }
