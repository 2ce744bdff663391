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
#
# An ensemble (ser-cli ensemble) ships the same way, with its members' model files and their
# evaluations as comma-separated lists in the members' order (the same recipe, other seeds):
#
#   SER_DATA=../shared/data docs/render_default_model.sh runs/default48/model.pt,runs/default48-s1/model.pt \
#       docs/results/default-model/joint,runs/joint-s1 docs/results/default-model/cross-corpus,runs/eval-cross-s1
#
# Each member's evaluations must be finished (a member evaluation without a folds/ folder is taken
# as a finished report, such as the first member's committed one). The first member's reports
# stay in default-model/joint and cross-corpus (train.json), a later member's go to joint-sSEED
# and cross-corpus-sSEED (train-sSEED.json), and the ensemble's, scored as the model file scores
# (mean segment logits, docs/ensemble_screen.py --average logits), to joint-ens and
# cross-corpus-ens; the card reports the ensemble's.
set -e
D=${SER_DATA:?set SER_DATA to the folder that holds emodb/, emodb_original_subset/ and ravdess/}
IFS=, read -r -a MODELS <<< "${1:?model file(s)}"
IFS=, read -r -a JOINTS <<< "${2:?joint evaluation folder(s)}"
IFS=, read -r -a CROSSES <<< "${3:?cross-corpus evaluation folder(s)}"
[ ${#JOINTS[@]} -eq ${#MODELS[@]} ] || { echo "one joint evaluation per model: ${#MODELS[@]} models, ${#JOINTS[@]} evaluations" >&2; exit 2; }
[ ${#CROSSES[@]} -eq ${#MODELS[@]} ] || { echo "one cross-corpus evaluation per model: ${#MODELS[@]} models, ${#CROSSES[@]} evaluations" >&2; exit 2; }
S="$D/emodb_original_subset $D/emodb $D/ravdess --classes neutral,happy,angry,sad --quiet"
OUT=docs/results/default-model
# train_config KEY MODEL: a setting of MODEL's training, from MODEL.train.json
train_config() { python -c "import json,sys; print(json.load(open(sys.argv[2]))['configs']['train_config'][sys.argv[1]])" "$1" "$2.train.json"; }
seed_of() { train_config seed "$1"; }
done_folds() { ls "$1"/folds/*/result.json 2>/dev/null | sed -E 's#.*/fold_0*([0-9]+)/result.json#\1#' | sort -n | paste -sd, ; }
# pool EVAL's finished folds (FOLDS is emodb=10,ravdess=6 or corpus) and copy its report to DEST
publish() {
  local eval=$1 folds=$2 dest=$3 model=$4 done
  if [ -d "$eval/folds" ]; then
    done=$(done_folds "$eval")
    [ -n "$done" ] || { echo "no finished fold in $eval" >&2; return 1; }
    ser-cli evaluate $S --folds "$folds" --epochs "$(train_config epochs "$model")" --seed "$(seed_of "$model")" \
      --only-folds "$done" -o "$eval"
  fi
  if [ "$(realpath -m "$eval")" != "$(realpath -m "$dest")" ]; then
    rm -rf "$dest"; mkdir -p "$dest"
    cp "$eval"/{metrics.json,metrics.csv,predictions.csv,command.txt} "$eval"/confusion*.png "$dest/"
  fi
}

mkdir -p "$OUT"
for i in "${!MODELS[@]}"; do
  m=${MODELS[$i]}
  suffix=$([ "$i" -eq 0 ] && echo "" || echo "-s$(seed_of "$m")")
  publish "${JOINTS[$i]}" emodb=10,ravdess=6 "$OUT/joint$suffix" "$m"
  publish "${CROSSES[$i]}" corpus "$OUT/cross-corpus$suffix" "$m"
  if [ "$(realpath -m "$m.train.json")" != "$(realpath -m "$OUT/train$suffix.json")" ]; then
    cp "$m.train.json" "$OUT/train$suffix.json"
  fi
done

JOINT_T="Speaker-independent, same data and recipe (EMO-DB one fold per speaker, RAVDESS six folds of four actors)"
CROSS_T="Cross-corpus (train on one corpus, test on the other)"
if [ ${#MODELS[@]} -eq 1 ]; then
  cp "${MODELS[0]}" ser_cli/models/default.pt
  SHOWN=(joint cross-corpus)
  EV=(--evaluation "$JOINT_T=$OUT/joint" --evaluation "$CROSS_T=$OUT/cross-corpus")
else
  members=("$OUT/joint"); crosses=("$OUT/cross-corpus")
  for m in "${MODELS[@]:1}"; do s=$(seed_of "$m"); members+=("$OUT/joint-s$s"); crosses+=("$OUT/cross-corpus-s$s"); done
  python docs/ensemble_screen.py --average logits -o "$OUT/joint-ens" "${members[@]}"
  python docs/ensemble_screen.py --average logits -o "$OUT/cross-corpus-ens" "${crosses[@]}"
  SHOWN=(joint-ens cross-corpus-ens)
  EV=(--evaluation "$JOINT_T, the ensemble=$OUT/joint-ens" --evaluation "$CROSS_T, the ensemble=$OUT/cross-corpus-ens")
  ser-cli ensemble "${MODELS[@]}" -o ser_cli/models/default.pt
fi
ser-cli model-card ser_cli/models/default.pt "${EV[@]}" --attach -o ser_cli/models/default.md
python - "${SHOWN[@]}" <<'PY'
import json, re, sys
from pathlib import Path
from ser_cli.card import render_evaluation
titles = {"joint": "Speaker-independent: EMO-DB 10 folds + RAVDESS 6 folds, one run",
          "joint-ens": "Speaker-independent, the ensemble: EMO-DB 10 folds + RAVDESS 6 folds",
          "cross-corpus": "Cross-corpus: train on one corpus, test on the other",
          "cross-corpus-ens": "Cross-corpus, the ensemble: train on one corpus, test on the other"}
parts = ["<!-- begin: bundled model (rendered by docs/render_default_model.sh) -->",
         "## The bundled model's recipe under the protocol", ""]
for d in sys.argv[1:]:
    p = Path("docs/results/default-model") / d / "metrics.json"
    if p.is_file():
        parts += [render_evaluation(titles[d], json.loads(p.read_text())), "",
                  f"Outputs: [`results/default-model/{d}/`](results/default-model/{d}/).", ""]
parts.append("<!-- end: bundled model -->")
doc = Path("docs/results.md").read_text()
pat = re.compile(r"<!-- begin: bundled model.*?<!-- end: bundled model -->", re.S)
if not pat.search(doc):
    raise SystemExit("docs/results.md has no bundled-model block to replace")
Path("docs/results.md").write_text(pat.sub(lambda m: "\n".join(parts), doc))
PY
echo "wrote ser_cli/models/default.pt, ser_cli/models/default.md, $OUT/ and docs/results.md"
