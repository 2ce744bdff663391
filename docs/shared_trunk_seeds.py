"""Issue #8's accuracy rule for the shared trunk, over three seeds, from committed outputs.

For each seed the inner screening fold (docs/results.md, "Screening the levers") was trained
twice, with the default per-segment scaling (D1 ``max``) and with one scale per utterance
(``--normalization utterance``, which the shared trunk needs); the utterance-normalised model was
then scored both per segment and with ``--shared-trunk`` (``evaluate --reuse-models``: same
weights, only the scoring differs). The rule for making the shared trunk the default: UA, mean of
three seeds, at most one point below per-segment scoring, and at least 98 % of segment labels
equal to per-segment scoring's.

Segment labels are the arg-max of each segment's logits in the fold's ``result.json``
(``fold_01_result.json`` next to the run's metrics).

    python docs/shared_trunk_seeds.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

SCREEN = Path(__file__).resolve().parent / "results" / "screening"
SEEDS = (0, 1, 2)


def runs(seed: int) -> dict[str, str]:
    tag = "" if seed == 0 else f"-s{seed}"
    return {
        "max, per segment": f"ser12-adamw{tag}",
        "utterance, per segment": f"ser12-adamw-utt{tag}",
        "utterance, shared trunk": f"ser12-adamw-utt{tag}-shared-trunk",
    }


def uas(run: str) -> tuple[float, float, float]:
    m = json.loads((SCREEN / run / "metrics.json").read_text())
    return 100 * m["by_corpus"]["emodb"]["ua"], 100 * m["by_corpus"]["ravdess"]["ua"], 100 * m["ua"]


def labels(run: str) -> tuple[dict[str, int], dict[tuple[str, int], int]]:
    r = json.loads((SCREEN / run / "fold_01_result.json").read_text())
    utt, seg = {}, {}
    for u in r["utterances"]:
        logits = np.asarray(u["segment_logits"], dtype=float)
        utt[u["path"]] = int(np.argmax(logits.mean(axis=0)))
        for i, row in enumerate(logits):
            seg[(u["path"], i)] = int(np.argmax(row))
    return utt, seg


def agreement(a: str, b: str) -> tuple[int, int, int, int]:
    (ua, sa), (ub, sb) = labels(a), labels(b)
    if sa.keys() != sb.keys():
        raise SystemExit(f"{a} and {b} scored different segments")
    return (sum(sa[k] == sb[k] for k in sa), len(sa), sum(ua[k] == ub[k] for k in ua), len(ua))


def main() -> None:
    names = list(runs(0))
    table = {name: [] for name in names}
    print("| seed | scoring | EMO-DB UA | RAVDESS UA | pooled UA |")
    print("|---|---|---|---|---|")
    agree = []
    for seed in SEEDS:
        for name, run in runs(seed).items():
            table[name].append(uas(run))
            e, r, p = table[name][-1]
            print(f"| {seed} | {name} | {e:.1f} | {r:.1f} | {p:.1f} |")
        agree.append(agreement(runs(seed)["utterance, per segment"], runs(seed)["utterance, shared trunk"]))
    for name in names:
        e, r, p = np.mean(table[name], axis=0)
        print(f"| mean | {name} | {e:.1f} | {r:.1f} | {p:.1f} |")
    print()
    print("| seed | segment labels equal | utterance labels equal |")
    print("|---|---|---|")
    for seed, (s, n, u, m) in zip(SEEDS, agree):
        print(f"| {seed} | {s} / {n} ({100 * s / n:.1f} %) | {u} / {m} ({100 * u / m:.1f} %) |")
    s, n, u, m = (sum(col) for col in zip(*agree))
    print(f"| all | {s} / {n} ({100 * s / n:.1f} %) | {u} / {m} ({100 * u / m:.1f} %) |")
    shared = np.mean(table["utterance, shared trunk"], axis=0)
    for base in ("max, per segment", "utterance, per segment"):
        diff = shared - np.mean(table[base], axis=0)
        print(f"shared trunk minus {base}: EMO-DB {diff[0]:+.1f}, RAVDESS {diff[1]:+.1f}, "
              f"pooled {diff[2]:+.1f} UA points (mean of {len(SEEDS)} seeds)")


if __name__ == "__main__":
    main()
