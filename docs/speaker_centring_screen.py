"""Does centring each test speaker's scores help? (issue #10: a transductive check, inner fold)

Speaker-wise normalisation is a common step in leave-one-speaker-out emotion papers: it assumes
every speaker's test utterances span the emotions, and removes a speaker's bias toward one of
them (EMO-DB's speakers 11 and 16 say most of their happy sentences in a way the models take for
angry). Here it is applied after the model, to what ``predictions.csv`` holds: each test
speaker's utterance log-probabilities are centred per class over that speaker's utterances
(which ranks the classes as centring the utterance logits does), and the arg-max is taken again.
It uses the test speaker's unlabelled utterances, so it is a different protocol from
``evaluate``'s, and it is screened here only on the inner fold; ``analyze`` has no such step.

A RUN is resolved as in ``ensemble_screen.py``; RUN+RUN is an ensemble (logits averaged, as a
``ser-cli ensemble`` model scores). For each, per corpus: UA plain and centred, and the paired
counts of utterances right only with each, with the exact McNemar p.

    cd docs/results/screening && python ../../speaker_centring_screen.py \\
        ser48-adamw ser48-adamw-s1 ser48-adamw+ser48-adamw-s1
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ensemble_screen import average, members, score  # noqa: E402
from render_paper_tables import fmt_p, mcnemar  # noqa: E402


def centred(rows: list[dict]) -> list[dict]:
    """``rows`` with each speaker's log-probabilities centred per class (then renormalised)."""
    by_speaker: dict[str, list[dict]] = {}
    for r in rows:
        by_speaker.setdefault(r["speaker"], []).append(r)
    out = []
    for group in by_speaker.values():
        logp = np.log(np.maximum([r["probs"] for r in group], 1e-6))
        logp -= logp.mean(axis=0, keepdims=True)
        for r, lp in zip(group, logp):
            e = np.exp(lp - lp.max())
            out.append({**r, "probs": e / e.sum()})
    return out


def main(runs: list[str]) -> None:
    for run in runs:
        classes, tables = members(run.split("+"))
        rows = average(tables, "logits")
        plain, cent = score(rows, classes), score(centred(rows), classes)
        family = {r["utt"]: r["family"] for r in rows}
        for name in plain[0] or {"": None}:
            keys = [u for u in plain[2] if family[u] == name]
            a, b, p = mcnemar({u: cent[2][u] for u in keys}, {u: plain[2][u] for u in keys})
            ua = (plain[0][name]["ua"], cent[0][name]["ua"]) if name else (plain[1]["ua"], cent[1]["ua"])
            print(f"{run} {name or 'all'}: UA {100 * ua[0]:.1f} plain, {100 * ua[1]:.1f} centred; "
                  f"right only centred {a}, only plain {b}, {fmt_p(p)}")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    main(sys.argv[1:])
