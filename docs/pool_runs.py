"""Pool ``ser-cli evaluate`` outputs that ran different folds of one configuration.

``evaluate`` pools from its ``folds/fold_NN/result.json`` files, so folds that ran into one output
folder (or were copied into one) are pooled by rerunning its command without ``--only-folds``.
When only the reported outputs of each part survive (``metrics.json`` and ``predictions.csv``:
the 8-class RAVDESS run at 48 epochs ran folds 1-4 and 5-6 in different sessions, and the fold
folders of the first part were lost with the machine), this rebuilds the pooled report from
those files with ``ser_cli.evaluation``'s own metric functions and writers. Both D4 averages are
pooled (``pred`` and ``pred_<other>`` columns); per-fold rows come from the parts' ``per_fold``.

Parts are refused unless their classes, configs, fold count, fold speakers, data and primary
average agree, and their folds do not overlap.

    python docs/pool_runs.py OUT PART [PART ...]
"""

from __future__ import annotations

import csv
import json
import shlex
import sys
from pathlib import Path

import numpy as np

from ser_cli.evaluation import (
    _plot_confusion,
    _write_metrics_csv,
    confusion_matrix,
    metrics_from_confusion,
)

MUST_AGREE = ("classes", "primary_average", "n_folds", "folds_spec", "fold_speakers", "epochs",
              "configs", "data", "shared_trunk")


def pool(out: Path, parts: list[Path]) -> dict:
    metas = [json.loads((p / "metrics.json").read_text()) for p in parts]
    first = metas[0]
    for part, meta in zip(parts[1:], metas[1:]):
        for key in MUST_AGREE:
            if meta.get(key) != first.get(key):
                raise SystemExit(f"{part}: {key!r} differs from {parts[0]}'s, so they are not one run")
    seen: dict[int, Path] = {}
    for part, meta in zip(parts, metas):
        for fold in meta["folds_run"]:
            if fold in seen:
                raise SystemExit(f"fold {fold} is in both {seen[fold]} and {part}")
            seen[fold] = part
    classes, primary = first["classes"], first["primary_average"]
    other = "probs" if primary == "logits" else "logits"
    rows, header = [], None
    for part in parts:
        with open(part / "predictions.csv", newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader)
            rows += list(reader)
    col = {name: i for i, name in enumerate(header)}
    rows.sort(key=lambda r: int(r[col["fold"]]))  # stable: each part's order within a fold

    def metrics_of(selected, column):
        true = [classes.index(r[col["true"]]) for r in selected]
        pred = [classes.index(r[col[column]]) for r in selected]
        return metrics_from_confusion(confusion_matrix(true, pred, len(classes)), classes)

    by_average = {primary: metrics_of(rows, "pred"), other: metrics_of(rows, f"pred_{other}")}
    main = by_average[primary]
    folds_run = sorted(seen)
    per_fold = sorted((f for meta in metas for f in meta["per_fold"]), key=lambda f: f["fold"])
    for f in per_fold:  # the parts' own per-fold numbers, checked against their predictions
        m = metrics_of([r for r in rows if int(r[col["fold"]]) == f["fold"]], "pred")
        if m["n"] != f["n"] or not np.isclose(m["ua"], f["ua"]):
            raise SystemExit(f"fold {f['fold']}: predictions.csv does not give its metrics.json per_fold row")
    command = shlex.join(["python", "docs/pool_runs.py", str(out), *map(str, parts)])
    metrics = {
        "classes": classes,
        "primary_average": primary,
        "wa": main["wa"],
        "ua": main["ua"],
        "recalls": main["recalls"],
        "support": main["support"],
        "confusion": main["confusion"],
        "n_utterances": main["n"],
        "by_average": by_average,
        "by_corpus": {},
        "per_fold": per_fold,
        **{key: first[key] for key in ("n_folds", "folds_spec", "fold_speakers", "shared_trunk",
                                       "epochs", "configs", "data")},
        "folds_run": folds_run,
        "partial": len(folds_run) < first["n_folds"],
        "command": command,
        "pooled_from": [{"path": str(p), "folds_run": m["folds_run"], "command": m["command"]}
                        for p, m in zip(parts, metas)],
        "skipped": [s for m in metas for s in m["skipped"]],
        "seconds": round(sum(m["seconds"] for m in metas), 3),
    }
    if any(m["by_corpus"] for m in metas):
        raise SystemExit("parts with several corpus families: per-corpus pooling is not implemented here")
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    with open(out / "predictions.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    _write_metrics_csv(out / "metrics.csv", metrics, classes)
    _plot_confusion(out / "confusion.png", np.asarray(main["confusion"]), classes,
                    f"WA {100 * main['wa']:.1f} %  UA {100 * main['ua']:.1f} %"
                    + (" (partial)" if metrics["partial"] else ""))
    (out / "command.txt").write_text(
        command + "\n" + "".join(f"# {p}: {m['command']}\n" for p, m in zip(parts, metas)))
    return metrics


def main() -> None:
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    out, *parts = map(Path, sys.argv[1:])
    m = pool(out, parts)
    print(f"{out}: folds {m['folds_run']} of {m['n_folds']}, {m['n_utterances']} utterances, "
          f"WA {100 * m['wa']:.1f} UA {100 * m['ua']:.1f}")


if __name__ == "__main__":
    main()
