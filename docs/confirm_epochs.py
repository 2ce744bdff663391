"""Issue #10's confirmation run against the first bundled model's recipe, on the same test folds.

Compares an evaluation run with one setting changed, such as the number of epochs or the trunk
widths (default: ``results/default-model/joint``, the 48-epoch bundled model's joint EMO-DB +
RAVDESS evaluation), with a reference run on the same folds (default:
``results/default-model-12ep/joint``, the first bundled model's, 12 epochs).
Where the new run is partial, the reference is pooled over the same folds, so both rows cover
the same test utterances. Prints a
Markdown table: WA / UA per corpus and pooled, and the paired count of utterances right only with
each run with its exact McNemar p.

    python docs/confirm_epochs.py [RUN [REFERENCE]]    (folders under docs/results/)

e.g. ``default-model/cross-corpus default-model-12ep/cross-corpus`` for the cross-corpus runs,
``wide4 default-model/joint`` for the wider trunk against the bundled model's width.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

from render_paper_tables import fmt_p, mcnemar

from ser_cli.evaluation import confusion_matrix, metrics_from_confusion

ROOT = Path(__file__).resolve().parent / "results"


def rows(run_dir: Path, folds: list[int]) -> dict[str, tuple[str, str, str]]:
    """``corpus:utt`` -> (corpus, true, pred) over ``folds`` (corpus None in a one-corpus run)."""
    with open(run_dir / "predictions.csv", newline="") as f:
        out = {}
        for r in csv.DictReader(f):
            if int(r["fold"]) in folds:
                corpus = r["speaker"].split(":")[0] if ":" in r["speaker"] else None
                out[f"{corpus}:{r['utt']}"] = (corpus, r["true"], r["pred"])
        return out


def scores(preds: dict[str, tuple[str, str, str]], classes: list[str], corpus: str | None) -> str:
    sel = [(t, p) for c, t, p in preds.values() if corpus is None or c == corpus]
    m = metrics_from_confusion(
        confusion_matrix([classes.index(t) for t, _ in sel], [classes.index(p) for _, p in sel],
                         len(classes)), classes)
    return f"{100 * m['wa']:.1f} / {100 * m['ua']:.1f}"


def main() -> None:
    run_dir = ROOT / (sys.argv[1] if len(sys.argv) > 1 else "default-model/joint")
    reference = ROOT / (sys.argv[2] if len(sys.argv) > 2 else "default-model-12ep/joint")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    ref_metrics = json.loads((reference / "metrics.json").read_text())
    folds, classes = metrics["folds_run"], metrics["classes"]
    if classes != ref_metrics["classes"]:
        raise SystemExit(f"{run_dir} and {reference} have different classes")
    new, ref = rows(run_dir, folds), rows(reference, folds)
    if new.keys() != ref.keys():
        raise SystemExit(f"{run_dir} and {reference} scored different utterances on folds {folds}")
    label = f"folds {','.join(map(str, folds))} of {metrics['n_folds']}"
    corpora = sorted({c for c, _, _ in new.values() if c is not None})
    print(f"| run ({label}) | epochs | trunk widths | " + "".join(f"{c} WA / UA | " for c in corpora)
          + "pooled WA / UA |")
    print("|---|---|---|" + "---|" * len(corpora) + "---|")
    name_new, name_ref = run_dir.relative_to(ROOT).as_posix(), reference.relative_to(ROOT).as_posix()
    for name, m, preds in ((name_ref, ref_metrics, ref), (name_new, metrics, new)):
        widths = ",".join(map(str, m["configs"]["model_config"]["widths"]))
        print(f"| {name} | {m['epochs']} | {widths} | " + "".join(f"{scores(preds, classes, c)} | " for c in corpora)
              + f"{scores(preds, classes, None)} |")
    print()
    for corpus in [*corpora, None]:
        keep = [u for u in new if corpus is None or new[u][0] == corpus]
        a = {u: new[u][1] == new[u][2] for u in keep}
        b = {u: ref[u][1] == ref[u][2] for u in keep}
        only_new, only_ref, p = mcnemar(a, b)
        print(f"{corpus or 'pooled'}: {len(keep)} utterances, right only with {name_new}: "
              f"{only_new}, only with {name_ref}: {only_ref}, exact McNemar {fmt_p(p)}")


if __name__ == "__main__":
    main()
