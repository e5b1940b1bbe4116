#!/usr/bin/env bash
# The best from-scratch setting (recipes/bilstm_mfcc_ce.py with benchmarks/best_from_scratch.yaml), trained
# speaker-independently through `ser-dist cv`, every fold of the protocol one after another.
#
#   bash benchmarks/best_from_scratch.sh OUT_DIR [section.key=value ...]
#
# The defaults data.split=leave_one_speaker_out data.corpus=emodb data.root=<repo>/../shared/data/emodb
# train.report_to=[] come first, so an override replaces them: any corpus (data.corpus=ravdess data.root=DIR;
# data.corpus=folder data.root=DIR data.speaker_pattern=REGEX; data.hf_dataset=ID data.root=null), any speaker
# protocol (data.split=speaker_kfold data.num_folds=5), any setting of the file (train.epochs=30).
# The folds go to OUT_DIR/fold_K with cv_summary.md / cv_summary.json; then OUT_DIR/metrics.json holds the recipe,
# the settings file and its values, the overrides, each fold's test speakers, test UA / WA / macro-F1 and best
# validation score, and the test mean and sample sd over the folds (fractions in [0, 1], as in every metrics.json).
# PYTHON (default: python) runs ser-dist; a rerun reuses every fold that finished with the same settings.
set -euo pipefail

if [ $# -lt 1 ] || [[ "$1" == -* ]]; then
  sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
  [[ "${1:-}" == -h || "${1:-}" == --help ]] && exit 0
  exit 2
fi
out="$1"
shift
repo="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-python}"
recipe="recipes/bilstm_mfcc_ce.py"
config="benchmarks/best_from_scratch.yaml"

for arg in "$@"; do
  [[ "$arg" == *=* && "$arg" != -* ]] || { echo "best_from_scratch.sh: $arg is not a section.key=value override" >&2; exit 2; }
done
defaults=(data.split=leave_one_speaker_out data.corpus=emodb "data.root=$repo/../shared/data/emodb" train.report_to=[])

"$python" -m ser_dist.cli cv "$repo/$recipe" --config "$repo/$config" "${defaults[@]}" "$@" --out "$out"

# cv_summary.json has the folds' test scores and their mean and sd; each fold's metrics.json adds its test
# speakers and best validation score.
"$python" - "$out" "$recipe" "$repo/$config" "${defaults[@]}" "$@" <<'PY'
import json, sys
from pathlib import Path

import yaml

out, recipe, config, overrides = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), sys.argv[4:]
summary = json.loads((out / "cv_summary.json").read_text())
metrics = ("unweighted_accuracy", "weighted_accuracy", "macro_f1")
folds = []
for fold in summary["folds"]:
    run = json.loads((out / f"fold_{fold['fold']}" / "metrics.json").read_text())
    folds.append(
        {
            "fold": fold["fold"],
            "test_speakers": run["data"]["split"]["test"]["speakers"],
            "test": {key: fold[key] for key in (*metrics, "num_examples")},
            **{key: value for key, value in run.items() if key.startswith("best_val_")},
            "best_epoch": run["best_epoch"],
        }
    )
result = {
    "recipe": recipe,
    "config": f"benchmarks/{config.name}",
    "config_settings": yaml.safe_load(config.read_text()),
    "overrides": overrides,
    "num_folds": summary["num_folds"],
    "folds": folds,
    "test": {key: {"mean": summary[key]["mean"], "sd": summary[key]["std"]} for key in metrics},
}
(out / "metrics.json").write_text(json.dumps(result, indent=2))
ua = result["test"]["unweighted_accuracy"]
sd = "" if ua["sd"] is None else f" +- {100 * ua['sd']:.2f}"
print(f"best from-scratch setting, {len(folds)} fold(s): test UA {100 * ua['mean']:.2f}{sd} -> {out / 'metrics.json'}")
PY
