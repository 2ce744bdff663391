"""Would fusing the CNN with the classic MFCC + SVM baseline help? (issue #10)

The classic baseline of the issues (MFCC-40 with deltas and delta-deltas, their mean and standard
deviation over the utterance, an RBF SVM) makes different errors from a spectrogram CNN, so late
fusion is the cheapest way to use it. For each fold of the given ``ser-cli evaluate`` runs (the
members of one CNN ensemble, combined by their mean utterance logits as a ``ser-cli ensemble``
model scores), this trains the SVM on the utterances of the run's other folds (standardised
features, ``C``, ``gamma="scale"``, balanced class weights, Platt probabilities), scores the
fold's utterances, and fuses each utterance's class scores as

    log p = (1 - w) · log p_CNN + w · log p_SVM

for each weight ``w`` given (``w = 0`` is the CNN alone, ``w = 1`` the SVM alone). Prints WA and
UA per corpus and pooled, and the paired count of utterances right only with each weight against
``w = 0``, with the exact McNemar p.

The utterances come from ``ser_cli.corpora`` (the run's classes; EMO-DB originals first, so each
utterance once, as the runs' commands read them) and are decoded and resampled to 16 kHz by
``ser_cli.audio``; the MFCCs are librosa's (the ``bench`` extra), 25 ms windows, 10 ms hop, 40 mel
bands. A run's folds (``fold_speakers`` of its ``metrics.json``) define the training speakers, so
an inner-fold screening run trains the SVM on the inner training speakers only.

    SER_DATA=/work/shared/data python docs/classic_fusion_screen.py --C 10 --weights 0,0.2 \
        docs/results/default-model/joint docs/results/default-model/joint-s1
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import librosa
import numpy as np
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ensemble_screen import average, combine, folder, line, members, score  # noqa: E402
from render_paper_tables import fmt_p, mcnemar  # noqa: E402

from ser_cli import audio  # noqa: E402
from ser_cli.corpora import read_corpus, select_classes  # noqa: E402

SAMPLE_RATE = 16000
SOURCES = ("emodb_original_subset", "emodb", "ravdess")


def mfcc_statistics(path: str) -> np.ndarray:
    """Mean and standard deviation over the utterance of MFCC-40, deltas and delta-deltas (240)."""
    samples = audio.load(path, SAMPLE_RATE)
    m = librosa.feature.mfcc(y=samples, sr=SAMPLE_RATE, n_mfcc=40, n_fft=512, win_length=400,
                             hop_length=160, n_mels=40)
    f = np.concatenate([m, librosa.feature.delta(m), librosa.feature.delta(m, order=2)])
    return np.concatenate([f.mean(axis=1), f.std(axis=1)])


def svm_probabilities(runs: list[str], data: Path, C: float) -> tuple[list[str], dict[str, np.ndarray]]:
    """(classes, utterance id -> SVM probabilities), each fold's utterances scored by an SVM
    trained on the run's other folds."""
    meta = json.loads((folder(runs[0]) / "metrics.json").read_text())
    classes, fold_speakers = meta["classes"], meta["fold_speakers"]
    utterances, _ = select_classes(read_corpus([data / s for s in SOURCES]), classes)
    fold_of = {spk: int(f) for f, spks in fold_speakers.items() for spk in spks}
    utterances = [u for u in utterances if u.speaker in fold_of]
    X = np.stack([mfcc_statistics(str(u.path)) for u in utterances])
    y = np.array([classes.index(u.label) for u in utterances])
    folds = np.array([fold_of[u.speaker] for u in utterances])
    out = {}
    for fold in sorted(set(int(f) for f in meta["folds_run"])):
        svm = make_pipeline(StandardScaler(), SVC(C=C, gamma="scale", probability=True,
                                                  class_weight="balanced", random_state=0))
        svm.fit(X[folds != fold], y[folds != fold])
        test = np.flatnonzero(folds == fold)
        out.update(zip((utterances[i].utt_id for i in test), svm.predict_proba(X[test])))
    return classes, out


def fuse(rows: list[dict], svm: dict[str, np.ndarray], w: float) -> list[dict]:
    """The CNN's rows with each utterance's probabilities fused with the SVM's (weight ``w``)."""
    return [{**r, "probs": combine([r["probs"], svm[r["utt"]]], "logits", weights=[1 - w, w])} for r in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="evaluate outputs of one CNN configuration (ensemble members)")
    parser.add_argument("--C", type=float, default=10.0, help="the SVM's C (default 10)")
    parser.add_argument("--weights", default="0,0.2,1", help="fusion weights w of the SVM, comma-separated")
    args = parser.parse_args()
    data = Path(os.environ.get("SER_DATA") or sys.exit("set SER_DATA to the folder that holds emodb/, "
                                                       "emodb_original_subset/ and ravdess/"))
    classes, rows = members(args.runs)
    cnn = average(rows, "logits")
    svm_classes, svm = svm_probabilities(args.runs, data, args.C)
    if svm_classes != classes or set(svm) < {r["utt"] for r in cnn}:
        raise SystemExit("the SVM's utterances or classes differ from the runs' (is SER_DATA the data they read?)")
    weights = [float(w) for w in args.weights.split(",")]
    print(f"{' + '.join(args.runs)}; SVM C = {args.C:g}")
    baseline = None
    for w in weights:
        by_corpus, pooled, right = score(fuse(cnn, svm, w), classes)
        paired = ""
        if baseline is not None:
            here, there, p = mcnemar(right, baseline)
            paired = f"; right only with w = {w:g} {here}, only with w = 0 {there}, {fmt_p(p)}"
        print(f"  w = {w:g}: {line(by_corpus, pooled)}{paired}")
        if w == 0:
            baseline = right


if __name__ == "__main__":
    main()
