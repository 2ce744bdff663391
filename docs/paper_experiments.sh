#!/bin/bash
# The paper's experiments on EMO-DB emodb/ (535 files), 10-fold leave-one-speaker-out, ser recipe
# (12 epochs), as rendered in docs/results.md: Table 1 heads, D1, 7 classes, D3, D5. Two folds
# train at once. Every evaluate resumes its finished folds and epochs, so rerunning this script
# after an interruption continues where it stopped. Then:
#   for each run, copy OUT/<run>/{metrics.json,metrics.csv,predictions.csv,command.txt,confusion*.png}
#   to docs/results/paper/<run>/ and run python docs/render_paper_tables.py
#
#   SER_DATA=../shared/data docs/paper_experiments.sh [OUT]      (OUT default runs/paper)
set -e
D=${SER_DATA:?set SER_DATA to the folder that holds emodb/}
OUT=${1:-runs/paper}
mkdir -p "$OUT"
E="ser-cli evaluate $D/emodb --folds 10 --jobs 2 --threads 1 --quiet"
C="--classes neutral,happy,angry,sad"
$E $C --head attention        -o "$OUT/attention"
$E $C --head gap              -o "$OUT/gap"
$E $C --head bilinear         -o "$OUT/bilinear"
$E $C --normalization minmax  -o "$OUT/minmax"
$E                            -o "$OUT/emodb7"
$E $C --attention-reduce mean -o "$OUT/mean"
$E $C --pad zeros             -o "$OUT/padzeros"
