"""Join the outputs of several ``analyze`` runs (shards) into one: ``ser-cli merge``.

The journals are the source of truth: :func:`merge` copies the latest record of every file from
each input's ``.journal.jsonl`` into ``OUT/.journal.jsonl`` and renders the reports from it with
:func:`ser_cli.reports.render_reports`, the renderer ``analyze`` uses, so the CSV/JSON/JSONL
files are byte for byte what one run over all the files would have written (rows sorted by file,
then segment index). ``summary.json`` is rebuilt the same way, except its timing and
command-line fields (``this_run``, ``wall_s``, ``x_real_time``, ``command``, ``finished_at``),
which describe the merge: ``wall_s`` is the sum over the inputs (machine time, not elapsed
time), and ``merged_from`` lists each input with its shard and timing.

Inputs are refused, with the input and the field named, when they were written with another
model (sha256), classes, precision, front-end, segment or scoring settings, or ser-cli version;
when two inputs hold different records for the same file; when shards of different ``n`` or the
same shard twice are given; and, unless ``allow_partial``, when shards are missing. Inputs are
only read, under their ``.lock`` when the file system allows it (so a shard still being
written is refused); their journals and reports are never changed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from ser_cli import reports
from ser_cli.errors import ConfigError, SerError

__all__ = ["merge"]

# summary.json fields that must agree between inputs (run settings come from .run.json)
_SUMMARY_FIELDS = (
    ("settings", "audio_config"),
    ("settings", "feature_config"),
    ("settings", "segment_config"),
    ("settings", "scoring_config"),
    ("versions", "ser_cli"),
    ("model", "name"),
)
_SCAN_COUNTERS = ("skipped_non_audio", "skipped_duplicates", "unreadable_entries")


def merge(inputs, out: str | os.PathLike[str], *, overwrite: bool = False,
          allow_partial: bool = False):
    """Merge the output folders ``inputs`` of ``analyze`` runs into ``out``.

    Parameters
    ----------
    inputs : iterable of path-like
        Output folders of finished ``analyze`` runs, typically the shards ``1/n`` .. ``n/n``.
    out : path-like
        Folder to write (created). Must not be one of ``inputs``; if it already holds reports,
        ``overwrite`` is needed.
    overwrite : bool
        Replace the journal and reports already in ``out``.
    allow_partial : bool
        Merge even when some shards of ``n`` are missing (the summary lists which were merged).

    Returns
    -------
    ser_cli.analysis.AnalyzeResult
        As :func:`ser_cli.analyze` returns it: the utterance rows of ``out`` and its summary.

    Raises
    ------
    ConfigError
        No inputs; an input is not an ``analyze`` output; inputs differ in model or settings
        (the message names the input and the field); conflicting records of one file; shards
        missing or repeated; ``out`` is an input or already holds reports.
    SerError
        An input or ``out`` is locked by a running ``analyze``.

    Examples
    --------
    >>> merge(["out/shard-1", "out/shard-2"], "out/all")  # doctest: +SKIP
    """
    from ser_cli.analysis import AnalyzeResult

    t_start = time.perf_counter()
    if isinstance(inputs, (str, bytes, os.PathLike)):
        inputs = [inputs]
    dirs = [Path(p) for p in inputs]
    if not dirs:
        raise ConfigError("inputs: no output folders to merge")
    out = Path(out)
    for d in dirs:
        if not d.is_dir():
            raise ConfigError(f"{d}: no such folder")
        if out.exists() and d.resolve() == out.resolve():
            raise ConfigError(f"{out}: is one of the inputs; write the merge to another folder")
    seen_dirs: dict[Path, Path] = {}
    for d in dirs:
        if d.resolve() in seen_dirs:
            raise ConfigError(f"{d}: given twice (as {seen_dirs[d.resolve()]} too)")
        seen_dirs[d.resolve()] = d

    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{out}: cannot create the output folder ({exc.strerror})") from exc
    with contextlib.ExitStack() as stack:
        stack.enter_context(reports.OutputLock(out))
        for d in dirs:
            _lock_input(stack, d)
        metas = [_read_input(d) for d in dirs]
        _check_same_settings(metas)
        shard_info = _check_shards(metas, allow_partial)

        present = [n for n in (*reports.REPORT_NAMES, reports.JOURNAL_NAME) if (out / n).exists()]
        if present and not overwrite:
            raise ConfigError(
                f"{out}: already holds {', '.join(sorted(present))}; use --overwrite to replace "
                "them or choose another -o"
            )
        run_settings = metas[0]["run"]
        reports.prepare_output(out, run_settings, overwrite=True)
        _write_journal(out, metas)
        classes = run_settings["classes"]
        with reports.Journal(out) as journal:
            utterances = reports.render_reports(out, journal, classes)
        for meta in metas:
            plots = meta["dir"] / reports.PLOTS_DIR
            if plots.is_dir():
                shutil.copytree(plots, out / reports.PLOTS_DIR, dirs_exist_ok=True)
        summary = _summary(metas, utterances, shard_info, time.perf_counter() - t_start)
        reports.write_summary(out, summary)
    n_ok = sum(1 for u in utterances if u["status"] == "ok")
    return AnalyzeResult(out, utterances, n_ok, len(utterances) - n_ok, summary)


def _lock_input(stack: contextlib.ExitStack, folder: Path) -> None:
    """Hold ``folder``'s analyze lock while reading it; a read-only folder is read unlocked."""
    try:
        stack.enter_context(reports.OutputLock(folder))
    except SerError:
        raise
    except OSError:  # read-only file system or no write permission: nothing can write there
        pass


def _read_input(folder: Path) -> dict[str, Any]:
    run_path = folder / reports.RUN_NAME
    summary_path = folder / "summary.json"
    journal_path = folder / reports.JOURNAL_NAME
    for path in (run_path, journal_path, summary_path):
        if not path.is_file():
            raise ConfigError(
                f"{folder}: no {path.name}, so it is not the output of a finished "
                "'ser-cli analyze' (rerun that analyze to completion first)"
            )
    try:
        run = json.loads(run_path.read_text(encoding="utf-8"))["settings"]
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{folder}: unreadable {run_path.name} or summary.json ({exc})") from exc
    return {"dir": folder, "run": run, "summary": summary, "index": _index_journal(journal_path)}


def _index_journal(path: Path) -> dict[str, tuple[int, int]]:
    """Absolute path -> (offset, length) of the latest complete record; read only (a partial
    last line, from a crash, is ignored as :class:`reports.Journal` would cut it)."""
    index: dict[str, tuple[int, int]] = {}
    offset = 0
    with open(path, "rb") as fh:
        for line in fh:
            if not line.endswith(b"\n"):
                break
            try:
                record = json.loads(line)
                index[record["key"]["path"]] = (offset, len(line))
            except (ValueError, KeyError, TypeError):
                pass  # as Journal: a line that is not a record is ignored
            offset += len(line)
    return index


def _get(summary: dict[str, Any], field: tuple[str, ...]) -> Any:
    value: Any = summary
    for name in field:
        value = value.get(name) if isinstance(value, dict) else None
    return value


def _differing(a: Any, b: Any, name: str) -> tuple[str, Any, Any]:
    """The dotted name and the two values of the first differing sub-field of ``a`` and ``b``."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                return _differing(a.get(k), b.get(k), f"{name}.{k}")
    return name, a, b


def _check_same_settings(metas: list[dict[str, Any]]) -> None:
    first = metas[0]
    for meta in metas[1:]:
        names = sorted(set(first["run"]) | set(meta["run"]), key=lambda k: (k != "model_sha256", k))
        pairs = [(f"settings.{k}", first["run"].get(k), meta["run"].get(k)) for k in names]
        pairs += [(".".join(f), _get(first["summary"], f), _get(meta["summary"], f))
                  for f in _SUMMARY_FIELDS]
        for name, want, have in pairs:
            if want != have:
                field, want, have = _differing(want, have, name)
                raise ConfigError(
                    f"{meta['dir']}: {field} is {_short(have)}, {first['dir']} has "
                    f"{_short(want)}; cannot merge results of different models or settings"
                )


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _check_shards(metas: list[dict[str, Any]], allow_partial: bool) -> dict[str, Any] | None:
    from ser_cli.sharding import parse_shard

    shards = [(m["dir"], parse_shard(m["summary"]["shard"])) for m in metas
              if m["summary"].get("shard")]
    if not shards:
        return None
    count = shards[0][1].count
    by_index: dict[int, Path] = {}
    for folder, shard in shards:
        if shard.count != count:
            raise ConfigError(
                f"{folder}: is shard {shard}, {shards[0][0]} is shard {shards[0][1]}; "
                "shards of different n cannot be merged"
            )
        if shard.index in by_index:
            raise ConfigError(f"{folder}: shard {shard} is also {by_index[shard.index]}")
        by_index[shard.index] = folder
    missing = [i for i in range(1, count + 1) if i not in by_index]
    if missing and not allow_partial:
        listed = ", ".join(f"{i}/{count}" for i in missing[:10]) + (" ..." if len(missing) > 10 else "")
        raise ConfigError(
            f"shards {listed} are missing ({len(by_index)} of {count} given); merge them too, "
            "or pass --partial to merge what is there"
        )
    return {"count": count, "merged": sorted(by_index), "missing": missing}


def _write_journal(out: Path, metas: list[dict[str, Any]]) -> None:
    """OUT/.journal.jsonl: each file's latest record, once; identical copies collapse, different
    records of one file are refused."""
    owner: dict[str, tuple[Path, bytes]] = {}
    with reports.atomic_writer(out / reports.JOURNAL_NAME, "wb") as dst:
        for meta in metas:
            with open(meta["dir"] / reports.JOURNAL_NAME, "rb") as src:
                for path, (offset, length) in sorted(meta["index"].items()):
                    src.seek(offset)
                    line = src.read(length)
                    digest = hashlib.sha1(line).digest()
                    if path in owner:
                        if owner[path][1] != digest:
                            raise ConfigError(
                                f"{meta['dir']}: holds another record of {path} than "
                                f"{owner[path][0]} (scored twice with different results?); "
                                "merge only one of them"
                            )
                        continue
                    owner[path] = (meta["dir"], digest)
                    dst.write(line)


def _summary(metas: list[dict[str, Any]], utterances: list[dict[str, Any]],
             shard_info: dict[str, Any] | None, merge_s: float) -> dict[str, Any]:
    """summary.json as one analyze run over all the files would write it, but for timing."""
    summaries = [m["summary"] for m in metas]
    summary = json.loads(json.dumps(summaries[0]))  # same keys, same order as analyze's
    n_ok = sum(1 for u in utterances if u["status"] == "ok")
    files = dict(summary.get("files", {}))
    files.update(total=len(utterances), ok=n_ok, error=len(utterances) - n_ok)
    for counter in _SCAN_COUNTERS:  # every shard scans the whole input: the same counts
        values = [s.get("files", {}).get(counter) for s in summaries]
        values = [v for v in values if v is not None]
        if values:
            files[counter] = max(values)
    runs = [s.get("this_run", {}) for s in summaries]
    run_audio_h = sum(r.get("audio_hours") or 0.0 for r in runs)
    run_wall_s = sum(r.get("wall_s") or 0.0 for r in runs)
    this_run = {
        "scored": sum(r.get("scored") or 0 for r in runs),
        "failed": sum(r.get("failed") or 0 for r in runs),
        "resumed_skipped": sum(r.get("resumed_skipped") or 0 for r in runs),
        "interrupted": any(r.get("interrupted") for r in runs),
        "audio_hours": round(run_audio_h, 6),
        "wall_s": round(run_wall_s, 6),
        "x_real_time": round(run_audio_h * 3600 / run_wall_s, 6) if run_wall_s > 0 else None,
    }
    wall_s = sum(s.get("wall_s") or 0.0 for s in summaries)
    audio_s = sum(u["duration_s"] or 0.0 for u in utterances if u["status"] == "ok")
    summary.update(
        files=files,
        audio_hours=round(float(audio_s / 3600), 6),
        this_run=this_run,
        wall_s=round(wall_s, 6),
        x_real_time=this_run["x_real_time"],
        command=shlex.join(sys.argv),
        shard=None,
        finished_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )
    summary["merged_from"] = [
        {"out": str(m["dir"]), "shard": m["summary"].get("shard"),
         "files": m["summary"].get("files", {}).get("total"),
         "wall_s": m["summary"].get("wall_s"), "command": m["summary"].get("command"),
         "finished_at": m["summary"].get("finished_at")}
        for m in metas
    ]
    summary["merge"] = {"shards": shard_info, "wall_s": round(merge_s, 6)}
    return summary
