"""Ensembles of screening models on the inner fold, from their committed predictions.

Each member's utterance probabilities (``predictions.csv``: softmax of its mean segment logit)
are averaged over the members; the ensemble's label is the arg-max. The members must have been
trained on the same speakers and scored on the same utterances with the same classes (the
``classes`` of their ``metrics.json``), so this measures what averaging independently trained
models buys, at no training cost. Each corpus is scored over the classes its utterances have,
as ``evaluate`` does (``ser_cli.evaluation.corpus_metrics``).

    python docs/ensemble_screen.py ser12-adamw ser12-adamw-utt crops12-adamw
    python docs/ensemble_screen.py ser48-7c-joint ser48-7c-joint-s1

A RUN is a folder under ``docs/results/screening/``, or any ``evaluate`` output folder given
as a path with a ``/``, relative to the working directory: the same averaging pools two test-fold
runs of one configuration with different seeds. With ``-o OUT`` the ensemble is also written
as a report like ``evaluate``'s (``metrics.json``, ``metrics.csv``, ``predictions.csv``,
``command.txt``, confusion plots), by ``ser_cli.evaluation``'s own writers; the members must then
agree on their folds, fold speakers and data (only the seed, or the model, may differ).

    python docs/ensemble_screen.py -o docs/results/classes48/joint7-ens \
        docs/results/classes48/joint7 docs/results/classes48/joint7-s1      (from the repository root)

``--average logits`` (before the runs) combines the members as a ``ser-cli ensemble`` model file
does, by their mean utterance logits, instead of their mean probabilities. ``--against RUN,RUN``
(before the runs) also pairs the ensemble with the ensemble of those runs, combined the same way
(one run: that run), on the utterances both score, e.g. a third member against the two-seed pair:

    python docs/ensemble_screen.py --average logits --against ser48-adamw,ser48-adamw-s1 \
        ser48-adamw ser48-adamw-s1 ser48-wide
"""

from __future__ import annotations

import csv
import json
import shlex
import sys
from pathlib import Path

import numpy as np

from render_paper_tables import fmt_p, mcnemar

from ser_cli.evaluation import (
    _plot_confusion,
    _write_metrics_csv,
    _write_predictions,
    confusion_matrix,
    corpus_metrics,
    metrics_from_confusion,
)

SCREEN = Path(__file__).resolve().parent / "results" / "screening"
NAMES = {"emodb": "EMO-DB", "ravdess": "RAVDESS"}


def folder(run: str) -> Path:
    return Path(run) if "/" in run else SCREEN / run


def read(run: str, classes: list[str]) -> dict[str, dict]:
    """utterance id -> row with ``label``, ``family``, ``fold`` and ``probs``.

    ``family`` is the corpus of a run that mixes corpora (speaker ``emodb:03``), else ``""``.
    A run written PART+PART is one run whose disjoint folds were reported separately (for
    example inner fold 1, and inner folds 2-4 run later); its parts' rows are joined.
    """
    rows = []
    for part in run.split("+"):
        with open(folder(part) / "predictions.csv", newline="") as f:
            rows += list(csv.DictReader(f))
    out = {r["utt"]: {"label": r["true"], "path": r["path"], "n_segments": int(r["n_segments"]), "family": r["speaker"].partition(":")[0] if ":" in r["speaker"] else "",
                      "speaker": r["speaker"], "fold": int(r["fold"]),
                      "probs": np.array([float(r[c]) for c in classes])}
           for r in rows}
    if len(out) != len(rows):
        raise SystemExit(f"{run}: an utterance id occurs twice in its predictions.csv")
    return out


def score(rows: list[dict], classes: list[str]) -> tuple[dict, dict, dict[str, bool]]:
    """(per-corpus metrics, pooled metrics, utterance -> right) of rows with ``probs``.

    Per corpus, and for ``right``, an utterance's label is the arg-max over the classes its
    corpus has (``corpus_metrics``); the per-corpus dict is empty for a single corpus.
    """
    scored = [{**r, "corpus": r["family"], "scores": {"logits": r["probs"], "probs": r["probs"]}} for r in rows]
    by_corpus = corpus_metrics(scored, classes, "probs")
    pooled = metrics_from_confusion(confusion_matrix(
        [classes.index(r["label"]) for r in rows], [int(np.argmax(r["probs"])) for r in rows],
        len(classes)), classes)

    def right(r: dict) -> bool:
        present = by_corpus[r["family"]]["classes"] if by_corpus else classes
        return present[int(np.argmax(r["probs"][[classes.index(c) for c in present]]))] == r["label"]

    return by_corpus, pooled, {r["utt"]: right(r) for r in rows}


def members(runs: list[str]) -> tuple[list[str], list[list[dict]]]:
    """(classes, each run's rows over the utterances all runs scored, in one order)."""
    parts = [part for run in runs for part in run.split("+")]
    classes = json.loads((folder(parts[0]) / "metrics.json").read_text())["classes"]
    for part in parts[1:]:
        if json.loads((folder(part) / "metrics.json").read_text())["classes"] != classes:
            raise SystemExit(f"{part}: its classes differ from {parts[0]}'s")
    tables = [read(r, classes) for r in runs]
    utts = sorted(set.intersection(*(set(t) for t in tables)))
    return classes, [[{**t[u], "utt": u} for u in utts] for t in tables]


def combine(probs: list[np.ndarray], how: str, weights: list[float] | None = None) -> np.ndarray:
    """The ensemble's utterance probabilities from its members': their mean (``probs``), or
    (``logits``) the softmax of the mean of their log-probabilities, which ranks the classes as
    the mean of the members' utterance logits does, i.e. as a ``ser-cli ensemble`` model file
    scores (it averages segment logits). Probabilities are clipped at 1e-6, the precision
    ``predictions.csv`` prints, so ``logits`` matches that file up to this rounding. ``weights``
    (one per member, default equal) makes either mean a weighted one."""
    if how == "probs":
        return np.average(probs, axis=0, weights=weights)
    mean_log = np.average([np.log(np.maximum(p, 1e-6)) for p in probs], axis=0, weights=weights)
    e = np.exp(mean_log - mean_log.max())
    return e / e.sum()


def average(rows_of_members: list[list[dict]], how: str = "probs") -> list[dict]:
    """The ensemble's rows: each utterance's probabilities combined over the members."""
    return [{**rows[0], "probs": combine([r["probs"] for r in rows], how)} for rows in zip(*rows_of_members)]


def line(by_corpus: dict, pooled: dict) -> str:
    parts = [f"{NAMES.get(name, name)} WA {100 * m['wa']:.1f} UA {100 * m['ua']:.1f}"
             for name, m in by_corpus.items()]
    return (", ".join(parts + [f"pooled UA {100 * pooled['ua']:.1f}"]) if parts
            else f"WA {100 * pooled['wa']:.1f} UA {100 * pooled['ua']:.1f}")


#: members' metrics.json keys that must agree for their ensemble to be one evaluation
MUST_AGREE = ("classes", "n_folds", "folds_spec", "folds_run", "fold_speakers", "data", "epochs")


def write_report(out: Path, runs: list[str], primary: str = "probs") -> dict:
    """Write the ensemble of ``runs`` as an ``evaluate``-style report in ``out``; its metrics.

    Both rules of :func:`combine` are scored (``by_average``); ``primary`` is the one the
    report's WA, UA, per-corpus and per-fold numbers use: ``probs``, the mean of the members'
    probabilities (the rule screened above), or ``logits``, the rule of a ``ser-cli ensemble``
    model file.
    """
    metas = [json.loads((folder(r) / "metrics.json").read_text()) for r in runs]
    for run, meta in zip(runs[1:], metas[1:]):
        for key in MUST_AGREE:
            if meta.get(key) != metas[0].get(key):
                raise SystemExit(f"{run}: {key!r} differs from {runs[0]}'s, so they do not form one evaluation")
    classes, rows = members(runs)
    first = metas[0]
    predictions = [{"utt_id": r[0]["utt"], "path": r[0]["path"], "speaker": r[0]["speaker"], "fold": r[0]["fold"],
                    "label": r[0]["label"], "corpus": r[0]["family"], "segment_logits": [None] * r[0]["n_segments"],
                    "scores": {how: combine([m["probs"] for m in r], how) for how in ("probs", "logits")}}
                   for r in zip(*rows)]
    if len(predictions) != first["n_utterances"]:
        raise SystemExit(f"the members share {len(predictions)} utterances, {runs[0]} has {first['n_utterances']}")

    def metrics_of(selected, avg):
        true = [classes.index(p["label"]) for p in selected]
        pred = [int(np.argmax(p["scores"][avg])) for p in selected]
        return metrics_from_confusion(confusion_matrix(true, pred, len(classes)), classes)

    by_average = {avg: metrics_of(predictions, avg) for avg in ("probs", "logits")}
    main_m = by_average[primary]
    by_corpus = corpus_metrics(predictions, classes, primary)
    per_fold = []
    for fold in first["folds_run"]:
        m = metrics_of([p for p in predictions if p["fold"] == fold], primary)
        per_fold.append({"fold": fold, "speakers": first["fold_speakers"][str(fold)], "n": m["n"],
                         "wa": m["wa"], "ua": m["ua"], "recalls": m["recalls"]})
    command = shlex.join(["python", "docs/ensemble_screen.py", "-o", str(out),
                          *(["--average", primary] if primary != "probs" else []), *runs])
    rule = {"probs": f"mean over the {len(runs)} members' utterance probabilities",
            "logits": f"mean over the {len(runs)} members' utterance logits, as a `ser-cli ensemble` "
                      "model scores"}[primary]
    metrics = {
        "classes": classes, "primary_average": primary,
        "scoring": f"utterance score = {rule} (each member averages its segment logits, D4)",
        "wa": main_m["wa"], "ua": main_m["ua"], "recalls": main_m["recalls"], "support": main_m["support"],
        "confusion": main_m["confusion"], "n_utterances": main_m["n"], "by_average": by_average,
        "by_corpus": by_corpus, "per_fold": per_fold,
        **{key: first[key] for key in ("n_folds", "folds_spec", "folds_run", "fold_speakers", "partial",
                                       "epochs", "configs", "data")},
        "command": command,
        "ensemble_of": [{"path": run, "command": meta["command"],
                         "seed": meta["configs"]["train_config"].get("seed"),
                         "widths": meta["configs"]["model_config"].get("widths")}
                        for run, meta in zip(runs, metas)],
        "skipped": [s for i, m in enumerate(metas) for s in m["skipped"]
                    if all(s not in earlier["skipped"] for earlier in metas[:i])],
        "seconds": round(sum(m["seconds"] for m in metas), 3),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    _write_predictions(out / "predictions.csv", predictions, classes, primary)
    _write_metrics_csv(out / "metrics.csv", metrics, classes)
    suffix = " (partial)" if metrics["partial"] else ""
    _plot_confusion(out / "confusion.png", np.asarray(main_m["confusion"]), classes,
                    f"WA {100 * main_m['wa']:.1f} %  UA {100 * main_m['ua']:.1f} %{suffix}")
    for family, m in by_corpus.items():
        _plot_confusion(out / f"confusion_{family}.png", np.asarray(m["confusion"]), m["classes"],
                        f"{family}: WA {100 * m['wa']:.1f} %  UA {100 * m['ua']:.1f} %{suffix}")
    (out / "command.txt").write_text(command + "\n" + "".join(f"# {r}: {m['command']}\n" for r, m in zip(runs, metas)))
    return metrics


def main(argv: list[str]) -> None:
    out, how, against = None, "probs", []
    while argv[:1] in (["-o"], ["--average"], ["--against"]):
        if argv[0] == "-o":
            out = Path(argv[1])
        elif argv[0] == "--against":
            against = [r for r in argv[1].split(",") if r]
        elif argv[1] in ("probs", "logits"):
            how = argv[1]
        else:
            raise SystemExit(f"--average {argv[1]!r}: expected probs or logits")
        argv = argv[2:]
    if not argv:
        raise SystemExit(__doc__)
    runs = argv
    classes, rows = members(runs)
    rights = []
    for run, member in zip(runs, rows):
        by_corpus, pooled, right = score(member, classes)
        rights.append(right)
        print(f"{run:<28} {line(by_corpus, pooled)}")
    by_corpus, pooled, right_ens = score(average(rows, how), classes)
    print(f"{'ensemble of ' + str(len(runs)):<28} {line(by_corpus, pooled)}")
    # pooled, then per corpus when the runs mix corpora
    families = sorted({r["family"] for r in rows[0]})
    groups = [("", set(right_ens))]
    if len(families) > 1:
        groups += [(NAMES.get(f, f) + " ", {r["utt"] for r in rows[0] if r["family"] == f}) for f in families]
    others = list(zip(runs, rights))
    if against:
        other_classes, other_rows = members(against)
        if other_classes != classes:
            raise SystemExit(f"--against {','.join(against)}: its classes differ from {runs[0]}'s")
        by_corpus, pooled, right_other = score(average(other_rows, how), classes)
        name = "ensemble of " + "+".join(against) if len(against) > 1 else against[0]
        print(f"{name}: {line(by_corpus, pooled)}")
        shared = set(right_ens) & set(right_other)
        if len(shared) != len(right_ens):
            raise SystemExit(f"--against: its runs score {len(shared)} of the ensemble's {len(right_ens)} utterances")
        others.append((name, right_other))
    for run, right in others:
        for name, utts in groups:
            only_ens, only_run, p = mcnemar({u: right_ens[u] for u in utts}, {u: right[u] for u in utts})
            print(f"  vs {run}: {name}right only with the ensemble {only_ens}, only with {run} {only_run}, {fmt_p(p)}")
    if out is not None:
        m = write_report(out, runs, how)
        print(f"{out}: WA {100 * m['wa']:.1f} UA {100 * m['ua']:.1f} over {m['n_utterances']} utterances")


if __name__ == "__main__":
    main(sys.argv[1:])
