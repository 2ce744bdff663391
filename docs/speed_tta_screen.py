"""Would averaging over speed-perturbed copies at scoring time help? (issue #10, test-time averaging)

The `ser` recipe trains on copies of each utterance played 0.9, 1.0 and 1.1 times as fast. This
scores each test utterance of a finished ``ser-cli evaluate`` fold the same three ways with the
fold's own model (``folds/fold_NN/model.pt``), as evaluate scores it (decode, resample,
``ser_cli.augment.speed_perturb``, then evaluate's own segment code: spectrogram, 2 s segments at
the model's scoring hop, D1 normalisation, float16; the ``auto`` precision), and compares the utterance label from the mean of the
three copies' mean segment logits with the label from the 1.0 copy alone. The 1.0 copy is
recomputed, and the script checks that it gives the labels stored in ``result.json``. Prints UA
per corpus and pooled, and the paired count of utterances right only with each rule; the last
line sums those counts over the runs given.

    cd docs && python speed_tta_screen.py ../runs/screen/ser48-adamw-s2 ../runs/screen/ser48-mixup04
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np
import torch

import ser_cli
from render_paper_tables import mcnemar
from ser_cli import audio
from ser_cli.augment import speed_perturb
from ser_cli.model import resolve_precision
from ser_cli.training import _audio_config, _segments_of, predict_logits


def utterance_logits(loaded, path: str, speed: float, precision: str) -> np.ndarray:
    """Mean segment logits of ``path`` played ``speed`` times as fast, segments made as evaluate
    makes them (decode, resample, front-end, cut, D1, float16)."""
    audio_config = _audio_config()
    samples = audio.load(path, audio_config.sample_rate, quality=audio_config.resample_quality)
    segments = _segments_of(speed_perturb(samples, speed), path, loaded.segment_config.score_hop_frames,
                            loaded.feature_config, loaded.segment_config)
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logits = predict_logits(loaded.module, segments, torch.device("cpu"), precision)
    return logits.astype(np.float64).mean(axis=0)


def ua(labels: list[str], predicted: list[str]) -> float:
    """Mean recall over the classes the labels have."""
    return 100 * float(np.mean([np.mean([p == c for y, p in zip(labels, predicted) if y == c])
                                for c in sorted(set(labels))]))


def screen(run: Path, speeds: list[float]) -> tuple[int, int]:
    precision = resolve_precision("auto", torch.device("cpu"))
    rows = []  # (utterance, family, label, {rule: logits})
    for fold in sorted((run / "folds").glob("fold_*")):
        loaded = ser_cli.load_model(fold / "model.pt")
        classes = loaded.classes
        for row in json.loads((fold / "result.json").read_text())["utterances"]:
            per_speed = {s: utterance_logits(loaded, row["path"], s, precision) for s in speeds}
            stored = int(np.argmax(np.mean(row["segment_logits"], axis=0)))
            if int(np.argmax(per_speed[1.0])) != stored:
                raise SystemExit(f"{row['path']}: the recomputed 1.0 copy's label is not the stored one")
            rows.append((f"{row['family']}:{row['utt_id']}", row["family"], row["label"],
                         {"1.0 alone": per_speed[1.0],
                          "mean of speeds": np.mean(list(per_speed.values()), axis=0)}))
    families = sorted({r[1] for r in rows})
    # each corpus is scored over its own classes, as evaluate does (a joint model may know more)
    own = {f: [classes.index(c) for c in sorted({r[2] for r in rows if r[1] == f})] for f in families}
    right = {}
    for rule in ("1.0 alone", "mean of speeds"):
        predicted = {u: classes[own[f][int(np.argmax(lg[rule][own[f]]))]] for u, f, _, lg in rows}
        right[rule] = {u: predicted[u] == y for u, _, y, _ in rows}
        parts = [f"{f} UA {ua([y for _, g, y, _ in rows if g == f], [predicted[u] for u, g, _, _ in rows if g == f]):.1f}"
                 for f in families]
        pooled = ua([y for _, _, y, _ in rows], [predicted[u] for u, _, _, _ in rows])
        print(f"{run.name:24s} {rule:15s} " + ", ".join(parts) + f", pooled UA {pooled:.1f}")
    only_tta, only_one, p = mcnemar(right["mean of speeds"], right["1.0 alone"])
    print(f"{run.name:28s} right only with the mean of speeds {only_tta}, only with 1.0 alone {only_one}, p = {p:.2f}")
    return only_tta, only_one


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="evaluate output folders with fold models")
    parser.add_argument("--speeds", default="0.9,1.0,1.1", help="speed factors, 1.0 among them")
    args = parser.parse_args()
    speeds = [float(s) for s in args.speeds.split(",")]
    if 1.0 not in speeds:
        parser.error("--speeds must include 1.0")
    torch.set_num_threads(1)
    totals = np.zeros(2, dtype=int)
    for run in args.runs:
        totals += screen(run, speeds)
    print(f"all runs: right only with the mean of speeds {totals[0]}, only with 1.0 alone {totals[1]}")


if __name__ == "__main__":
    main()
