#!/bin/bash
# Ship a trained model as the bundled default: pool the finished folds of its two evaluations
# (joint 10 + 6 folds, and cross-corpus), copy their outputs to docs/results/default-model/,
# copy the model into the package, write its card (ser-cli model-card) and render the
# docs/results.md section "The bundled model's recipe under the protocol". Rerun it as folds
# finish: pooling reuses every finished fold and trains nothing.
#
#   SER_DATA=../shared/data docs/render_default_model.sh MODEL JOINT_EVAL CROSS_EVAL
#
# e.g. MODEL=runs/default48/model.pt (from the card's command), JOINT_EVAL=runs/eval-48 (from
# docs/results/default-model/joint/command.txt), CROSS_EVAL=runs/eval-cross-48.
set -e
D=${SER_DATA:?set SER_DATA to the folder that holds emodb/, emodb_original_subset/ and ravdess/}
MODEL=${1:?model file}; JOINT=${2:?joint evaluation folder}; CROSS=${3:?cross-corpus evaluation folder}
S="$D/emodb_original_subset $D/emodb $D/ravdess --classes neutral,happy,angry,sad --quiet"
EPOCHS=$(python -c "import json,sys; print(json.load(open(sys.argv[1]))['configs']['train_config']['epochs'])" "$MODEL.train.json")
done_folds() { ls "$1"/folds/*/result.json 2>/dev/null | sed -E 's#.*/fold_0*([0-9]+)/result.json#\1#' | sort -n | paste -sd, ; }
J=$(done_folds "$JOINT"); X=$(done_folds "$CROSS")
echo "joint folds done: ${J:-none}; cross-corpus folds done: ${X:-none}"
[ -n "$J" ] || { echo "no finished joint fold in $JOINT" >&2; exit 1; }
ser-cli evaluate $S --folds emodb=10,ravdess=6 --epochs "$EPOCHS" --only-folds "$J" -o "$JOINT"
[ -n "$X" ] && ser-cli evaluate $S --folds corpus --epochs "$EPOCHS" --only-folds "$X" -o "$CROSS"
OUT=docs/results/default-model
rm -rf "$OUT"; mkdir -p "$OUT/joint"
cp "$JOINT"/{metrics.json,metrics.csv,predictions.csv,command.txt} "$JOINT"/confusion*.png "$OUT/joint/"
if [ -n "$X" ]; then
  mkdir -p "$OUT/cross-corpus"
  cp "$CROSS"/{metrics.json,metrics.csv,predictions.csv,command.txt} "$CROSS"/confusion*.png "$OUT/cross-corpus/"
fi
cp "$MODEL.train.json" "$OUT/train.json"
cp "$MODEL" ser_cli/models/default.pt
EV=(--evaluation "Speaker-independent, same data and recipe (EMO-DB one fold per speaker, RAVDESS six folds of four actors)=$OUT/joint")
[ -n "$X" ] && EV+=(--evaluation "Cross-corpus (train on one corpus, test on the other)=$OUT/cross-corpus")
ser-cli model-card ser_cli/models/default.pt "${EV[@]}" --attach -o ser_cli/models/default.md
python - <<'PY'
import json, re
from pathlib import Path
from ser_cli.card import render_evaluation
parts = ["<!-- begin: bundled model (rendered by docs/render_default_model.sh) -->",
         "## The bundled model's recipe under the protocol", ""]
for title, d in [("Speaker-independent: EMO-DB 10 folds + RAVDESS 6 folds, one run", "joint"),
                 ("Cross-corpus: train on one corpus, test on the other", "cross-corpus")]:
    p = Path("docs/results/default-model") / d / "metrics.json"
    if p.is_file():
        parts += [render_evaluation(title, json.loads(p.read_text())), "",
                  f"Outputs: [`results/default-model/{d}/`](results/default-model/{d}/).", ""]
parts.append("<!-- end: bundled model -->")
doc = Path("docs/results.md").read_text()
pat = re.compile(r"<!-- begin: bundled model.*?<!-- end: bundled model -->", re.S)
if not pat.search(doc):
    raise SystemExit("docs/results.md has no bundled-model block to replace")
Path("docs/results.md").write_text(pat.sub(lambda m: "\n".join(parts), doc))
PY
echo "wrote ser_cli/models/default.pt, ser_cli/models/default.md, $OUT/ and docs/results.md"
