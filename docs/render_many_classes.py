"""Render docs/results.md's section on 7-class EMO-DB and 8-class RAVDESS at 48 epochs.

Reads ``docs/results/classes48/<run>/`` (``docs/many_classes.sh``), pairs each run with the same
command at 12 epochs (``docs/results/paper/<run>/``) over the same folds, adds the 7-class data
lever's inner-fold screen and its winner on the test folds, and replaces the block
between ``<!-- begin: classes48 -->`` and ``<!-- end: classes48 -->`` (inserted before the Fig. 2
section the first time).

    python docs/render_many_classes.py
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from ensemble_screen import average, folder, members, score
from render_paper_tables import correct, fmt_p, fold_metrics, mcnemar, pooled, write_block

from ser_cli.card import render_evaluation

ROOT = Path(__file__).resolve().parent
RUNS = ROOT / "results" / "classes48"
TWELVE = ROOT / "results" / "paper"
SCREEN = ROOT / "results" / "screening"
#: the 7-class levers on the inner screening fold (many_classes.sh): (runs, training data, the
#: runs it is paired with on the same EMO-DB test utterances). Several runs are an ensemble of
#: them: their utterance probabilities averaged (ensemble_screen.py).
SCREEN7 = [(("ser48-7c-emodb",), "EMO-DB 2 s copies (`emodb/`) alone", None),
           (("ser48-7c-originals",), "EMO-DB, full-length originals where they exist", ("ser48-7c-emodb",)),
           (("ser48-7c-joint",), "EMO-DB with originals, and RAVDESS's six shared classes", ("ser48-7c-emodb",)),
           (("ser48-7c-emodb-s1",), "EMO-DB 2 s copies alone, seed 1", None),
           (("ser48-7c-originals-s1",), "EMO-DB with originals, seed 1", ("ser48-7c-emodb-s1",)),
           (("ser48-7c-joint-s1",), "EMO-DB with originals + RAVDESS, seed 1", ("ser48-7c-emodb-s1",)),
           (("ser48-7c-joint-wide",), "EMO-DB with originals + RAVDESS, Conv2–Conv5 1.5× as wide "
            "(`--widths 48,72,96,120`)", ("ser48-7c-joint",)),
           (("ser48-7c-joint-wide-s1",), "EMO-DB with originals + RAVDESS, 1.5× as wide, seed 1",
            ("ser48-7c-joint-s1",)),
           (("ser48-7c-joint", "ser48-7c-joint-s1"), "ensemble of the two joint seeds", ("ser48-7c-joint",)),
           (("ser48-7c-joint", "ser48-7c-joint-wide"), "ensemble of the joint and the wide joint model, seed 0",
            ("ser48-7c-joint-wide",)),
           (("ser48-7c-joint-wide", "ser48-7c-joint-wide-s1"), "ensemble of the two wide joint seeds",
            ("ser48-7c-joint-wide",)),
           (("ser48-7c-joint-s2",), "EMO-DB with originals + RAVDESS, seed 2", ("ser48-7c-joint",)),
           (("ser48-7c-joint", "ser48-7c-joint-s1", "ser48-7c-joint-s2"), "ensemble of the three joint seeds",
            ("ser48-7c-joint", "ser48-7c-joint-s1")),
           (("ser48-7c-joint-fmax8k",), "EMO-DB with originals + RAVDESS, the 0–8 kHz band (`--fmax 8000`)",
            ("ser48-7c-joint",)),
           (("ser48-7c-joint-fmax8k-s1",), "EMO-DB with originals + RAVDESS, the 0–8 kHz band, seed 1",
            ("ser48-7c-joint-s1",)),
           (("ser48-7c-joint", "ser48-7c-joint-s1", "ser48-7c-joint-fmax8k-s1"),
            "ensemble of the two joint seeds and the 0–8 kHz seed 1", ("ser48-7c-joint", "ser48-7c-joint-s1")),
           (("ser48-7c-joint-cellbal",), "EMO-DB with originals + RAVDESS, class weights counted within "
            "each corpus (`--class-balance-scope corpus`)", ("ser48-7c-joint",)),
           (("ser48-7c-joint-cellbal-s1",), "EMO-DB with originals + RAVDESS, class weights within each "
            "corpus, seed 1", ("ser48-7c-joint-s1",)),
           (("ser48-7c-joint-cellbal", "ser48-7c-joint-cellbal-s1"),
            "ensemble of the two seeds with class weights within each corpus",
            ("ser48-7c-joint", "ser48-7c-joint-s1"))]
#: the 7-class candidate (originals + RAVDESS's six shared classes) on the test folds: its two
#: seeds and their ensemble, in this order (the first is the seed the others are paired with);
#: the title of its full report where one is shown; and the EMO-DB-only 48-epoch run they are
#: all paired with on the same EMO-DB speakers' folds
JOINT7 = [("joint7", "EMO-DB with originals + RAVDESS", "48 epochs"),
          ("joint7-s1", "the same, seed 1", None),
          ("joint7-ens", "ensemble of seeds 0 and 1", "ensemble of two seeds at 48 epochs")]
JOINT7_REF = "emodb7"
# (run, title, SVM baseline WA / UA on the same folds, issue #10's UA target)
RUNS_SHOWN = [("emodb7", "EMO-DB `emodb/`, seven classes, one fold per speaker", (63.7, 61.1), 75),
              ("ravdess8", "RAVDESS, eight classes, six folds of four actors", (46.5, 45.2), 60)]


def render() -> str:
    out = ["<!-- begin: classes48 (rendered by docs/render_many_classes.py) -->",
           "## Seven and eight classes at the recipe's 48 epochs (issue #10)", "",
           "The `ser` recipe at its default 48 epochs, on the SVM baseline's folds, trained on the "
           "one corpus alone (no second corpus, no full-length originals). Script: "
           "[`many_classes.sh`](many_classes.sh) (resumable); outputs and commands: "
           "[`results/classes48/`](results/classes48/). Each run is paired with the same command "
           "at 12 epochs (the paper-experiment rows above, `results/paper/`) on the same test utterances.", "",
           "| run | folds | epochs | WA | UA | SVM WA / UA | target UA | right only at 48 / only at 12 epochs² |",
           "|---|---|---|---|---|---|---|---|"]
    sections = []
    for run, title, (svm_wa, svm_ua), target in RUNS_SHOWN:
        path = RUNS / run / "metrics.json"
        if not path.is_file():
            out.append(f"| {title} | not run | | | | {svm_wa} / {svm_ua} | ≥ {target} | |")
            continue
        m = json.loads(path.read_text())
        folds = m["folds_run"]
        scope = f"{len(folds)} of {m['n_folds']}" + (" (**partial**)" if m["partial"] else "")
        wa12, ua12 = pooled(run, folds)  # the 12-epoch run, results/paper/<run>, same folds
        only48, only12, p = mcnemar(correct(RUNS / run, folds=folds), correct(TWELVE / run, folds=folds))
        out.append(f"| {title} | {scope} | 12 | {wa12:.1f} | {ua12:.1f} | {svm_wa} / {svm_ua} | ≥ {target} | – |")
        out.append(f"| | {scope} | {m['epochs']} | **{100 * m['wa']:.1f}** | **{100 * m['ua']:.1f}** "
                   f"| | | {only48} / {only12}, {fmt_p(p)} |")
        sections += [render_evaluation(f"{title}, {m['epochs']} epochs", m), ""]
        if m.get("pooled_from"):  # folds run into separate folders, pooled by pool_runs.py
            sections[-1:-1] = ["",
                "Its folds ran in two sessions into separate folders, and the first part's fold "
                "folders did not survive, so [`pool_runs.py`](pool_runs.py) pooled the two parts' "
                "reports with `ser_cli.evaluation`'s own metric functions (it refuses parts whose "
                "settings, data or folds differ). The parts:", "",
                *(f"- folds {', '.join(map(str, part['folds_run']))}: `{part['command']}` "
                  f"(`{Path(part['path']).relative_to('docs')}/`)" for part in m["pooled_from"])]
    out += ["", "² Paired on the same test utterances: right only with 48 epochs / only with 12, exact McNemar p.", ""]
    out += screen7()
    joint_lines, joint_sections = joint7()
    out += joint_lines
    out += sections + joint_sections
    out.append("<!-- end: classes48 -->")
    return "\n".join(out)


def screen7() -> list[str]:
    """The 7-class lever table (the rows whose runs are committed), or nothing before any is."""
    done = [row for row in SCREEN7 if all((folder(run) / "metrics.json").is_file() for run in row[0])]
    if not done:
        return []
    out = ["### Seven classes: the data, trunk and ensemble levers, screened on the inner fold", "",
           "Outer fold 1's training speakers (EMO-DB speaker 03 held out), inner test speakers 08, 09 "
           "and 10 (139 utterances), 48 epochs, the `ser` recipe; the joint runs also hold out RAVDESS "
           "actors 01–04 and test RAVDESS actors 05–09 (not counted here). An ensemble averages its "
           "members' utterance probabilities (`cd docs && python ensemble_screen.py RUN RUN`). "
           "Commands: [`many_classes.sh`](many_classes.sh); outputs: `results/screening/<run>/`.", "",
           "| run | training data | EMO-DB test WA | EMO-DB test UA | paired with | right only here / only there³ |",
           "|---|---|---|---|---|---|"]
    for runs, what, ref in done:
        e, here = emodb_scores(runs)
        pair = "– | –"
        if ref is not None:
            _, base = emodb_scores(ref)
            assert here.keys() == base.keys(), f"{runs}: not {ref}'s EMO-DB test utterances"
            only_here, only_there, p = mcnemar(here, base)
            pair = f"{' + '.join(f'`{r}`' for r in ref)} | {only_here} / {only_there}, {fmt_p(p)}"
        out.append(f"| {' + '.join(f'`{r}`' for r in runs)} | {what} | {100 * e['wa']:.1f} | {100 * e['ua']:.1f} | {pair} |")
    return out + ["", "³ On the same EMO-DB test utterances (an original and its 2 s copy are one "
                      "utterance), exact McNemar p.", ""]


def emodb_scores(runs: tuple[str, ...]) -> tuple[dict, dict[str, bool]]:
    """EMO-DB metrics of a screening run or of the ensemble of several, and utterance -> right."""
    classes, rows = members(list(runs))
    by_corpus, pooled, right = score(average(rows), classes)
    emodb = {r["utt"] for r in rows[0] if r["family"] in ("emodb", "")}
    return by_corpus.get("emodb", pooled), {u: ok for u, ok in right.items() if u in emodb}


def emodb_correct(run_dir: Path) -> dict[str, bool]:
    """EMO-DB utterance -> right, of an evaluate report over several corpora."""
    with open(run_dir / "predictions.csv", newline="") as f:
        return {row["utt"]: row["pred"] == row["true"] for row in csv.DictReader(f)
                if row["speaker"].startswith("emodb:")}


def joint7() -> tuple[list[str], list[str]]:
    """The 7-class joint runs on the test folds (table lines, full reports), or nothing before they are committed."""
    shown = [entry for entry in JOINT7 if (RUNS / entry[0] / "metrics.json").is_file()]
    if not shown:
        return [], []
    first = json.loads((RUNS / shown[0][0] / "metrics.json").read_text())
    folds = first["folds_run"]
    speakers = sorted(s.split(":")[1] for f in folds for s in first["fold_speakers"][str(f)] if s.startswith("emodb:"))
    ref_wa, ref_ua = fold_metrics(RUNS / JOINT7_REF, folds)
    ref = correct(RUNS / JOINT7_REF, folds=folds)
    seed0 = emodb_correct(RUNS / shown[0][0])
    (svm_wa, svm_ua), target = next((svm, t) for run, _, svm, t in RUNS_SHOWN if run == JOINT7_REF)
    out = ["### Seven classes, trained jointly, on the test folds", "",
           "The inner fold's winner on the protocol's folds: EMO-DB with its full-length originals "
           "where they exist, and RAVDESS's six shared classes, one model per fold "
           "(`--folds emodb=10,ravdess=6`: fold *i* holds out EMO-DB speaker *i* and, for *i* ≤ 6, "
           "RAVDESS actors 4*i*−3 … 4*i*), 48 epochs; then a second seed of it, and the two seeds' "
           "ensemble (each utterance's probabilities averaged, `docs/ensemble_screen.py -o`). "
           "EMO-DB's numbers are over its own 7-class "
           f"utterances (`by_corpus`), of speakers {', '.join(speakers)}. Commands:", ""]
    out += [f"- `{run}`: `{json.loads((RUNS / run / 'metrics.json').read_text())['command']}`" for run, *_ in shown]
    out += ["",
           "| run | folds | EMO-DB WA | EMO-DB UA | RAVDESS (6 classes) WA / UA "
           "| right only here / only in the EMO-DB-only run⁴ | right only here / only with seed 0⁴ |",
           "|---|---|---|---|---|---|---|",
           f"| MFCC + SVM baseline (the issues), EMO-DB 2 s copies | 10 of 10 | {svm_wa} | {svm_ua} | – | – | – |",
           f"| EMO-DB `emodb/` alone (`{JOINT7_REF}` above), same folds | {len(folds)} of {first['n_folds']} "
           f"| {ref_wa:.1f} | {ref_ua:.1f} | – | – | – |"]
    reports = []
    for run, label, title in shown:
        m = json.loads((RUNS / run / "metrics.json").read_text())
        assert m["folds_run"] == folds, f"{run}: not the folds of {shown[0][0]}"
        scope = f"{len(folds)} of {m['n_folds']}" + (" (**partial**)" if m["partial"] else "")
        e, r = m["by_corpus"]["emodb"], m["by_corpus"]["ravdess"]
        here = emodb_correct(RUNS / run)
        assert ref.keys() <= here.keys(), f"{run}: not {JOINT7_REF}'s EMO-DB test utterances"
        a, b, p = mcnemar(here, ref)
        a0, b0, p0 = mcnemar(here, seed0)
        vs_seed0 = "–" if run == shown[0][0] else f"{a0} / {b0}, {fmt_p(p0)}"
        out.append(f"| {label} (`{run}`) | {scope} | **{100 * e['wa']:.1f}** | **{100 * e['ua']:.1f}** "
                   f"| {100 * r['wa']:.1f} / {100 * r['ua']:.1f} | {a} / {b}, {fmt_p(p)} | {vs_seed0} |")
        if title:
            reports += [render_evaluation(f"Seven classes, EMO-DB with originals + RAVDESS, {title}", m), ""]
    out += [f"| issue #10's target | 10 of 10 | – | ≥ {target} | – | – | – |",
            "", "⁴ On the same EMO-DB test utterances (an original and its 2 s copy are one utterance), "
            "exact McNemar p.", ""]
    return out, reports


def main() -> None:
    write_block("classes48", render(), "## Fig. 2:")


if __name__ == "__main__":
    main()
