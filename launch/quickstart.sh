#!/usr/bin/env bash
# Fresh machine to a trained, evaluated speech emotion model on the embedded demo corpus: set up, generate the
# corpus, train the best from-scratch setting (recipes/bilstm_mfcc_ce.py with benchmarks/best_from_scratch.yaml)
# with 3 speakers held out for test, predict, then train the classical baseline (openSMILE eGeMAPS functionals +
# a linear SVM) on the same split and print both test scores in one line.
# Extra arguments are passed to the BiLSTM run as overrides, e.g. `bash launch/quickstart.sh train.epochs=30`; its
# data.* ones (not data.augment*) go to the baseline too, so that both runs keep one split.
set -euo pipefail
cd "$(dirname "$0")/.."
bash launch/setup.sh
export PATH="$PWD/.venv/bin:$PATH"

data=demo_data
if [ ! -f "$data/README.md" ] || [ ! -f "$data/manifest.csv" ]; then  # manifest.csv: the ratings (an older corpus lacks it)
  ser-dist make-demo-data "$data"
fi
# 10 speakers of 60 clips each, whole speakers per split: 30% (3 speakers) test, 10% (1) validation, 6 train.
# data.split_seed draws the split, so both runs get the same one (the summary checks their split.csv).
split=(data.corpus=folder "data.root=$data" 'data.speaker_pattern=^(spk\d+)_' data.split=speaker data.split_seed=42
  data.test_fraction=0.3 data.val_fraction=0.1)
shared=()
for arg in "$@"; do
  case "$arg" in data.augment*) ;; data.*) shared+=("$arg") ;; esac
done
out=runs/quickstart
baseline=runs/quickstart_baseline
# Each quickstart replaces the previous one's run folders (one folder holds one run: train.overwrite=true).
# train.epochs=60 and patience 20 cap the settings file's 120 and 45 (about 4 s an epoch here on 2 CPU cores).
python recipes/bilstm_mfcc_ce.py --config benchmarks/best_from_scratch.yaml "${split[@]}" "train.output_dir=$out" \
  train.epochs=60 train.early_stopping_patience=20 train.overwrite=true "$@"

echo
echo "== predictions of the trained model on three held-out test clips =="
ser-dist predict "$out" $(python - "$out" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(f"{sys.argv[1]}/test_predictions.csv")))
print(" ".join(rows[i]["path"] for i in range(0, len(rows), max(1, len(rows) // 3))[:3]))
PY
)

echo
compare=()
if python -c "import opensmile" 2>/dev/null; then
  echo "== the classical baseline on the same split: openSMILE eGeMAPS functionals + a linear SVM =="
  python recipes/opensmile_egemaps_svm.py "${split[@]}" "${shared[@]}" "train.output_dir=$baseline" \
    train.overwrite=true
  compare=(--baseline "$baseline" --baseline-name "openSMILE eGeMAPS + linear SVM")
else
  echo "openSMILE baseline skipped: the opensmile package is not installed (pip install 'ser-dist[opensmile]')"
fi

echo
echo "run folders: $out (metrics.json, confusion_matrix.png, training_curves.png, model/, tensorboard/)${compare:+, $baseline}"
python -m ser_dist.comparison "$out" --name "BiLSTM (best from-scratch setting)" "${compare[@]}"
echo
echo "next: arousal / valence / dominance on the same corpus: python recipes/bilstm_mfcc_dimensional.py data.root=$data train.output_dir=runs/dimensional"
