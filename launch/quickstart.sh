#!/usr/bin/env bash
# Fresh machine to a trained, evaluated speech emotion model on the embedded demo corpus:
# set up, generate the corpus, train the seed's BiLSTM (speaker-independent split), predict.
# Extra arguments are passed to the recipe as overrides, e.g. `bash launch/quickstart.sh train.epochs=30`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash launch/setup.sh
export PATH="$PWD/.venv/bin:$PATH"

data=demo_data
if [ ! -f "$data/README.md" ]; then
  ser-dist make-demo-data "$data"
fi
out=runs/quickstart
# Each quickstart replaces the previous one's run folder (one folder holds one run: train.overwrite=true).
python recipes/bilstm_mfcc_ce.py "data.root=$data" 'data.speaker_pattern=^(spk\d+)_' "train.output_dir=$out" \
  train.epochs=20 train.early_stopping_patience=6 train.overwrite=true "$@"

echo
echo "== predictions of the trained model on three held-out test clips =="
ser-dist predict "$out" $(python - "$out" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(f"{sys.argv[1]}/test_predictions.csv")))
print(" ".join(rows[i]["path"] for i in range(0, len(rows), max(1, len(rows) // 3))[:3]))
PY
)
echo
echo "run folder: $out (metrics.json, confusion_matrix.png, training_curves.png, model/, tensorboard/)"
