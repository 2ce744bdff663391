"""Issue #10's levers one at a time: render the ablation table from the committed screening runs.

Each run of ``docs/lever_ablations.sh`` is the `ser` recipe on the inner screening fold with one
part taken away or changed (VTLP added, a wider trunk). The reference is ``ser12-adamw`` (the
full recipe, seed 0, the same seed as the ablations) and its seeds 1 and 2, whose spread is the
noise a lever has to beat; at 48 epochs, ``ser48-adamw`` and its seeds 1 and 2.
Prints a Markdown table: UA per corpus and pooled, and against the full recipe with the same seed
and epochs, the pooled difference and the paired count of utterances right only with each, with
its exact McNemar p. Runs not there yet are left out.

    cd docs && python lever_ablations.py
"""

from __future__ import annotations

import json
from pathlib import Path

from render_paper_tables import correct, fmt_p, mcnemar

SCREEN = Path(__file__).resolve().parent / "results" / "screening"
REFERENCE = "ser12-adamw"
SEEDS = [REFERENCE, f"{REFERENCE}-s1", f"{REFERENCE}-s2"]
#: the full recipe at 48 epochs, seeds 0-2: seeds 0 and 1 are the references of the 48-epoch runs
SEEDS_48 = ["ser48-adamw", "ser48-adamw-s1", "ser48-adamw-s2"]
#: (run, what it changes, the run it is paired with: the full recipe with the same seed and epochs)
ABLATIONS = [
    ("ser12-no-speed", "without speed perturbation (`--speed off`)", REFERENCE),
    ("ser12-no-masks", "without SpecAugment masks (`--freq-masks 0 --time-masks 0`)", REFERENCE),
    ("ser12-no-mixup", "without mixup (`--mixup 0`)", REFERENCE),
    ("ser12-no-smoothing", "without label smoothing (`--label-smoothing 0`)", REFERENCE),
    ("ser12-no-balance", "without class and corpus loss weights", REFERENCE),
    ("ser12-vtlp", "with VTLP 0.9–1.1 added (`--vtlp 0.9,1.1`)", REFERENCE),
    ("ser12-no-speed-s1", "without speed perturbation, seed 1", f"{REFERENCE}-s1"),
    ("ser12-no-speed-s2", "without speed perturbation, seed 2", f"{REFERENCE}-s2"),
    ("ser12-wide", "Conv2–Conv5 1.5× as wide (`--widths 48,72,96,120`)", REFERENCE),
    ("ser12-wide-s1", "Conv2–Conv5 1.5× as wide, seed 1", f"{REFERENCE}-s1"),
    ("ser12-wide-s2", "Conv2–Conv5 1.5× as wide, seed 2", f"{REFERENCE}-s2"),
    ("ser48-no-speed", "without speed perturbation, 48 epochs", "ser48-adamw"),
    ("ser48-no-masks", "without SpecAugment masks, 48 epochs", "ser48-adamw"),
    ("ser48-no-mixup", "without mixup, 48 epochs", "ser48-adamw"),
    ("ser48-no-smoothing", "without label smoothing, 48 epochs", "ser48-adamw"),
    ("ser48-no-balance", "without class and corpus loss weights, 48 epochs", "ser48-adamw"),
    ("ser48-wide", "Conv2–Conv5 1.5× as wide, 48 epochs", "ser48-adamw"),
    ("ser48-wide-s1", "Conv2–Conv5 1.5× as wide, 48 epochs, seed 1", "ser48-adamw-s1"),
    ("ser96-adamw", "96 epochs instead of 48 (`--epochs 96`)", "ser48-adamw"),
    ("ser96-adamw-s1", "96 epochs instead of 48, seed 1", "ser48-adamw-s1"),
    ("ser48-tempo-not-speed", "tempo instead of speed perturbation (`--speed off --tempo 0.9,1.0,1.1`), 48 epochs",
     "ser48-adamw"),
    ("ser48-speed-tempo", "tempo perturbation added to speed (`--tempo 0.9,1.0,1.1`), 48 epochs", "ser48-adamw"),
    ("ser48-tempo-not-speed-s1", "tempo instead of speed perturbation, 48 epochs, seed 1", "ser48-adamw-s1"),
    ("ser48-speed-wide", "speed factors 0.8–1.2 (`--speed 0.8,0.9,1.0,1.1,1.2`), 48 epochs", "ser48-adamw"),
    ("ser48-speed-wide-s1", "speed factors 0.8–1.2, 48 epochs, seed 1", "ser48-adamw-s1"),
    ("ser48-mixup04", "mixup α = 0.4 instead of 0.2 (`--mixup 0.4`), 48 epochs", "ser48-adamw"),
    ("ser48-mixup04-s1", "mixup α = 0.4, 48 epochs, seed 1", "ser48-adamw-s1"),
    ("ser48-fmax8k", "the 0–8 kHz band, 20 Hz per row (`--fmax 8000`), 48 epochs", "ser48-adamw"),
    ("ser48-fmax8k-s1", "the 0–8 kHz band, 48 epochs, seed 1", "ser48-adamw-s1"),
    ("ser48-lr4e-3", "peak learning rate 0.004 instead of 0.002 (`--lr 0.004`), 48 epochs", "ser48-adamw"),
    ("ser48-lr1e-3", "peak learning rate 0.001 (`--lr 0.001`), 48 epochs", "ser48-adamw"),
    ("ser48-lr4e-3-s1", "peak learning rate 0.004, 48 epochs, seed 1", "ser48-adamw-s1"),
    ("ser48-wd02", "AdamW weight decay 0.2 instead of 0.05 (`--weight-decay 0.2`), 48 epochs", "ser48-adamw"),
    ("ser48-wd02-s1", "AdamW weight decay 0.2, 48 epochs, seed 1", "ser48-adamw-s1"),
    ("ser48-wd05", "AdamW weight decay 0.5 (`--weight-decay 0.5`), 48 epochs", "ser48-adamw"),
    ("ser48-bs32", "batches of 32 segments instead of 64 (`--batch-size 32`), 48 epochs", "ser48-adamw"),
    ("ser48-bs32-s1", "batches of 32 segments, 48 epochs, seed 1", "ser48-adamw-s1"),
    ("ser48-dropout03", "dropout 0.3 on the trunk map before the head (`--dropout 0.3`), 48 epochs", "ser48-adamw"),
    ("ser48-dropout03-s1", "dropout 0.3, 48 epochs, seed 1", "ser48-adamw-s1"),
    ("ser48-smooth02", "label smoothing 0.2 instead of 0.1 (`--label-smoothing 0.2`), 48 epochs", "ser48-adamw"),
    ("ser48-smooth02-s1", "label smoothing 0.2, 48 epochs, seed 1", "ser48-adamw-s1"),
    ("ser48-ema995", "an exponential moving average of the weights, decay 0.995 a step, shipped (`--ema 0.995`), 48 epochs", "ser48-adamw"),
    ("ser48-ema995-s1", "the weight average, 48 epochs, seed 1", "ser48-adamw-s1"),
    ("ser48-pool23", "the paper's pooling layout, max-pools after Conv2 and Conv3 only (`--pool-after 2,3`), 48 epochs", "ser48-adamw"),
    ("ser48-pool23-s1", "the paper's pooling layout, 48 epochs, seed 1", "ser48-adamw-s1"),
    ("ser48-cellbal", "class weights counted within each corpus (`--class-balance-scope corpus`), 48 epochs", "ser48-adamw"),
    ("ser48-cellbal-s1", "class weights within each corpus, 48 epochs, seed 1", "ser48-adamw-s1"),
]


def uas(run: str) -> tuple[float, float, float]:
    m = json.loads((SCREEN / run / "metrics.json").read_text())
    return 100 * m["by_corpus"]["emodb"]["ua"], 100 * m["by_corpus"]["ravdess"]["ua"], 100 * m["ua"]


def main() -> None:
    print("| run | EMO-DB UA | RAVDESS UA | pooled UA | paired with | pooled UA − its | "
          "right only here / only there |")
    print("|---|---|---|---|---|---|---|")
    for name in SEEDS + SEEDS_48:
        if not (SCREEN / name / "metrics.json").is_file():
            continue
        e, r, p = uas(name)
        label = ("the `ser` recipe" + (", 48 epochs" if name in SEEDS_48 else "")
                 + (f", seed {name[-1]}" if name.endswith(("-s1", "-s2")) else ""))
        print(f"| `{name}`: {label} | {e:.1f} | {r:.1f} | {p:.1f} | – | – | – |")
    for name, label, ref in ABLATIONS:
        if not (SCREEN / name / "metrics.json").is_file():
            continue
        e, r, p = uas(name)
        only_here, only_ref, pv = mcnemar(correct(SCREEN / name), correct(SCREEN / ref))
        delta = round(p - uas(ref)[2], 1) + 0.0  # + 0.0: a difference that rounds to 0 prints +0.0, not -0.0
        print(f"| `{name}`: {label} | {e:.1f} | {r:.1f} | {p:.1f} | `{ref}` | {delta:+.1f} "
              f"| {only_here} / {only_ref}, {fmt_p(pv)} |")
    print()
    for epochs, seeds in ((12, SEEDS), (48, SEEDS_48)):
        pooled = [uas(s)[2] for s in seeds]
        print(f"Seed spread of the full recipe at {epochs} epochs ({len(pooled)} seeds), pooled UA: "
              f"{min(pooled):.1f}–{max(pooled):.1f} (mean {sum(pooled) / len(pooled):.1f}).")


if __name__ == "__main__":
    main()
