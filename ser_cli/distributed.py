"""Scale-out on a Dask cluster: ``ser-cli analyze ... --backend dask``.

Why Dask (``dask.distributed``): it is pure Python and pip-installable (``pip install
'ser-cli[dask]'``); one API covers a laptop (``LocalCluster``), machines reachable by SSH
(``SSHCluster``) and batch schedulers (``dask-jobqueue``: SLURM, PBS, SGE, LSF) without a separate
head service to run; and its futures map one-to-one onto ser-cli's unit of work.

How a run goes
--------------
The driver (the process running :func:`ser_cli.analyze`) scans the inputs, takes the lock on
``OUT``, skips files already in the journal and submits the remaining files as tasks, each a
group of consecutive files of about ``task_mb`` MB (one task per file when files are large), at
most ``window`` tasks at a time. A task runs on a worker: it loads the model once per worker
process (a cache keyed by model path, sha256, device and precision; the sha256 is checked
against the driver's, so every worker scores with the same weights), resolves ``device`` there
(``auto`` takes the worker's GPU when it has one), and decodes, extracts features and scores its
files with :func:`ser_cli.analysis.score_files` -- the local pipeline, so segments of the group
are packed into full batches -- and returns one journal record per file. Only the driver
writes: it appends each record to the journal (fsync'd) when its task returns, so a record
reaches the journal only when complete, and renders the same reports as a local run. A worker
that dies mid-task (killed, out of memory, node lost) has its tasks rescheduled by Dask; files
whose task killed ``distributed.scheduler.allowed-failures`` workers (3 by default) are
reported and left out of the journal, so a rerun retries them. The driver records each file at
most once (deduplicated by the file's absolute path), whatever Dask does.

Workers must see the input files at the same absolute paths as the driver (a shared file
system) and must have ser-cli and the model file at the same path. Records are bit-for-bit those
of a local run on the same device type and precision: every model call has ``batch_size`` rows,
as in the local pipeline, and a segment's logits do not depend on its batch companions.

Importing this module does not import dask; :class:`DaskBackend` does, when it runs, and says
how to install it when it is missing.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

from ser_cli import reports
from ser_cli.errors import ConfigError, ModelFileError, SerError

__all__ = ["DaskBackend", "score_on_worker", "require_dask"]

_WORKER_CACHE: dict[tuple[str, str, str, str], Any] = {}
_WORKER_LOCK = threading.Lock()


def require_dask():
    """Import and return ``dask.distributed``, or raise a :class:`ConfigError` saying how to get it.

    Raises
    ------
    ConfigError
        dask.distributed is not installed.
    """
    try:
        import distributed
    except ImportError as exc:
        raise ConfigError(
            "backend 'dask' needs dask.distributed, which is not installed: "
            "pip install 'ser-cli[dask]'"
        ) from exc
    return distributed


def _worker_scorer(model_path: str, model_sha256: str, device: str, precision: str):
    """The worker process's scorer for this model, loaded and frozen once per process."""
    cache_key = (model_path, model_sha256, device, precision)
    with _WORKER_LOCK:
        scorer = _WORKER_CACHE.get(cache_key)
        if scorer is None:
            from ser_cli.analysis import _Scorer
            from ser_cli.model import keep_freed_memory, load_model, resolve_device

            keep_freed_memory()
            torch_device = resolve_device(device)
            loaded = load_model(model_path, torch_device)
            if loaded.sha256 != model_sha256:
                raise ModelFileError(
                    f"{model_path}: on this worker the model file has sha256 "
                    f"{loaded.sha256[:12]}..., the driver's has {model_sha256[:12]}...; "
                    "workers must see the same model file"
                )
            scorer = _Scorer(loaded, torch_device, precision)
            _WORKER_CACHE[cache_key] = scorer
        return scorer


def score_on_worker(items: list[tuple[str, dict[str, Any]]], model_path: str, model_sha256: str,
                    device: str, precision: str, batch_size: int) -> list[dict[str, Any]]:
    """One task: score a group of files and return their journal records.

    ``items`` are ``(file as the driver writes it, FileKey as a dict)``; the worker opens the
    absolute path of the key. Runs wherever Dask puts it; a :class:`SerError` of a file becomes
    its error record, as in a local run.

    Examples
    --------
    >>> score_on_worker([("a.wav", reports.file_key("a.wav").as_dict())], "m.pt", sha, "cpu",
    ...                 "fp32", 32)  # doctest: +SKIP
    """
    from ser_cli.analysis import score_files

    scorer = _worker_scorer(model_path, model_sha256, device, precision)
    keys = [(display, reports.FileKey(k["path"], int(k["size"]), int(k["mtime_ns"])))
            for display, k in items]
    return score_files([(key.path, display, key) for display, key in keys], scorer,
                       batch_size=batch_size)


def _task_name(group: list[tuple[str, reports.FileKey]]) -> str:
    import hashlib

    digest = hashlib.sha1()
    for _, key in group:
        digest.update(key.path.encode("utf-8", "surrogateescape") + b"\0")
    return "ser-score-" + digest.hexdigest()


def _groups(todo: list[tuple[str, reports.FileKey]], target_bytes: int, max_files: int):
    """Consecutive files in groups of about ``target_bytes`` (at least one file each)."""
    group: list[tuple[str, reports.FileKey]] = []
    size = 0
    for item in todo:
        group.append(item)
        size += max(item[1].size, 0)
        if size >= target_bytes or len(group) >= max_files:
            yield group
            group, size = [], 0
    if group:
        yield group


class DaskBackend:
    """Score files on a Dask cluster; pass as ``analyze(..., backend=DaskBackend(...))``.

    Parameters
    ----------
    scheduler : str or distributed.Client, optional
        Address of a running scheduler (``tcp://host:8786``, or a scheduler file path ending in
        ``.json``), or a connected ``Client``. Default: start a ``LocalCluster``.
    n_workers : int, optional
        Worker processes of the ``LocalCluster`` (one thread each); default one per usable
        core. Only without ``scheduler``.
    task_mb : float
        Audio per task, in MB of input files (default 8, about 4 minutes of 16 kHz 16-bit
        audio). A task scores a group of consecutive files with the local pipeline, packing
        their segments into full batches; one task per short file would zero-pad every file's
        last batch (EMO-DB's 2-3 s clips fill 2-7 of 32 rows). On small inputs groups shrink
        so that every worker thread gets at least two tasks.
    max_files : int
        At most this many files per task (default 256).
    window : int, optional
        Tasks in flight at a time; default ``4 x`` the cluster's worker threads (at least 8).
        Bounds the scheduler's memory on archives of millions of files.
    on_result : callable, optional
        ``on_result(record)`` called on the driver after each record is journaled (for tests
        and custom progress).

    Raises
    ------
    ConfigError
        Bad arguments, or dask.distributed is not installed.

    Examples
    --------
    >>> from ser_cli import analyze
    >>> analyze(["archive/"], "out", backend=DaskBackend(n_workers=2))  # doctest: +SKIP
    """

    name = "dask"

    def __init__(self, scheduler=None, *, n_workers: int | None = None, task_mb: float = 8.0,
                 max_files: int = 256, window: int | None = None,
                 on_result: Callable[[dict[str, Any]], None] | None = None):
        if scheduler is not None and n_workers is not None:
            raise ConfigError(
                "dask_workers: give either a scheduler address or a number of local workers"
            )
        if not (isinstance(task_mb, (int, float)) and task_mb > 0):
            raise ConfigError(f"task_mb={task_mb!r} must be a positive number")
        for name, value in (("dask_workers", n_workers), ("window", window),
                            ("max_files", max_files)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < 1):
                raise ConfigError(f"{name}={value!r} must be an integer >= 1")
        require_dask()  # fail before the scan, not after
        self.scheduler = scheduler
        self.n_workers = n_workers
        self.window = window
        self.task_bytes = int(task_mb * 1e6)
        self.max_files = max_files
        self.on_result = on_result

    def _client(self, stack):
        distributed = require_dask()
        if self.scheduler is None:
            from ser_cli.analysis import _usable_cores

            cluster = stack.enter_context(distributed.LocalCluster(
                n_workers=self.n_workers or _usable_cores(), threads_per_worker=1,
                processes=True, dashboard_address=None,
            ))
            return stack.enter_context(distributed.Client(cluster))
        if isinstance(self.scheduler, distributed.Client):
            return self.scheduler
        address = os.fspath(self.scheduler)
        try:
            if address.endswith(".json"):
                client = distributed.Client(scheduler_file=address, timeout="30s")
            else:
                client = distributed.Client(address, timeout="30s")
        except OSError as exc:
            raise SerError(f"{address}: cannot reach the Dask scheduler ({exc})") from exc
        return stack.enter_context(client)

    def run(self, todo: list[tuple[str, reports.FileKey]],
            commit: Callable[[dict[str, Any], float], None], *, model_path: str,
            model_sha256: str, device: str, precision: str, batch_size: int) -> None:
        """Score ``todo`` (``(display, FileKey)`` pairs) on the cluster; ``commit(record,
        duration_s)`` each record on the driver as it arrives, at most once per file.

        Raises
        ------
        SerError
            The scheduler cannot be reached, or files were lost because their task killed
            too many workers (after every other file has been committed).
        """
        import contextlib

        if not todo:
            return
        with contextlib.ExitStack() as stack:
            distributed = require_dask()
            client = self._client(stack)
            threads = sum(client.nthreads().values()) or 1
            window = self.window or max(8, 4 * threads)
            model_path = os.path.abspath(model_path)
            total = sum(max(key.size, 0) for _, key in todo)
            target = max(1, min(self.task_bytes, -(-total // (2 * threads))))
            groups = _groups(todo, target, self.max_files)
            by_task: dict[str, list[tuple[str, reports.FileKey]]] = {}
            done: set[str] = set()
            lost: list[str] = []

            def submit_next():
                for group in groups:
                    name = _task_name(group)
                    by_task[name] = group
                    return client.submit(
                        score_on_worker, [(d, k.as_dict()) for d, k in group], model_path,
                        model_sha256, device, precision, batch_size, key=name, pure=False,
                    )
                return None

            first = [f for f in (submit_next() for _ in range(window)) if f is not None]
            futures = distributed.as_completed(first)
            try:
                for future in futures:
                    group = by_task.pop(future.key)
                    try:
                        records = future.result()
                    except distributed.KilledWorker:
                        lost.extend(display for display, _ in group)
                        records = []
                    future.release()
                    for record in records:
                        path = record["key"]["path"]
                        if path in done:  # never journal a file twice
                            continue
                        done.add(path)
                        commit(record, record["duration_s"] or 0.0)
                        if self.on_result is not None:
                            self.on_result(record)
                    nxt = submit_next()
                    if nxt is not None:
                        futures.add(nxt)
            finally:
                for future in list(futures.futures):  # on an interrupt or a bug
                    future.cancel()
            if lost:
                import dask

                shown = ", ".join(lost[:5]) + (" ..." if len(lost) > 5 else "")
                allowed = dask.config.get("distributed.scheduler.allowed-failures", 3)
                raise SerError(
                    f"{len(lost)} file(s) not scored, their task killed more than {allowed} "
                    f"Dask workers (out of memory?): {shown}; they are not in the journal, so "
                    "rerunning the same command retries them"
                )
