"""Report writing for ``analyze``: the crash-safe journal, the resume manifest and the reports.

An output folder ``OUT`` holds:

* ``.journal.jsonl`` -- the primary store. One line per finished input file: its path as given,
  its identity on disk (absolute path, size in bytes, mtime in ns), its status, its utterance
  scores and all its segment scores (columnar). Each line is written in one ``write`` and made
  durable with flush + ``os.fsync`` before the file counts as finished; a line without its
  final newline (a crash mid-write) is cut off when the journal is reopened. So a ``kill -9``
  loses at most the files in flight.
* ``.run.json`` -- the settings the journal was written with (model sha256, precision, classes);
  a later run with other settings is refused unless it overwrites.
* ``.lock`` -- held with ``fcntl.flock`` while a run writes; a second concurrent run is refused.
* ``utterances.csv``, ``utterances.json``, ``segments.csv``, ``segments.json``,
  ``segments.jsonl``, ``summary.json`` -- rendered from the journal at the end of every run,
  sorted by file then segment index, each written to a temporary name and moved into place with
  ``os.replace``.

Columns (one score column per class, named after the class, holding probabilities in [0, 1]):

* utterances: ``file, duration_s, n_segments, label, <class...>, status, error``;
  ``status`` is ``ok`` or ``error``; ``error`` is the reason (empty when ok). An error row has
  empty label, duration and scores (``null`` in JSON).
* segments: ``file, index, start_s, end_s, label, <class...>``. ``start_s``/``end_s`` are the
  span of audio the segment's frames cover, clipped to the utterance duration.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ser_cli.errors import ConfigError, SerError

__all__ = [
    "JOURNAL_NAME",
    "RUN_NAME",
    "LOCK_NAME",
    "REPORT_NAMES",
    "FileKey",
    "file_key",
    "score_columns",
    "utterance_columns",
    "segment_columns",
    "OutputLock",
    "Journal",
    "prepare_output",
    "render_reports",
    "write_summary",
    "atomic_writer",
    "round_score",
]

JOURNAL_NAME = ".journal.jsonl"
RUN_NAME = ".run.json"
LOCK_NAME = ".lock"
REPORT_NAMES = (
    "utterances.csv",
    "utterances.json",
    "segments.csv",
    "segments.json",
    "segments.jsonl",
    "summary.json",
)
PLOTS_DIR = "plots"
_FORMAT_VERSION = 1
_FIXED_UTTERANCE = ("file", "duration_s", "n_segments", "label")
_FIXED_SEGMENT = ("file", "index", "start_s", "end_s", "label")
_TAIL_UTTERANCE = ("status", "error")


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_current_umask()  # what open() would give; mkstemp alone gives 0600


def round_score(x: float) -> float:
    """Round a probability to float32 precision (7 significant digits) for the reports.

    The journal and every report hold the same rounded value, so CSV and JSON agree exactly.

    >>> round_score(0.123456789)
    0.1234568
    """
    return float(f"{float(x):.7g}")


# --- identity of an input file ------------------------------------------------------------


@dataclass(frozen=True)
class FileKey:
    """What identifies a finished input: absolute path, size in bytes, mtime in nanoseconds."""

    path: str
    size: int
    mtime_ns: int

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "mtime_ns": self.mtime_ns}


def file_key(path: str | os.PathLike[str]) -> FileKey:
    """Return the :class:`FileKey` of ``path`` (a missing file gets size and mtime -1).

    Examples
    --------
    >>> file_key("/nonexistent.wav").size
    -1
    """
    absolute = os.path.abspath(os.fspath(path))
    try:
        st = os.stat(absolute)
    except OSError:
        return FileKey(absolute, -1, -1)
    return FileKey(absolute, int(st.st_size), int(st.st_mtime_ns))


# --- columns ------------------------------------------------------------------------------


def score_columns(classes: Sequence[str]) -> list[str]:
    """Score column names: the class name, or ``score_<class>`` if it collides with a fixed one.

    >>> score_columns(["angry", "label"])
    ['angry', 'score_label']
    """
    fixed = set(_FIXED_UTTERANCE + _FIXED_SEGMENT + _TAIL_UTTERANCE)
    return [f"score_{c}" if c in fixed else str(c) for c in classes]


def utterance_columns(classes: Sequence[str]) -> list[str]:
    """``file, duration_s, n_segments, label, <class...>, status, error``."""
    return [*_FIXED_UTTERANCE, *score_columns(classes), *_TAIL_UTTERANCE]


def segment_columns(classes: Sequence[str]) -> list[str]:
    """``file, index, start_s, end_s, label, <class...>``."""
    return [*_FIXED_SEGMENT, *score_columns(classes)]


# --- atomic files -------------------------------------------------------------------------


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike[str], mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; on success fsync it and ``os.replace`` it there.

    On an exception the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, _FILE_MODE)
        kwargs: dict[str, Any] = {} if "b" in mode else {"encoding": "utf-8", "newline": ""}
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# --- the lock -----------------------------------------------------------------------------


class OutputLock:
    """An exclusive, non-blocking ``fcntl.flock`` on ``OUT/.lock`` for the life of a run.

    Raises
    ------
    SerError
        If another process (or another open of the lock file) holds it.
    """

    def __init__(self, out: str | os.PathLike[str]):
        self.path = Path(out) / LOCK_NAME
        self._fh: IO[str] | None = None

    def __enter__(self) -> OutputLock:
        import fcntl

        fh = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 -- held until __exit__
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            fh.close()
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise SerError(
                    f"{self.path.parent}: another ser-cli analyze is writing to this folder "
                    f"(lock {self.path} is held); wait for it to finish or choose another -o"
                ) from exc
            raise
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        self._fh = fh
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._fh is not None:
            self._fh.close()  # closing releases the flock
            self._fh = None


# --- settings manifest --------------------------------------------------------------------


def prepare_output(out: Path, run_settings: dict[str, Any], *, overwrite: bool) -> None:
    """Check (or start afresh) an output folder the caller has locked.

    ``run_settings`` are the settings that change the scores (model sha256, precision, classes).
    An existing folder written with other settings is refused unless ``overwrite``; with
    ``overwrite`` the journal, reports and plots are deleted (nothing else in ``out``).

    Raises
    ------
    ConfigError
        The folder holds results of other settings, or holds files that are not ser-cli's.
    """
    run_path = out / RUN_NAME
    if overwrite:
        for name in (*REPORT_NAMES, JOURNAL_NAME, RUN_NAME):
            with contextlib.suppress(FileNotFoundError):
                (out / name).unlink()
        if (out / PLOTS_DIR).is_dir():
            shutil.rmtree(out / PLOTS_DIR)
    elif run_path.exists():
        try:
            previous = json.loads(run_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"{run_path}: unreadable settings file ({exc}); rerun with --overwrite"
            ) from exc
        changed = [
            k
            for k in sorted(set(previous.get("settings", {})) | set(run_settings))
            if previous.get("settings", {}).get(k) != run_settings.get(k)
        ]
        if changed:
            details = ", ".join(
                f"{k}: {previous.get('settings', {}).get(k)!r} before, {run_settings.get(k)!r} now"
                for k in changed
            )
            raise ConfigError(
                f"{out}: holds results of other settings ({details}); "
                "use --overwrite to start afresh or choose another -o"
            )
        return
    else:
        present = sorted(n for n in (*REPORT_NAMES, JOURNAL_NAME) if (out / n).exists())
        if present:
            raise ConfigError(
                f"{out}: has {', '.join(present)} but no {RUN_NAME} (not written by ser-cli "
                "analyze); use --overwrite to start afresh or choose another -o"
            )
    with atomic_writer(run_path) as fh:
        json.dump({"format": _FORMAT_VERSION, "settings": run_settings}, fh, indent=2)
        fh.write("\n")
    _fsync_dir(out)


# --- the journal --------------------------------------------------------------------------


class Journal:
    """The append-only per-file journal ``OUT/.journal.jsonl``.

    Opening it cuts off a trailing partial line (a crash mid-write) and indexes the latest
    complete record of each file by absolute path. :meth:`append` writes one record as one
    line, then flushes and fsyncs it: only then is the file finished.
    """

    def __init__(self, out: str | os.PathLike[str]):
        self.path = Path(out) / JOURNAL_NAME
        # absolute path -> (offset, length, key, file as given) of its latest record
        self._latest: dict[str, tuple[int, int, dict[str, Any], str]] = {}
        self._repair_and_index()
        self._fh: IO[bytes] = open(self.path, "ab")  # noqa: SIM115 -- closed in close()

    def _repair_and_index(self) -> None:
        if not self.path.exists():
            return
        good_end = 0
        with open(self.path, "rb") as fh:
            offset = 0
            for line in fh:
                if not line.endswith(b"\n"):
                    break  # partial last line: the write of a record that never finished
                record = _parse(line)
                if record is not None:
                    key = record["key"]
                    self._latest[key["path"]] = (offset, len(line), key, record["file"])
                offset += len(line)
                good_end = offset
        if good_end != self.path.stat().st_size:
            with open(self.path, "r+b") as fh:
                fh.truncate(good_end)
                fh.flush()
                os.fsync(fh.fileno())

    def is_finished(self, key: FileKey) -> bool:
        """True if the journal holds a record for this path with the same size and mtime."""
        entry = self._latest.get(key.path)
        return entry is not None and entry[2] == key.as_dict()

    def __len__(self) -> int:
        return len(self._latest)

    def append(self, record: dict[str, Any]) -> None:
        """Write one record (a JSON object with a ``key``) durably as one line."""
        line = (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
        offset = self._fh.tell()
        self._fh.write(line)
        self._fh.flush()
        os.fsync(self._fh.fileno())
        key = record["key"]
        self._latest[key["path"]] = (offset, len(line), key, record["file"])

    def iter_latest(self) -> Iterator[dict[str, Any]]:
        """Yield the latest record of each file, sorted by the file path as given, then key.

        Reads one record at a time (memory is bounded by the largest single record).
        """
        self._fh.flush()
        order = sorted(
            (file, path, offset, length)
            for path, (offset, length, _, file) in self._latest.items()
        )
        with open(self.path, "rb") as fh:
            for _, _, offset, length in order:
                fh.seek(offset)
                record = _parse(fh.read(length))
                if record is not None:
                    yield record

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _parse(line: bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict) or not isinstance(record.get("key"), dict):
        return None
    if "path" not in record["key"] or "file" not in record:
        return None
    return record


# --- rendering ----------------------------------------------------------------------------


def _utterance_row(record: dict[str, Any], classes: Sequence[str]) -> dict[str, Any]:
    columns = score_columns(classes)
    ok = record["status"] == "ok"
    scores = record.get("scores") if ok else None
    row: dict[str, Any] = {
        "file": record["file"],
        "duration_s": record.get("duration_s"),
        "n_segments": record.get("n_segments"),
        "label": record.get("label") if ok else None,
    }
    for i, column in enumerate(columns):
        row[column] = scores[i] if scores is not None else None
    row["status"] = record["status"]
    row["error"] = record.get("error") or ""
    return row


def _segment_rows(record: dict[str, Any], classes: Sequence[str]) -> Iterator[dict[str, Any]]:
    if record["status"] != "ok":
        return
    columns = score_columns(classes)
    seg = record["segments"]
    for index, (start, end, scores) in enumerate(
        zip(seg["start_s"], seg["end_s"], seg["scores"], strict=True)
    ):
        best = max(range(len(scores)), key=scores.__getitem__)
        row: dict[str, Any] = {
            "file": record["file"],
            "index": index,
            "start_s": start,
            "end_s": end,
            "label": classes[best],
        }
        row.update(zip(columns, scores, strict=True))
        yield row


def _csv_value(value: Any) -> Any:
    return "" if value is None else value


class _JsonArrayWriter:
    """Writes ``[`` row, row, ... ``]`` one object per line, without holding the rows."""

    def __init__(self, fh: IO[str]):
        self.fh = fh
        self.first = True
        fh.write("[")

    def write(self, row: dict[str, Any]) -> None:
        self.fh.write("\n" if self.first else ",\n")
        self.fh.write(json.dumps(row, ensure_ascii=False))
        self.first = False

    def close(self) -> None:
        self.fh.write("]\n" if self.first else "\n]\n")


def render_reports(
    out: str | os.PathLike[str], journal: Journal, classes: Sequence[str]
) -> list[dict[str, Any]]:
    """Render the CSV/JSON/JSONL reports of ``out`` from ``journal``, atomically.

    Rows are sorted by file (as given), segments then by index. Memory is bounded by one
    journal record, except for the returned utterance rows.

    Returns
    -------
    list of dict
        The utterance rows, as in ``utterances.json``.
    """
    out = Path(out)
    u_cols = utterance_columns(classes)
    s_cols = segment_columns(classes)
    utterances: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        u_csv = stack.enter_context(atomic_writer(out / "utterances.csv"))
        u_json = stack.enter_context(atomic_writer(out / "utterances.json"))
        s_csv = stack.enter_context(atomic_writer(out / "segments.csv"))
        s_json = stack.enter_context(atomic_writer(out / "segments.json"))
        s_jsonl = stack.enter_context(atomic_writer(out / "segments.jsonl"))
        u_writer = csv.writer(u_csv, lineterminator="\n")
        s_writer = csv.writer(s_csv, lineterminator="\n")
        u_writer.writerow(u_cols)
        s_writer.writerow(s_cols)
        u_array = _JsonArrayWriter(u_json)
        s_array = _JsonArrayWriter(s_json)
        for record in journal.iter_latest():
            row = _utterance_row(record, classes)
            utterances.append(row)
            u_writer.writerow([_csv_value(row[c]) for c in u_cols])
            u_array.write(row)
            for seg_row in _segment_rows(record, classes):
                s_writer.writerow([_csv_value(seg_row[c]) for c in s_cols])
                s_array.write(seg_row)
                s_jsonl.write(json.dumps(seg_row, ensure_ascii=False) + "\n")
        u_array.close()
        s_array.close()
    _fsync_dir(out)
    return utterances


def write_summary(out: str | os.PathLike[str], summary: dict[str, Any]) -> None:
    """Write ``OUT/summary.json`` atomically (indented, keys in the given order)."""
    with atomic_writer(Path(out) / "summary.json") as fh:
        json.dump(summary, fh, indent=2, ensure_ascii=False)
        fh.write("\n")
