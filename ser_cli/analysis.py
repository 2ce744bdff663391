"""Batch scoring of audio archives: :func:`analyze` (``ser-cli analyze``).

Its benchmark (``ser-cli bench analyze``) lives in :mod:`ser_cli.bench`.

The pipeline
------------
``jobs`` decoder threads each take one file at a time and stream it: ``audio.stream`` (blocks of
``_BLOCK_S`` seconds) -> ``features.SpectrogramStream`` -> ``segmentation.SegmentStream`` with the
model's scoring hop -> ``features.normalize`` per segment. They put chunks of normalised segments
``(n, 400, 200)`` on one bounded queue. The calling thread packs chunks from any files into full
batches of ``batch_size`` segments, runs the TorchScript model on them, routes each row's logits
back to its file, and finishes a file (utterance scores, journal record) as soon as its last
segment has been scored. Every model call has exactly ``batch_size`` rows (the last batch is
zero-padded): with a fixed shape a segment's logits are bit-for-bit independent of which other
files share its batch (checked on CPU; the test suite asserts it), so the reports do not depend
on worker timing or on where a run was interrupted. soundfile, soxr, the C++ front-end, numpy and torch release the GIL, so
decoding overlaps scoring. Memory is bounded: at most ``4 * jobs`` chunks of at most
``_BLOCK_S / 0.4 s`` segments wait in the queue, and a file in flight keeps only its logits
(``n_segments * K`` floats), so a 10-hour file needs a few megabytes besides the queue.

Every front-end setting (normalisation, mu, segment length, padding, tail, scoring hop,
averaging) comes from the model file, never from defaults.

Durability, resume and the output folder are described in :mod:`ser_cli.reports`.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import os
import platform
import queue
import shlex
import sys
import threading
import time
import warnings
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePath
from typing import Any

import numpy as np

from ser_cli import __version__, reports
from ser_cli.errors import AudioError, ConfigError, ModelFileError, SerError

__all__ = ["AnalyzeResult", "analyze", "default_batch_size", "default_model_path"]

_BLOCK_S = 8.0  # seconds of source audio decoded per block: 20 scoring segments per chunk
_QUEUE_CHUNKS_PER_JOB = 4
_SAMPLE_RATE = 16000
_PLAIN_PROGRESS_EVERY_S = 10.0


# ----------------------------------------------------------------------------------------------
# Public API


@dataclass
class AnalyzeResult:
    """What :func:`analyze` returns.

    Attributes
    ----------
    out : Path
        The output folder.
    utterances : list of dict
        Every row of ``utterances.json`` (all files recorded in ``out``, sorted by file).
    n_ok, n_error : int
        Rows with ``status`` ``ok`` / ``error``.
    summary : dict
        The content of ``summary.json``.
    interrupted : bool
        True when the run was stopped by Ctrl-C (the reports hold what was finished).
    """

    out: Path
    utterances: list[dict[str, Any]]
    n_ok: int
    n_error: int
    summary: dict[str, Any]
    interrupted: bool = False


def default_model_path() -> Path:
    """The bundled model, ``ser_cli/models/default.pt``.

    Raises
    ------
    ModelFileError
        The package was installed without it.
    """
    path = Path(str(importlib.resources.files("ser_cli") / "models" / "default.pt"))
    if not path.is_file():
        raise ModelFileError(
            f"{path}: no bundled model in this installation; pass --model PATH "
            "(a model written by 'ser-cli train')"
        )
    return path


#: Segments per model call by device type. On the CPU, batch 8 runs analyze 1.4-1.7x faster than
#: batch 32 in fp32 and bf16 (benchmarks/RESULTS.md, "analyze"): a small batch's activations stay
#: in the caches. GPUs want large batches.
_DEFAULT_BATCH = {"cpu": 8, "cuda": 32}


def default_batch_size(device: str = "auto") -> int:
    """Segments per model call for ``device`` (``"auto"``, ``"cpu"``, ``"cuda[:N]"``).

    >>> default_batch_size("cpu"), default_batch_size("cuda:1")
    (8, 32)
    """
    from ser_cli.model import resolve_device

    kind = resolve_device(device).type if device == "auto" else str(device).split(":")[0]
    return _DEFAULT_BATCH.get(kind, _DEFAULT_BATCH["cpu"])


def analyze(
    paths,
    out: str | os.PathLike[str] = "ser-out",
    *,
    model: str | os.PathLike[str] | None = None,
    device: str = "auto",
    batch_size: int | None = None,
    jobs: int | None = None,
    precision: str = "auto",
    overwrite: bool = False,
    plot: bool = False,
    progress: bool = True,
    shard=None,
    backend=None,
    shared_trunk: bool = False,
) -> AnalyzeResult:
    """Score every audio file under ``paths`` and write reports into ``out``.

    Parameters
    ----------
    paths : str, path-like, or iterable of them
        Audio files and directories (walked recursively; files with an audio extension are
        taken, others counted as skipped). A file named explicitly is always scored.
    out : path-like
        Output folder (created). See :mod:`ser_cli.reports` for its files and columns.
    model : path-like, optional
        A ser-cli model file; default the bundled ``ser_cli/models/default.pt``.
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    batch_size : int, optional
        Segments per model call (>= 1), packed across files. Default
        :func:`default_batch_size`: 8 on the CPU (1.4-1.7x faster than 32 there, in fp32 and
        bf16), 32 on CUDA.
    jobs : int, optional
        Decoder threads (>= 1); default ``min(2, usable cores)``.
    precision : {"auto", "fp32", "bf16"}
        Model arithmetic; ``"auto"`` picks bf16 only where the hardware has it natively.
    overwrite : bool
        Discard the journal and reports already in ``out`` and start afresh. Without it, files
        already finished (same path, size and mtime) are skipped and the run adds the rest.
    plot : bool
        Also write ``out/plots/<path as given>.png`` per scored file (needs matplotlib).
    progress : bool
        Show progress on stderr (a rich bar on a terminal, plain lines otherwise).
    shard : str or ser_cli.sharding.Shard, optional
        ``"i/n"`` (1-based): score only the files of shard ``i`` of ``n``, chosen by a hash of
        each file's path relative to its input (see :mod:`ser_cli.sharding`); join the outputs
        of all shards with :func:`ser_cli.merge.merge`.
    backend : optional
        Where files are scored. None: this process (decoder threads, batches packed across
        files). An object with ``name`` and ``run(todo, commit, **model_settings)``, e.g.
        :class:`ser_cli.distributed.DaskBackend`: one task per file on a cluster; the model
        is then loaded here on the CPU only to read its settings, ``device`` is resolved on
        each worker, and ``precision="auto"`` is resolved here, so all workers agree.
    shared_trunk : bool
        Run the convolutional trunk once per file (in blocks of 20 s) and the head on each
        2 s window of its map, instead of once per segment (:mod:`ser_cli.trunk`,
        docs/shared_trunk.md): about 4-5x fewer convolution FLOPs. Only for models trained
        with ``normalization="utterance"``; the segment scores differ slightly from
        per-segment scoring (real neighbouring frames instead of zero padding at segment
        edges). Local backend only.

    Returns
    -------
    AnalyzeResult

    Raises
    ------
    ModelFileError
        Missing, corrupt or foreign model file (or no bundled model).
    ConfigError
        Bad ``batch_size``/``jobs``/``device``/``precision``; ``out`` holds results of another
        model or other settings (without ``overwrite``); ``plot`` without matplotlib;
        ``shared_trunk`` with a model not trained with utterance normalisation (naming the
        model file) or with a ``backend``.
    SerError
        Another run holds the lock on ``out``.
    KeyboardInterrupt
        After Ctrl-C, once the finished files are recorded and the reports are rendered.

    Examples
    --------
    >>> result = analyze(["recordings/"], "ser-out", model="emodb4.pt")  # doctest: +SKIP
    >>> result.n_ok, result.utterances[0]["label"]  # doctest: +SKIP
    (12, 'angry')
    """
    t_start = time.perf_counter()
    if batch_size is None:
        batch_size = default_batch_size(device)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size={batch_size!r} must be an integer >= 1")
    if jobs is None:
        jobs = max(1, min(2, _usable_cores()))
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ConfigError(f"jobs={jobs!r} must be an integer >= 1")
    if plot:
        _require_matplotlib()

    from ser_cli.model import keep_freed_memory, load_model, resolve_device, resolve_precision

    keep_freed_memory()
    if shard is not None:
        from ser_cli.sharding import parse_shard

        shard = parse_shard(shard)
    model_path = Path(model) if model is not None else default_model_path()
    torch_device = resolve_device(device if backend is None else "cpu")
    resolved_precision = resolve_precision(precision, torch_device)
    loaded = load_model(model_path, torch_device)
    if shared_trunk:
        from ser_cli.trunk import require_shared_trunk

        require_shared_trunk(loaded)
        if backend is not None:
            raise ConfigError("shared_trunk=True works with the local backend only")
    scorer = (_Scorer(loaded, torch_device, resolved_precision, shared_trunk=shared_trunk)
              if backend is None else None)

    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{out}: cannot create the output folder ({exc.strerror})") from exc
    if not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a folder")

    run_settings = {
        "model_sha256": loaded.sha256,
        "classes": list(loaded.classes),
        "precision": resolved_precision,
    }
    if shared_trunk:  # its segment scores differ slightly: do not mix with per-segment runs
        run_settings["shared_trunk"] = True
    settings = {
        "shared_trunk": bool(shared_trunk),
        "backend": "local" if backend is None else backend.name,
        "device": str(torch_device) if backend is None else device,
        "precision": resolved_precision,
        "batch_size": batch_size,
        "jobs": jobs,
        "plot": plot,
        "audio_config": _config_dict(_audio_config()),
        "feature_config": _config_dict(loaded.feature_config),
        "segment_config": _config_dict(loaded.segment_config),
        "scoring_config": _config_dict(loaded.scoring_config),
    }

    with reports.OutputLock(out):
        reports.prepare_output(out, run_settings, overwrite=overwrite)
        files, failed_inputs, scan_stats = _collect(paths)
        if shard is not None:
            from ser_cli.sharding import select

            roots = [paths] if isinstance(paths, (str, bytes, os.PathLike)) else list(paths)
            mine = select(shard, roots, [d for d, _ in files] + [d for d, _, _ in failed_inputs])
            files = [f for f in files if f[0] in mine]
            failed_inputs = [f for f in failed_inputs if f[0] in mine]
        with reports.Journal(out) as journal:
            todo: list[tuple[str, reports.FileKey]] = []
            n_resumed = 0
            for display, key in files:
                if journal.is_finished(key):
                    n_resumed += 1
                else:
                    todo.append((display, key))
            committed: list[dict[str, Any]] = []
            for display, key, reason in failed_inputs:
                if journal.is_finished(key):  # already recorded as missing
                    n_resumed += 1
                    continue
                record = _error_record(display, key, reason)
                journal.append(record)
                committed.append(record)
            display_progress = _make_progress(progress, todo)
            interrupted = False
            try:
                with display_progress:
                    if backend is None:
                        _Pipeline(
                            scorer=scorer,
                            todo=todo,
                            journal=journal,
                            committed=committed,
                            batch_size=batch_size,
                            jobs=jobs,
                            progress=display_progress,
                        ).run()
                    else:

                        def commit(record: dict[str, Any], duration_s: float) -> None:
                            journal.append(record)
                            committed.append({k: v for k, v in record.items() if k != "segments"})
                            display_progress.advance(duration_s, ok=record["status"] == "ok")

                        backend.run(todo, commit, model_path=str(model_path),
                                    model_sha256=loaded.sha256, device=device,
                                    precision=resolved_precision, batch_size=batch_size)
            except KeyboardInterrupt:
                interrupted = True
            utterances = reports.render_reports(out, journal, loaded.classes)
            if plot and not interrupted:
                _plot_all(out, journal, loaded, {r["key"]["path"] for r in committed})
        n_ok = sum(1 for u in utterances if u["status"] == "ok")
        n_error = len(utterances) - n_ok
        run_ok = [r for r in committed if r["status"] == "ok"]
        run_audio_s = sum(r["duration_s"] for r in run_ok)
        wall_s = time.perf_counter() - t_start
        summary = {
            "files": {
                "total": len(utterances),
                "ok": n_ok,
                "error": n_error,
                "skipped_non_audio": scan_stats.skipped_non_audio,
                "skipped_duplicates": scan_stats.duplicates,
                "unreadable_entries": scan_stats.errors,
            },
            "audio_hours": _round(
                sum(u["duration_s"] or 0.0 for u in utterances if u["status"] == "ok") / 3600
            ),
            "this_run": {
                "scored": len(run_ok),
                "failed": len(committed) - len(run_ok),
                "resumed_skipped": n_resumed,
                "interrupted": interrupted,
                "audio_hours": _round(run_audio_s / 3600),
                "wall_s": _round(wall_s),
                "x_real_time": _round(run_audio_s / wall_s) if wall_s > 0 else None,
            },
            "wall_s": _round(wall_s),
            "x_real_time": _round(run_audio_s / wall_s) if wall_s > 0 else None,
            "model": {
                "name": loaded.name,
                "sha256": loaded.sha256,
                "path": str(model_path),
                "classes": list(loaded.classes),
            },
            "versions": _versions(),
            "command": shlex.join(sys.argv),
            "shard": None if shard is None else str(shard),
            "settings": settings,
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        reports.write_summary(out, summary)
    result = AnalyzeResult(out, utterances, n_ok, n_error, summary, interrupted)
    if interrupted:
        raise KeyboardInterrupt
    return result


# ----------------------------------------------------------------------------------------------
# Inputs


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _collect(paths) -> tuple[list[tuple[str, reports.FileKey]], list[tuple[str, reports.FileKey, str]], Any]:
    """Scan inputs: (audio files to score, given paths that do not exist, scan counters)."""
    from ser_cli.audio import ScanStats, scan

    if isinstance(paths, (str, bytes, os.PathLike)):
        paths = [paths]
    given = [os.fspath(p) for p in paths]
    if not given:
        raise ConfigError("paths: no input files or folders given")
    failed: list[tuple[str, reports.FileKey, str]] = []
    existing = []
    for p in given:
        if os.path.exists(p):
            existing.append(p)
        else:
            failed.append((p, reports.file_key(p), f"{p}: no such file or folder"))
    stats = ScanStats()
    files: list[tuple[str, reports.FileKey]] = []
    seen: set[str] = set()
    for display in scan(existing, stats=stats):
        key = reports.file_key(display)
        if key.path in seen:
            continue
        seen.add(key.path)
        files.append((display, key))
    return files, failed, stats


def _audio_config():
    from ser_cli.audio import AudioConfig

    return AudioConfig(block_s=_BLOCK_S)


def _config_dict(config: Any) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()}


def _round(x: float) -> float:
    return round(float(x), 6)


def _versions() -> dict[str, str]:
    import torch

    return {
        "ser_cli": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def _error_record(display: str, key: reports.FileKey, reason: str) -> dict[str, Any]:
    return {
        "file": display,
        "key": key.as_dict(),
        "status": "error",
        "error": reason,
        "duration_s": None,
        "n_segments": None,
        "label": None,
        "scores": None,
    }


# ----------------------------------------------------------------------------------------------
# The model


class _Scorer:
    """The loaded model, prepared for inference: frozen TorchScript, ``(n, 400, 200) -> (n, K)``."""

    def __init__(self, loaded, device, precision: str, shared_trunk: bool = False):
        import torch

        from ser_cli.model import autocast
        from ser_cli.trunk import PRESERVED_METHODS, require_shared_trunk

        self.shared_trunk = shared_trunk
        self.geometry = require_shared_trunk(loaded) if shared_trunk else None

        self.torch = torch
        self.loaded = loaded
        self.device = device
        self.precision = precision
        self._autocast = lambda: autocast(device, precision)
        module = loaded.module
        with warnings.catch_warnings():
            # torch 2.13 deprecates TorchScript and warns on each jit call; the format is kept
            # on purpose (see ser_cli.model).
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            try:
                # channels_last weights, then freeze (folds batch norm into the convolutions):
                # together about 2x the segments/s of the plain scripted module on this AVX2
                # CPU (benchmarks/RESULTS.md, "analyze"), same outputs to float32 rounding.
                module = torch.jit.freeze(
                    module.eval().to(memory_format=torch.channels_last),
                    # shared trunk: keep the exported trunk_map / window_logits methods
                    preserved_attrs=PRESERVED_METHODS if shared_trunk else None,
                )
            except Exception:  # noqa: BLE001 - an unfreezable module still scores correctly
                module = loaded.module
        self.module = module
        self.classes = list(loaded.classes)
        fc = loaded.feature_config
        self.normalization = fc.normalization
        self.mu = fc.mu
        self.fmax = fc.fmax
        self.segment_config = loaded.segment_config
        self.hop_frames = loaded.segment_config.score_hop_frames
        self.scoring_config = loaded.scoring_config

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """``batch`` ``(n, 400, 200)`` float32 normalised segments -> ``(n, K)`` float32 logits."""
        torch = self.torch
        x = torch.from_numpy(batch).unsqueeze(1).to(self.device)
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), self._autocast(), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            logits = self.module(x)
        return logits.float().cpu().numpy()

    def score_block(self, block) -> np.ndarray:
        """Shared trunk: a :class:`ser_cli.trunk.TrunkBlock` -> ``(k, K)`` float32 logits."""
        from ser_cli.trunk import block_logits

        with self.torch.inference_mode(), self._autocast():
            return block_logits(self.module, block, self.geometry.window_columns, self.device)


# ----------------------------------------------------------------------------------------------
# The pipeline


@dataclass
class _Chunk:
    fid: int
    segments: np.ndarray  # (n, 400, 200) float32, normalised
    starts: np.ndarray  # (n,) int64 start frames


@dataclass
class _TrunkChunk:
    fid: int
    block: Any  # ser_cli.trunk.TrunkBlock: normalised frames and the windows to score


@dataclass
class _End:
    fid: int
    n_samples: int


@dataclass
class _Failed:
    fid: int
    reason: str


@dataclass
class _Crashed:
    exc: BaseException


@dataclass
class _WorkerDone:
    pass


@dataclass
class _FileState:
    display: str
    key: reports.FileKey
    starts: list[np.ndarray] = field(default_factory=list)
    logits: list[np.ndarray] = field(default_factory=list)
    outstanding: int = 0  # rows received and not yet scored
    n_samples: int | None = None  # set when the decoder reached the end


def _produce(path: str, fid: int, scorer: _Scorer, put, stop: threading.Event) -> None:
    """Decode one file and put its normalised segments, then an _End (or a _Failed)."""
    from ser_cli import audio, features
    from ser_cli.segmentation import SegmentStream

    try:
        spec_stream = features.SpectrogramStream(threads=1, fmax=scorer.fmax)
        seg_stream = SegmentStream(scorer.hop_frames, scorer.segment_config)
        # "utterance" normalisation: frames are normalised before segmentation (held until
        # their 60 s normalisation block is decided); the shared trunk takes them in blocks.
        by_utterance = scorer.normalization == "utterance"
        norm_stream = features.UtteranceNormalizer(mu=scorer.mu) if by_utterance else None
        trunk_stream = None
        if getattr(scorer, "shared_trunk", False):
            from ser_cli.trunk import TrunkBlockStream

            trunk_stream = TrunkBlockStream(scorer.geometry, scorer.hop_frames, scorer.segment_config)

        def emit(frames: np.ndarray | None) -> None:  # None: the end of the file
            if norm_stream is not None:
                frames = norm_stream.push(frames) if frames is not None else norm_stream.close()
            if trunk_stream is not None:
                for item in trunk_stream.push(frames):
                    put(_TrunkChunk(fid, item))
                return
            segments, starts = seg_stream.push(frames)
            if len(starts):
                if not by_utterance:
                    segments = features.normalize(segments, scorer.normalization, mu=scorer.mu)
                put(_Chunk(fid, segments, starts))

        n_samples = 0
        for block in audio.stream(path, _SAMPLE_RATE, _BLOCK_S):
            if stop.is_set():
                return
            n_samples += len(block)
            emit(spec_stream.push(block))
        if norm_stream is not None:
            emit(None)
        if trunk_stream is not None:
            for item in trunk_stream.close():
                put(_TrunkChunk(fid, item))
        else:
            segments, starts = seg_stream.close()
            if len(starts):
                if not by_utterance:
                    segments = features.normalize(segments, scorer.normalization, mu=scorer.mu)
                put(_Chunk(fid, segments, starts))
        if spec_stream.n_frames == 0:
            raise AudioError(
                f"{path}: too short to score ({n_samples / _SAMPLE_RATE:.3f} s; one 40 ms "
                "frame is the minimum)"
            )
        put(_End(fid, n_samples))
    except SerError as exc:
        put(_Failed(fid, str(exc)))


class _Pipeline:
    def __init__(self, *, scorer, todo, journal, committed, batch_size, jobs, progress):
        self.scorer = scorer
        self.todo = todo
        self.journal = journal
        self.committed = committed
        self.batch_size = batch_size
        self.jobs = min(jobs, max(1, len(todo)))
        self.progress = progress
        self.queue: queue.Queue = queue.Queue(maxsize=_QUEUE_CHUNKS_PER_JOB * self.jobs)
        self.stop = threading.Event()
        self.files: dict[int, _FileState] = {}
        self.pending: deque[_Chunk] = deque()  # chunks received, rows not yet scored
        self.pending_rows = 0

    # -- producer side --

    def _put(self, item) -> None:
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _worker(self, tasks: queue.SimpleQueue) -> None:
        try:
            while not self.stop.is_set():
                try:
                    fid, path = tasks.get_nowait()
                except queue.Empty:
                    break
                _produce(path, fid, self.scorer, self._put, self.stop)
        except BaseException as exc:  # a bug: hand it to the main thread, which re-raises
            self._put(_Crashed(exc))
        finally:
            self._put(_WorkerDone())

    # -- consumer side --

    def run(self) -> None:
        if not self.todo:
            return
        tasks: queue.SimpleQueue = queue.SimpleQueue()
        for fid, (display, key) in enumerate(self.todo):
            self.files[fid] = _FileState(display, key)
            tasks.put((fid, display))
        threads = [
            threading.Thread(target=self._worker, args=(tasks,), name=f"ser-decode-{i}", daemon=True)
            for i in range(self.jobs)
        ]
        for t in threads:
            t.start()
        try:
            running = len(threads)
            while running:
                item = self.queue.get()
                if isinstance(item, _Chunk):
                    if item.fid in self.files:
                        self.pending.append(item)
                        self.pending_rows += len(item.starts)
                        self.files[item.fid].outstanding += len(item.starts)
                        while self.pending_rows >= self.batch_size:
                            self._score_batch()
                elif isinstance(item, _TrunkChunk):
                    if item.fid in self.files:  # shared trunk: one model call per block
                        state = self.files[item.fid]
                        state.logits.append(self.scorer.score_block(item.block))
                        state.starts.append(item.block.starts)
                elif isinstance(item, _End):
                    state = self.files[item.fid]
                    state.n_samples = item.n_samples
                    if state.outstanding == 0:
                        self._finish(item.fid)
                elif isinstance(item, _Failed):
                    self._fail(item.fid, item.reason)
                elif isinstance(item, _WorkerDone):
                    running -= 1
                elif isinstance(item, _Crashed):
                    raise item.exc
            while self.pending_rows:
                self._score_batch()
        finally:
            self.stop.set()
            for t in threads:
                t.join()

    def _score_batch(self) -> None:
        """Score the first ``batch_size`` pending rows (fewer at the end) and route the logits."""
        take = min(self.batch_size, self.pending_rows)
        parts: list[tuple[int, np.ndarray, np.ndarray]] = []
        need = take
        while need:
            chunk = self.pending[0]
            n = len(chunk.starts)
            if n <= need:
                self.pending.popleft()
                parts.append((chunk.fid, chunk.segments, chunk.starts))
                need -= n
            else:
                parts.append((chunk.fid, chunk.segments[:need], chunk.starts[:need]))
                self.pending[0] = _Chunk(chunk.fid, chunk.segments[need:], chunk.starts[need:])
                need = 0
        self.pending_rows -= take
        pieces = [p[1] for p in parts]
        if take < self.batch_size:
            # Pad the last batch: with a fixed batch shape a segment's logits are bit-for-bit
            # the same whichever rows share its batch, so reports do not depend on timing.
            pieces.append(np.zeros((self.batch_size - take, *pieces[0].shape[1:]), np.float32))
        batch = pieces[0] if len(pieces) == 1 else np.concatenate(pieces)
        logits = self.scorer(np.ascontiguousarray(batch, dtype=np.float32))
        row = 0
        for fid, segments, starts in parts:
            n = len(starts)
            state = self.files[fid]
            state.logits.append(logits[row : row + n])
            state.starts.append(starts)
            state.outstanding -= n
            row += n
            if state.outstanding == 0 and state.n_samples is not None:
                self._finish(fid)

    def _fail(self, fid: int, reason: str) -> None:
        state = self.files.pop(fid)
        if state.outstanding:
            kept = deque(c for c in self.pending if c.fid != fid)
            self.pending_rows -= state.outstanding
            self.pending = kept
        self._commit(_error_record(state.display, state.key, reason), 0.0)

    def _finish(self, fid: int) -> None:
        state = self.files.pop(fid)
        record = _ok_record(state.display, state.key, np.concatenate(state.logits),
                            np.concatenate(state.starts), state.n_samples, self.scorer)
        self._commit(record, state.n_samples / _SAMPLE_RATE)

    def _commit(self, record: dict[str, Any], duration_s: float) -> None:
        self.journal.append(record)
        self.committed.append({k: v for k, v in record.items() if k != "segments"})
        self.progress.advance(duration_s, ok=record["status"] == "ok")


def _ok_record(display: str, key: reports.FileKey, logits: np.ndarray, starts: np.ndarray,
               n_samples: int, scorer: _Scorer) -> dict[str, Any]:
    """The journal record of a scored file: ``logits`` ``(n, K)``, ``starts`` ``(n,)`` frames."""
    from ser_cli.scoring import segment_probabilities, utterance_scores
    from ser_cli.segmentation import frames_to_seconds

    probs = segment_probabilities(logits)
    utterance = utterance_scores(logits, scorer.scoring_config)
    seg_frames = scorer.segment_config.segment_frames
    spans = [frames_to_seconds(int(s), seg_frames, n_samples) for s in starts]
    return {
        "file": display,
        "key": key.as_dict(),
        "status": "ok",
        "error": "",
        "duration_s": _round(n_samples / _SAMPLE_RATE),
        "n_segments": len(starts),
        "label": scorer.classes[int(np.argmax(utterance))],
        "scores": [reports.round_score(p) for p in utterance],
        "segments": {
            "start_s": [_round(a) for a, _ in spans],
            "end_s": [_round(b) for _, b in spans],
            "scores": [[reports.round_score(p) for p in row] for row in probs],
        },
    }


class _Collected(list):
    """A stand-in for the journal and the progress display that only collects records."""

    def append(self, record: dict[str, Any]) -> None:  # the journal's interface
        super().append(record)

    def advance(self, audio_s: float, ok: bool) -> None:  # the progress display's interface
        return None


def score_files(items, scorer: _Scorer, *, batch_size: int = 32, jobs: int = 1) -> list[dict[str, Any]]:
    """Score a group of files into their journal records with the :func:`analyze` pipeline.

    Used by the scale-out backends (:mod:`ser_cli.distributed`), one task per group of files:
    the same pipeline as a local run (segments of all files of the group packed into model calls
    of exactly ``batch_size`` rows, the last zero-padded), so every record is bit-for-bit the one
    :func:`analyze` journals for the file on the same device and precision.

    Parameters
    ----------
    items : list of (str, str, reports.FileKey)
        ``(path to open, path as written in the reports, identity to journal)`` per file. Error
        messages name the second.
    scorer : _Scorer
        ``_Scorer(load_model(model, device), device, precision)``; build it once per process.
    batch_size : int
        Rows per model call (>= 1); the value of the run the records join.
    jobs : int
        Decoder threads.

    Returns
    -------
    list of dict
        One journal record per file (``status`` ``ok`` with scores, or ``error`` with the
        reason), in the order they finished.

    Raises
    ------
    Only bugs: a :class:`SerError` of a file becomes its error record.

    Examples
    --------
    >>> records = score_files([("/abs/a.wav", "a.wav", file_key("a.wav"))], scorer)  # doctest: +SKIP
    >>> records[0]["status"], records[0]["label"]  # doctest: +SKIP
    ('ok', 'angry')
    """
    collected = _Collected()
    todo = [(os.fspath(opened), key) for opened, _, key in items]
    _Pipeline(scorer=scorer, todo=todo, journal=collected, committed=[], batch_size=batch_size,
              jobs=jobs, progress=collected).run()
    shown = {key.path: (os.fspath(opened), display) for opened, display, key in items}
    for record in collected:
        opened, display = shown[record["key"]["path"]]
        record["file"] = display
        if record["error"]:
            record["error"] = record["error"].replace(opened, display)
    return list(collected)


# ----------------------------------------------------------------------------------------------
# Progress


class _NoProgress:
    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return None

    def advance(self, audio_s: float, ok: bool) -> None:
        return None


class _PlainProgress(_NoProgress):
    """One line on stderr every ``_PLAIN_PROGRESS_EVERY_S`` seconds, and one at the end."""

    def __init__(self, n_files: int, total_audio_s: float):
        self.n_files = n_files
        self.total_audio_s = total_audio_s
        self.done = 0
        self.errors = 0
        self.audio_s = 0.0
        self.t0 = time.perf_counter()
        self.last = self.t0

    def line(self) -> str:
        elapsed = time.perf_counter() - self.t0
        rate = self.audio_s / elapsed if elapsed > 0 else 0.0
        left = max(self.total_audio_s - self.audio_s, 0.0)
        eta = _format_s(left / rate) if rate > 0 and self.done < self.n_files else "-"
        return (
            f"ser-cli analyze: {self.done}/{self.n_files} files ({self.errors} failed), "
            f"{self.audio_s / 3600:.3f} h audio, {rate:.1f}x real time, ETA {eta}"
        )

    def advance(self, audio_s: float, ok: bool) -> None:
        self.done += 1
        self.errors += 0 if ok else 1
        self.audio_s += audio_s
        now = time.perf_counter()
        if now - self.last >= _PLAIN_PROGRESS_EVERY_S:
            self.last = now
            print(self.line(), file=sys.stderr, flush=True)

    def __exit__(self, *exc_info):
        print(self.line(), file=sys.stderr, flush=True)


class _RichProgress(_NoProgress):
    def __init__(self, n_files: int, total_audio_s: float):
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn("[bold]analyze"),
            BarColumn(),
            TextColumn("{task.fields[files]}/{task.fields[n_files]} files"),
            TextColumn("{task.fields[hours]:.3f}/{task.fields[total_hours]:.3f} h audio"),
            TextColumn("{task.fields[rate]:.1f}x real time"),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self.n_files = n_files
        self.files = 0
        self.audio_s = 0.0
        self.t0 = time.perf_counter()
        self.task = self.progress.add_task(
            "analyze",
            total=max(total_audio_s, 1e-9),
            files=0,
            n_files=n_files,
            hours=0.0,
            total_hours=total_audio_s / 3600,
            rate=0.0,
        )

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc_info):
        return self.progress.__exit__(*exc_info)

    def advance(self, audio_s: float, ok: bool) -> None:
        self.files += 1
        self.audio_s += audio_s
        elapsed = time.perf_counter() - self.t0
        self.progress.update(
            self.task,
            advance=audio_s,
            files=self.files,
            hours=self.audio_s / 3600,
            rate=self.audio_s / elapsed if elapsed > 0 else 0.0,
        )


def _format_s(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _make_progress(enabled: bool, todo: list[tuple[str, reports.FileKey]]):
    if not enabled:
        return _NoProgress()
    from ser_cli.audio import info

    total_audio_s = 0.0
    for display, _ in todo:
        with contextlib.suppress(SerError):
            total_audio_s += info(display).duration_s
    if sys.stderr.isatty():
        return _RichProgress(len(todo), total_audio_s)
    return _PlainProgress(len(todo), total_audio_s)


# ----------------------------------------------------------------------------------------------
# Plots


def _require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise ConfigError(
            "plot=True needs matplotlib, which is not installed: pip install 'ser-cli[plot]'"
        ) from exc


def plot_path(out: str | os.PathLike[str], file: str) -> Path:
    """``out/plots/<file as given, sanitised>.png``: no anchor, ``..`` becomes ``__``.

    >>> plot_path("ser-out", "../rec/a.wav").as_posix()
    'ser-out/plots/__/rec/a.wav.png'
    """
    parts = [p for p in PurePath(file).parts if p not in ("/", "\\", ".", "")]
    parts = ["__" if p == ".." else p.replace(":", "_") for p in parts]
    if PurePath(file).anchor:
        parts = [p for p in parts if p != PurePath(file).anchor]
    return Path(out, reports.PLOTS_DIR, *parts[:-1], (parts[-1] if parts else "_") + ".png")


def _plot_all(out: Path, journal: reports.Journal, loaded, fresh: set[str]) -> None:
    """Plot files scored in this run, and earlier files whose PNG is missing."""
    for record in journal.iter_latest():
        if record["status"] != "ok":
            continue
        target = plot_path(out, record["file"])
        if record["key"]["path"] in fresh or not target.exists():
            _plot_one(target, record, loaded.classes)


def _plot_one(target: Path, record: dict[str, Any], classes: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    seg = record["segments"]
    centres = [(a + b) / 2 for a, b in zip(seg["start_s"], seg["end_s"])]
    scores = np.asarray(seg["scores"], dtype=float).reshape(len(centres), len(classes))
    fig = Figure(figsize=(8, 3.2), dpi=100)
    ax = fig.add_subplot()
    for k, name in enumerate(classes):
        ax.plot(centres, scores[:, k], marker="." if len(centres) < 50 else None, label=name)
    ax.set_xlabel("time (s, segment centre)")
    ax.set_ylabel("probability")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlim(0, max(record["duration_s"], 1e-3))
    ax.set_title(f"{record['file']}: {record['label']}", fontsize=10)
    ax.legend(loc="upper right", fontsize=8, ncol=min(len(classes), 4))
    fig.tight_layout()
    target.parent.mkdir(parents=True, exist_ok=True)
    with reports.atomic_writer(target, "wb") as fh:
        fig.savefig(fh, format="png")

