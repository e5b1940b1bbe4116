#!/usr/bin/env bash
# openSMILE functionals + linear models, leave-one-speaker-out through `ser-dist cv`: the classical baseline of
# docs/benchmarks.md ("openSMILE baselines on EmoDB").
#
#   bash benchmarks/opensmile_baseline.sh OUT_DIR [RECIPE.py ...] [section.key=value ...]
#
# RECIPE (any number): default recipes/opensmile_egemaps_svm.py. The defaults data.corpus=emodb
# data.root=<repo>/../shared/data/emodb data.split=leave_one_speaker_out come first, so an override replaces them
# (any corpus: data.corpus=ravdess data.root=DIR ...). Each recipe's folds go to OUT_DIR/<recipe>/fold_K, with
# cv_summary.md / cv_summary.json (mean +- sample sd over the folds); every fold validates on the speaker after its
# test speaker (data/splits.py), and early stopping and the best epoch use that validation speaker only. openSMILE
# runs once per clip: the feature cache keeps its output on disk and every fold (and every later run) reads it back.
#
# SWEEP='optim.weight_decay=1e-4,1e-3 optim.lr=1e-3,1e-2' runs every combination as its own cv, into
# OUT_DIR/<recipe>/<combination>/, then benchmarks/select_on_validation.py picks for each fold the combination with
# the best validation UA (never the test speaker's) and reports those folds' test scores: OUT_DIR/<recipe>/selected.md.
# PYTHON (default: python) runs ser-dist; a rerun reuses every fold that finished with the same settings.
set -euo pipefail

if [ $# -lt 1 ] || [[ "$1" == -* ]]; then
  sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
out="$1"
shift
repo="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-python}"

recipes=()
overrides=()
for arg in "$@"; do
  case "$arg" in
    *.py) recipes+=("$arg") ;;
    *=*) overrides+=("$arg") ;;
    *) echo "opensmile_baseline.sh: $arg is neither a recipe (*.py) nor a section.key=value override" >&2; exit 2 ;;
  esac
done
[ ${#recipes[@]} -gt 0 ] || recipes=("$repo/recipes/opensmile_egemaps_svm.py")
defaults=(data.corpus=emodb "data.root=$repo/../shared/data/emodb" data.split=leave_one_speaker_out)

# The combinations of SWEEP's values (one empty combination without a sweep).
combinations=("")
for axis in ${SWEEP:-}; do
  key="${axis%%=*}"
  IFS=, read -ra values <<<"${axis#*=}"
  grown=()
  for combination in "${combinations[@]}"; do
    for value in "${values[@]}"; do
      grown+=("${combination:+$combination }$key=$value")
    done
  done
  combinations=("${grown[@]}")
done

for recipe in "${recipes[@]}"; do
  name="$(basename "$recipe" .py)"
  folders=()
  for combination in "${combinations[@]}"; do
    folder="$out/$name"
    if [ -n "$combination" ]; then
      folder="$folder/$(echo "$combination" | tr ' =' '_-')"
    fi
    folders+=("$folder")
    # shellcheck disable=SC2086  # a combination is words on purpose
    "$python" -m ser_dist.cli cv "$recipe" "${defaults[@]}" "${overrides[@]}" $combination train.report_to=[] --out "$folder"
    echo "== $name ${combination:-(recipe settings)}: $folder/cv_summary.md"
    cat "$folder/cv_summary.md"
  done
  if [ -n "${SWEEP:-}" ]; then
    "$python" "$repo/benchmarks/select_on_validation.py" "${folders[@]}" --out "$out/$name/selected.md"
  fi
done
