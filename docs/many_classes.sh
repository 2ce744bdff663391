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
# Last, the data lever for seven classes, screened on the inner fold of outer fold 1's training
# speakers (EMO-DB speaker 03 held out; inner test speakers 08, 09, 10), at 48 epochs: EMO-DB's
# 2 s copies alone, with the full-length originals where they exist, and with RAVDESS added (its
# six shared classes; actors 01-04 held out as in the 4-class screen); then, on the joint data,
# a second seed and the 1.5x wider trunk (two seeds), for the trunk and ensemble levers. Copy each
# OUT/screen7/<run>/{metrics.json,metrics.csv,predictions.csv,command.txt} to
# docs/results/screening/<run>/. Then the winner on the test folds, its second seed there, and
# last a third seed on the inner fold, for the ensemble's size, the 0-8 kHz band, class weights
# counted per corpus, and the nine classes of both corpora.
#
#   SER_DATA=../shared/data docs/many_classes.sh [OUT]      (OUT default runs/classes48)
set -e
D=${SER_DATA:?set SER_DATA to the folder that holds emodb/, emodb_original_subset/ and ravdess/}
OUT=${1:-runs/classes48}
mkdir -p "$OUT"
ser-cli evaluate "$D/emodb" --folds 10 --jobs 2 --threads 1 --quiet -o "$OUT/emodb7"
ser-cli evaluate "$D/ravdess" --folds 6 --jobs 2 --threads 1 --quiet -o "$OUT/ravdess8"
S7="--classes angry,boredom,disgust,fear,happy,neutral,sad --only-folds 1 --threads 1 --quiet"
EX=emodb:03,ravdess:01,ravdess:02,ravdess:03,ravdess:04
ser-cli evaluate "$D/emodb_original_subset" "$D/emodb" "$D/ravdess" $S7 --exclude-speakers $EX \
  --folds emodb=4,ravdess=4 -o "$OUT/screen7/ser48-7c-joint" &
{ ser-cli evaluate "$D/emodb" $S7 --exclude-speakers 03 --folds 4 -o "$OUT/screen7/ser48-7c-emodb" &&
  ser-cli evaluate "$D/emodb_original_subset" "$D/emodb" $S7 --exclude-speakers 03 --folds 4 \
    -o "$OUT/screen7/ser48-7c-originals"; }
wait
# the 2 s copies against the originals again, with seed 1
ser-cli evaluate "$D/emodb" $S7 --seed 1 --exclude-speakers 03 --folds 4 -o "$OUT/screen7/ser48-7c-emodb-s1" &
ser-cli evaluate "$D/emodb_original_subset" "$D/emodb" $S7 --seed 1 --exclude-speakers 03 --folds 4 \
  -o "$OUT/screen7/ser48-7c-originals-s1"
wait
# the joint data with seed 1, and with the 1.5x wider trunk (seeds 0 and 1): the trunk lever and
# the ensembles of seeds (docs/ensemble_screen.py) on the 7-class joint data
J7="$D/emodb_original_subset $D/emodb $D/ravdess $S7 --exclude-speakers $EX --folds emodb=4,ravdess=4"
ser-cli evaluate $J7 --seed 1 -o "$OUT/screen7/ser48-7c-joint-s1" &
{ ser-cli evaluate $J7 --widths 48,72,96,120 -o "$OUT/screen7/ser48-7c-joint-wide" &&
  ser-cli evaluate $J7 --widths 48,72,96,120 --seed 1 -o "$OUT/screen7/ser48-7c-joint-wide-s1"; }
wait
# the data lever's winner on the protocol's ten folds (fold i holds out EMO-DB speaker i and, for
# i <= 6, RAVDESS actors 4i-3 .. 4i): about an hour of one core per fold. It ran in parts, one
# session's worth each (--only-folds 1,2,3,4, then 5,6, then 7,8,9,10, all into OUT/joint7); this
# command without --only-folds then pools the finished folds without training any
ser-cli evaluate "$D/emodb_original_subset" "$D/emodb" "$D/ravdess" \
  --classes angry,boredom,disgust,fear,happy,neutral,sad --folds emodb=10,ravdess=6 \
  --jobs 2 --threads 1 --quiet -o "$OUT/joint7"
# the inner fold's next 7-class candidate, the ensemble of two seeds of the joint configuration:
# its second member, seed 1, on the same ten folds (about 7.5 h of one core: 42-44 min a fold for
# folds 1-6, 46-47 min for 7-10; run in parts with --only-folds, one or two processes into
# OUT/joint7-s1, then this command pools them), and the ensemble of the two runs' utterance
# probabilities, written as a report like evaluate's (after copying OUT/joint7-s1's report files
# to docs/results/classes48/joint7-s1/):
#   python docs/ensemble_screen.py -o docs/results/classes48/joint7-ens \
#     docs/results/classes48/joint7 docs/results/classes48/joint7-s1
# Its parts span sessions whose machines do not keep OUT, so each finished fold's result.json is
# committed under docs/results/classes48/joint7-s1/folds/fold_NN/ and put back here before the
# run: evaluate reuses a fold whose fingerprint (configs, classes, utterance paths and labels)
# matches, so only with the data at the same absolute path as when it ran ($D, /work/shared/data);
# elsewhere those folds train again. cp -n keeps folds that OUT already has.
mkdir -p "$OUT/joint7-s1"
S1_FOLDS="$(dirname "$0")/results/classes48/joint7-s1/folds"
if [ -d "$S1_FOLDS" ]; then cp -rn "$S1_FOLDS" "$OUT/joint7-s1/"; fi
ser-cli evaluate "$D/emodb_original_subset" "$D/emodb" "$D/ravdess" \
  --classes angry,boredom,disgust,fear,happy,neutral,sad --folds emodb=10,ravdess=6 --seed 1 \
  --jobs 2 --threads 1 --quiet -o "$OUT/joint7-s1"
# the ensemble's size: a third seed of the joint configuration on the inner fold, screened as the
# three-seed ensemble against the two-seed one (about 40 min of one core)
ser-cli evaluate $J7 --seed 2 -o "$OUT/screen7/ser48-7c-joint-s2"
# the 0-8 kHz band (--fmax 8000, 20 Hz per row) on the joint data, seeds 0 and 1, alone and as a
# third ensemble member (happy is EMO-DB's weakest class, mostly taken for angry)
ser-cli evaluate $J7 --fmax 8000 -o "$OUT/screen7/ser48-7c-joint-fmax8k" &
ser-cli evaluate $J7 --fmax 8000 --seed 1 -o "$OUT/screen7/ser48-7c-joint-fmax8k-s1"; wait
# class weights counted within each corpus (--class-balance-scope corpus; EMO-DB's disgust and
# happy, its weakest classes, are also its rarest), seeds 0 and 1
ser-cli evaluate $J7 --class-balance-scope corpus -o "$OUT/screen7/ser48-7c-joint-cellbal" &
ser-cli evaluate $J7 --class-balance-scope corpus --seed 1 -o "$OUT/screen7/ser48-7c-joint-cellbal-s1"; wait
# the nine classes of both corpora (EMO-DB's seven, with RAVDESS's calm and surprise: the training
# actors' 240 utterances of those two classes added), read on the 7-class task by restricting its
# probabilities to the seven, alone and as a third member beside the 7-class pair (about 2 h of
# one core in fp32):
#   cd docs && python fewer_classes_screen.py --classes angry,boredom,disgust,fear,happy,neutral,sad \
#       ser48-9c-joint ser48-7c-joint
ser-cli evaluate "$D/emodb_original_subset" "$D/emodb" "$D/ravdess" \
  --classes angry,boredom,disgust,fear,happy,neutral,sad,calm,surprise --only-folds 1 --threads 1 --quiet \
  --exclude-speakers $EX --folds emodb=4,ravdess=4 -o "$OUT/screen7/ser48-9c-joint"
# and its seed 1, for the nine-class pair against the 7-class pair:
#   cd docs && python fewer_classes_screen.py --classes angry,boredom,disgust,fear,happy,neutral,sad \
#       ser48-9c-joint+ser48-9c-joint-s1 ser48-7c-joint+ser48-7c-joint-s1
ser-cli evaluate "$D/emodb_original_subset" "$D/emodb" "$D/ravdess" \
  --classes angry,boredom,disgust,fear,happy,neutral,sad,calm,surprise --only-folds 1 --threads 1 --quiet \
  --seed 1 --exclude-speakers $EX --folds emodb=4,ravdess=4 -o "$OUT/screen7/ser48-9c-joint-s1"
