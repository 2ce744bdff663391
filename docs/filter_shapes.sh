#!/bin/bash
# The paper's Fig. 2 filter-shape study on EMO-DB emodb/ (535 files), 4 classes: Conv1 alone (one
# group of 16 filters, no pooling) + GAP + batch norm + linear 16 -> 4 (`--gap-batchnorm`: without
# it this network does not train, docs/results.md), `ser` recipe, one `ser-cli evaluate`
# per shape: heights 2..100 at width 2 and widths 2..80 at height 2. Two shapes train at once
# (one thread each), in an order that fills both curves evenly, so a partial run still shows both.
# Every evaluate resumes its finished folds and epochs. Then plot and tabulate:
#   python docs/plot_filter_shapes.py OUT docs/results/fig2
# and copy each OUT/<shape>/{metrics.json,metrics.csv,predictions.csv,command.txt} to
# docs/results/fig2/<shape>/.
#
#   SER_DATA=../shared/data docs/filter_shapes.sh [OUT [FOLDS [EPOCHS]]]
#
# Defaults: OUT runs/fig2, FOLDS 10 (one per speaker), EPOCHS 12 (as the other paper experiments
# ran). The run in docs/results.md is reduced, and labelled so: FOLDS 5 (two speakers each),
# EPOCHS 12; it took 43 min on two cores for the 11 shapes (2-vCPU AMD EPYC), so the defaults
# should take about 1.6 h (twice the folds, each training on 9 speakers instead of 8; an estimate).
set -e
D=${SER_DATA:?set SER_DATA to the folder that holds emodb/}
OUT=${1:-runs/fig2}
FOLDS=${2:-10}
EPOCHS=${3:-12}
mkdir -p "$OUT"
shapes="2x2 10x2 2x8 100x2 2x80 5x2 2x4 20x2 2x16 50x2 2x40"
printf '%s\n' $shapes | xargs -P 2 -I{} \
  ser-cli evaluate "$D/emodb" --classes neutral,happy,angry,sad --folds "$FOLDS" --epochs "$EPOCHS" \
    --jobs 1 --threads 1 --quiet --widths none --conv1 {} --conv1-channels 16 --pool-after none \
    --head gap --gap-batchnorm -o "$OUT/{}"
