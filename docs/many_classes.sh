#!/bin/bash
# Issue #10's 7-class EMO-DB and 8-class RAVDESS targets at the recipe's 48 epochs (the `ser`
# default), on the SVM baseline's folds: EMO-DB emodb/ (the 2 s copies, 535 files) one fold per
# speaker, and RAVDESS six folds of four actors. The 12-epoch runs of the same commands are in
# docs/results/paper/{emodb7,ravdess8}/ (docs/paper_experiments.sh). Two folds train at once
# (one thread each); every evaluate resumes its finished folds and epochs, so rerunning this
# script after an interruption continues where it stopped. Then copy each
# OUT/<run>/{metrics.json,metrics.csv,predictions.csv,command.txt,confusion*.png} to
# docs/results/classes48/<run>/.
#
#   SER_DATA=../shared/data docs/many_classes.sh [OUT]      (OUT default runs/classes48)
set -e
D=${SER_DATA:?set SER_DATA to the folder that holds emodb/ and ravdess/}
OUT=${1:-runs/classes48}
mkdir -p "$OUT"
ser-cli evaluate "$D/emodb" --folds 10 --jobs 2 --threads 1 --quiet -o "$OUT/emodb7"
ser-cli evaluate "$D/ravdess" --folds 6 --jobs 2 --threads 1 --quiet -o "$OUT/ravdess8"
