"""Would weighting segments by speech activity change utterance labels? (D5 reading, docs/decisions.md)

Reads the stored segment logits of finished ``ser-cli evaluate`` folds (``folds/fold_NN/result.json``,
scored at the default 0.4 s hop with the end-aligned tail), recomputes each file's per-frame
in-band energy (0-4 kHz, the spectrogram's bins), and compares the uniform mean of segment logits
(the D4 default) with means weighted by each segment's fraction of frames within F dB of the
file's loudest frame. Prints UA per corpus and the paired counts against uniform.

    python docs/speech_weighting_screen.py 'runs/screen/ser12-adamw/folds/fold_*/result.json'
"""

from __future__ import annotations

import glob
import json
import sys
from pathlib import Path

import numpy as np

from render_paper_tables import mcnemar
from silence_margins import frame_db

from ser_cli.segmentation import SegmentConfig, segment_starts


def main(pattern: str, floors=(-20.0, -30.0, -40.0)) -> None:
    utts, classes = {}, None
    for path in sorted(glob.glob(pattern)):
        classes = json.loads((Path(path).parents[2] / "metrics.json").read_text())["classes"]
        for row in json.loads(open(path).read())["utterances"]:
            db = frame_db(row["path"])
            starts = segment_starts(len(db), SegmentConfig().score_hop_frames, SegmentConfig())
            logits = np.asarray(row["segment_logits"])
            assert len(starts) == len(logits), row["path"]
            utts[f"{row['family']}:{row['utt_id']}"] = (row["label"], logits, starts, db)

    def score(weight):
        right, by_corpus = {}, {}
        for utt, (label, logits, starts, db) in utts.items():
            w = np.array([weight(db[s : s + 200]) for s in starts]) + 1e-9
            pred = int(np.argmax((w[:, None] * logits).sum(axis=0)))
            right[utt] = classes[pred] == label
            by_corpus.setdefault(utt.split(":")[0], []).append((label, right[utt]))
        ua = {c: round(100 * float(np.mean([np.mean([ok for t, ok in rows if t == k])
                                      for k in classes if any(t == k for t, _ in rows)])), 1)
              for c, rows in by_corpus.items()}
        return right, ua

    base, ua = score(lambda d: 1.0)
    print(f"uniform: UA {ua}")
    for floor in floors:
        right, ua = score(lambda d, f=floor: float(np.mean(d > f)))
        only_w, only_u, p = mcnemar(right, base)
        print(f"speech fraction within {-floor:.0f} dB: UA {ua}; right only weighted {only_w}, "
              f"only uniform {only_u}, p = {p:.2f}")


if __name__ == "__main__":
    main(sys.argv[1])
