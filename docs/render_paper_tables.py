"""Render the paper-experiment tables of docs/results.md from committed ``ser-cli evaluate`` outputs.

Reads ``docs/results/paper/<run>/{metrics.json,predictions.csv}`` (Table 1 heads, the D1/D3/D5
variants and the 7-class run on EMO-DB ``emodb/``, one fold per speaker; the 8-class RAVDESS run;
the joint run rescored under ``docs/results/rescore/``) and replaces the
block between ``<!-- begin: paper experiments -->`` and ``<!-- end: paper experiments -->``.
Where a run finished fewer folds than the reference run, the reference is re-pooled over the same
folds from its predictions, so every comparison is made on the same test speakers.

    python docs/render_paper_tables.py
"""

from __future__ import annotations

import csv
import json
import re
from math import comb
from pathlib import Path

from ser_cli.card import render_evaluation
from ser_cli.evaluation import confusion_matrix, metrics_from_confusion

ROOT = Path(__file__).resolve().parent
RUNS = ROOT / "results" / "paper"
DOC = ROOT / "results.md"

# Paper's Table 1 on IEMOCAP (WA / UA, %), SPEC §5.
PAPER = {"gap": (71.35, 67.54), "bilinear": (69.17, 64.16), "attention": (71.75, 68.06)}
HEADS = [("gap", "GAP (CNN_TF_GAP)"), ("bilinear", "bilinear (CNN_TF_Bilinear)"),
         ("attention", "attention pooling (CNN_TF_Att.pooling)")]
# (decision, reference run and its setting, variant run and its setting)
RESCORE = ROOT / "results" / "rescore"
RESCORED = [("tail-drop", "hop 0.4 s, no tail segment (`--tail drop`)"),
            ("hop20", "hop 0.2 s + tail (`--score-hop 20`)"),
            ("hop100", "hop 1 s + tail (`--score-hop 100`)"),
            ("hop100-tail-drop", "hop 1 s, no tail segment (`--score-hop 100 --tail drop`)")]
DECISIONS = [
    ("D1 scaling before μ-law", ("attention", "max (per segment)"), ("minmax", "min–max (per segment)")),
    ("D3 attention pooling", ("attention", "sum over positions"), ("mean", "mean over positions")),
    ("D5 padding of 2.00 s clips (197 → 200 frames)", ("attention", "repeat"), ("padzeros", "zeros")),
]


def load(run: str) -> dict | None:
    path = RUNS / run / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else None


def fold_metrics(run_dir: Path, folds: list[int]) -> tuple[float, float]:
    """WA, UA (%) of run_dir/predictions.csv over ``folds`` only."""
    classes = json.loads((run_dir / "metrics.json").read_text())["classes"]
    true, pred = [], []
    with open(run_dir / "predictions.csv", newline="") as f:
        for row in csv.DictReader(f):
            if int(row["fold"]) in folds:
                true.append(classes.index(row["true"]))
                pred.append(classes.index(row["pred"]))
    m = metrics_from_confusion(confusion_matrix(true, pred, len(classes)), classes)
    return 100 * m["wa"], 100 * m["ua"]


def pooled(run: str, folds: list[int]) -> tuple[float, float]:
    """WA, UA (%) of the paper experiment ``run`` over ``folds`` only."""
    return fold_metrics(RUNS / run, folds)


def correct(run_dir: Path, column: str = "pred", folds: list[int] | None = None) -> dict[str, bool]:
    """utterance -> whether ``column`` of run_dir/predictions.csv is its true label."""
    with open(run_dir / "predictions.csv", newline="") as f:
        return {row["utt"]: row[column] == row["true"] for row in csv.DictReader(f)
                if folds is None or int(row["fold"]) in folds}


def mcnemar(a: dict[str, bool], b: dict[str, bool]) -> tuple[int, int, float]:
    """(right only in a, right only in b, exact two-sided McNemar p) over the utterances both have."""
    common = a.keys() & b.keys()
    only_a = sum(a[u] and not b[u] for u in common)
    only_b = sum(b[u] and not a[u] for u in common)
    n, k = only_a + only_b, min(only_a, only_b)
    p = min(1.0, 2 * sum(comb(n, i) for i in range(k + 1)) / 2 ** n) if n else 1.0
    return only_a, only_b, p


def fmt_p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}" if p < 0.1 else f"p = {p:.2f}"


def paired(run: str, ref: str = "attention") -> str:
    """Table cell: utterances right only with ``run`` / only with ``ref`` (same folds), and p."""
    folds = load(run)["folds_run"]
    only_run, only_ref, p = mcnemar(correct(RUNS / run, folds=folds), correct(RUNS / ref, folds=folds))
    return f"{only_run} / {only_ref}, {fmt_p(p)}"


def d4_discordance(run_dir: Path) -> str:
    """Sentence counting the utterances the D4 average changes the outcome of, and the McNemar p."""
    only_primary, only_other, p = mcnemar(correct(run_dir, "pred"), correct(run_dir, "pred_probs"))
    return (f"Right only with the primary average (`pred`): {only_primary} utterances; only with the "
            f"other (`pred_probs`): {only_other}; exact McNemar {fmt_p(p)}.")


def folds_note(metrics: dict) -> str:
    done, total = metrics["folds_run"], metrics["n_folds"]
    return f"{total} folds" if len(done) == total else f"**partial: folds {','.join(map(str, done))} of {total}**"


def segments_per_utterance(run_dir: Path) -> float:
    with open(run_dir / "predictions.csv", newline="") as f:
        counts = [int(row["n_segments"]) for row in csv.DictReader(f)]
    return sum(counts) / len(counts)


def rescored_rows() -> list[str]:
    """D5 tail and scoring hop: the joint run's fold models rescored (``--reuse-models``)."""
    joint_dir = ROOT / "results" / "default-model-12ep" / "joint"
    runs = [(name, label) for name, label in RESCORED if (RESCORE / name / "metrics.json").is_file()]
    if not runs or not (joint_dir / "metrics.json").is_file():
        return []
    out = ["### D5 tail and test-time shifted segmentation (the joint run's models, rescored)", "",
           "The first bundled model's 12-epoch joint evaluation (EMO-DB full-length originals + RAVDESS, 10 + 6 folds) "
           "scored again by the same 10 fold models with one scoring setting changed "
           "(`ser-cli evaluate ... --reuse-models`; training never sees these settings in the `ser` "
           "recipe, so no model is retrained). Outputs: [`results/rescore/`](results/rescore/).", "",
           "| scoring | segments per utterance | EMO-DB WA | EMO-DB UA | RAVDESS WA | RAVDESS UA "
           "| right only here / only with the default² |",
           "|---|---|---|---|---|---|---|"]
    for name, run_dir, label in [("joint", joint_dir, "hop 0.4 s + end-aligned tail segment (default)")] + [
            (n, RESCORE / n, lab) for n, lab in runs]:
        m = json.loads((run_dir / "metrics.json").read_text())["by_corpus"]
        vs = "–"
        if name != "joint":
            only_run, only_ref, p = mcnemar(correct(run_dir), correct(joint_dir))
            vs = f"{only_run} / {only_ref}, {fmt_p(p)}"
        out.append(f"| {label} | {segments_per_utterance(run_dir):.2f} | {100 * m['emodb']['wa']:.1f} "
                   f"| {100 * m['emodb']['ua']:.1f} | {100 * m['ravdess']['wa']:.1f} "
                   f"| {100 * m['ravdess']['ua']:.1f} | {vs} |")
    return out + ["", "Chosen on the inner screening fold, not here: see \"Scoring settings on the inner "
                  "fold\" under \"Screening the levers\", and D5 in [`decisions.md`](decisions.md).", ""]


def render() -> str:
    out = ["<!-- begin: paper experiments (rendered by docs/render_paper_tables.py) -->",
           "## The paper's experiments on EMO-DB",
           "",
           "EMO-DB `emodb/` (535 files, 2 s copies at 22.05 kHz), one fold per speaker (10 folds), "
           "`ser` recipe (12 epochs, 2 crops per utterance per epoch); each row changes one thing "
           "against the default. Script: [`paper_experiments.sh`](paper_experiments.sh) (resumable); commands: `command.txt` next to each run's outputs under "
           "[`results/paper/`](results/paper/). Where a run is partial, its reference is pooled "
           "over the same folds.", ""]
    ref = load("attention")
    # Table 1
    out += ["### Table 1: pooling heads (4 classes)", "",
            "| head | EMO-DB WA | EMO-DB UA | folds | right only here / only with attention² | paper, IEMOCAP WA | paper UA |",
            "|---|---|---|---|---|---|---|"]
    for run, title in HEADS:
        m = load(run)
        if m is None:
            out.append(f"| {title} | not run | | | | {PAPER[run][0]:.2f} | {PAPER[run][1]:.2f} |")
            continue
        vs = paired(run) if run != "attention" else "–"
        out.append(f"| {title} | {100 * m['wa']:.1f} | {100 * m['ua']:.1f} | {folds_note(m)} | {vs} "
                   f"| {PAPER[run][0]:.2f} | {PAPER[run][1]:.2f} |")
    if ref is not None:
        for run, title in HEADS[:2]:
            m = load(run)
            if m is not None and m["folds_run"] != ref["folds_run"]:
                wa, ua = pooled("attention", m["folds_run"])
                out.append(f"| attention pooling over the same folds as {run} | {wa:.1f} | {ua:.1f} "
                           f"| folds {','.join(map(str, m['folds_run']))} | | | |")
    out += ["", "² Paired comparison on the same test utterances: how many only this head gets right, how "
            "many only attention pooling gets right, and the exact McNemar p-value.", ""]
    # D1-D5
    if ref is not None:
        out += ["### D1, D3, D4, D5 (4 classes, attention head)", "",
                "| decision | setting | WA | UA | folds | right only here / only with the default² |",
                "|---|---|---|---|---|---|"]
        for decision, (ref_run, ref_label), (var_run, var_label) in DECISIONS:
            var = load(var_run)
            if var is None:
                out.append(f"| {decision} | {var_label} | not run | | | |")
                continue
            wa, ua = pooled(ref_run, var["folds_run"])
            folds = folds_note(var)
            out.append(f"| {decision} | {ref_label} (default) | {wa:.1f} | {ua:.1f} | {folds} | – |")
            out.append(f"| | {var_label} | {100 * var['wa']:.1f} | {100 * var['ua']:.1f} | {folds} "
                       f"| {paired(var_run, ref_run)} |")
        # Every emodb/ clip is one segment, so D4 is measured on the 12-epoch joint run,
        # whose EMO-DB utterances are the full-length originals (several segments each).
        joint_path = ROOT / "results" / "default-model-12ep" / "joint" / "metrics.json"
        if joint_path.is_file():
            joint = json.loads(joint_path.read_text())
            for corpus, m in joint["by_corpus"].items():
                first = True
                for average, a in m["by_average"].items():
                    label = f"average of segment {average}" + (" (default)" if average == joint["primary_average"] else "")
                    name = f"D4 utterance score, {corpus} (joint run¹)" if first else ""
                    out.append(f"| {name} | {label} | {100 * a['wa']:.1f} | {100 * a['ua']:.1f} | {len(m['folds'])} folds | |")
                    first = False
            out += ["", "¹ Every `emodb/` clip is a single 2 s segment, so D4 cannot change a result there; it is "
                    "measured on the 12-epoch joint evaluation (EMO-DB full-length originals + RAVDESS, "
                    "[`results/default-model-12ep/joint/`](results/default-model-12ep/joint/)). " + d4_discordance(joint_path.parent), ""]
        out += rescored_rows()
        joint_dir = ROOT / "results" / "default-model-12ep" / "joint"
        if (joint_dir / "metrics.json").is_file():
            joint = json.loads((joint_dir / "metrics.json").read_text())["by_corpus"]["emodb"]
            only_joint, only_ref, p = mcnemar(correct(joint_dir), correct(RUNS / "attention"))
            out += ["### Data: EMO-DB alone against EMO-DB originals + RAVDESS (4 classes, same EMO-DB folds)", "",
                    "| training data | EMO-DB WA | EMO-DB UA | right only here / only with EMO-DB alone² |",
                    "|---|---|---|---|",
                    f"| EMO-DB `emodb/` 2 s copies alone (the Table 1 attention row) | {100 * ref['wa']:.1f} "
                    f"| {100 * ref['ua']:.1f} | – |",
                    f"| EMO-DB full-length originals where they exist + RAVDESS (the 12-epoch joint evaluation) "
                    f"| {100 * joint['wa']:.1f} | {100 * joint['ua']:.1f} | {only_joint} / {only_ref}, {fmt_p(p)} |",
                    "", "Same recipe, same test speakers and utterances (scored from the original recording "
                    "where there is one); the second row also trains on every RAVDESS actor outside the "
                    "fold. The two changes are measured together.", ""]
        out += [render_evaluation("Attention pooling, 4 classes (the Table 1 row in full)", ref), ""]
    seven = load("emodb7")
    if seven is not None:
        out += [render_evaluation(f"Seven classes, attention head ({folds_note(seven)})", seven), "",
                "Reference on the same folds: MFCC + SVM baseline 63.7 / 61.1 (WA / UA); issue #10's "
                "target UA ≥ 75.", ""]
    eight = load("ravdess8")
    if eight is not None:
        out += [render_evaluation(f"RAVDESS, eight classes, six folds of four actors, attention head "
                                  f"({folds_note(eight)})", eight), "",
                "Reference on the same folds: MFCC + SVM baseline 46.5 / 45.2 (WA / UA); issue #10's "
                "target UA ≥ 60.", ""]
    out.append("<!-- end: paper experiments -->")
    return "\n".join(out)


def write_block(name: str, block: str, before: str) -> None:
    """Replace docs/results.md's ``<!-- begin: NAME ... <!-- end: NAME -->`` block with ``block``,
    or insert it before the heading ``before`` the first time."""
    doc = DOC.read_text()
    pattern = re.compile(rf"<!-- begin: {re.escape(name)}.*?<!-- end: {re.escape(name)} -->", re.S)
    if pattern.search(doc):
        doc = pattern.sub(lambda _: block, doc)
    else:
        doc = doc.replace(before, block + "\n\n" + before, 1)
    DOC.write_text(doc)
    print(f"rendered {DOC}")


def main() -> None:
    write_block("paper experiments", render(), "## Screening the levers")


if __name__ == "__main__":
    main()
