#!/bin/bash
# Submit the whole chain for one dataset: the preprocessing array, then the TS1 fold array once every scan is
# cached, then the report once every fold is trained. Run from the repository root:
#
#   bash docs/slurm/submit_chain.sh UKSH-1
set -euo pipefail
dataset="${1:?usage: bash docs/slurm/submit_chain.sh DATASET}"
here="$(dirname "$0")"
mkdir -p logs
preprocess=$(sbatch --parsable --export=ALL,DATASET="$dataset" "$here/preprocess_array.sbatch")
train=$(sbatch --parsable --dependency=afterok:"$preprocess" --export=ALL,DATASET="$dataset",STAGE=ts1 \
    "$here/train_folds.sbatch")
report=$(sbatch --parsable --dependency=afterok:"$train" --export=ALL,DATASET="$dataset",STAGE=ts1 \
    "$here/evaluate.sbatch")
echo "submitted: preprocess $preprocess, train $train, report $report (logs in logs/ and beside each output)"
