#!/usr/bin/env bash
# TS1 against SUVmax thresholding on a phantom cohort: train TS1 on the given folds with extra train flags, then
# the evaluate report (tables, McNemar, permutation test, which of the paper's claims hold).
#   benchmarks/ts1_study.sh ROOT CACHE_ROOT RUNS_DIR "0 1 2" --station-mask-channel --norm batch
set -euo pipefail
root=$1 cache=$2 runs=$3 folds=$4
shift 4
for fold in $folds; do
  .venv/bin/python -m train ts1 --fold "$fold" --dataset demo --root "$root" --cache-root "$cache" \
    --runs-dir "$runs" --no-progress "$@"
done
.venv/bin/python -m evaluate report --dataset demo --run "$runs/demo/ts1" --root "$root" --cache-root "$cache" \
  --folds "${folds// /,}" --lesion-source builtin --n-qa-scans 0 --atlas-subset-scans 0 --out "$runs/report"
