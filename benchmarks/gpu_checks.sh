#!/usr/bin/env bash
# Every GPU check and benchmark of the project in one prepared run, for a lent GPU machine whose image has
# PyTorch but not SimpleITK/pydicom/argparse-dataclass. Fetch those once as wheels into an ignored .whl/ folder:
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux2014_x86_64 -d .whl SimpleITK pydicom argparse-dataclass
# Each step has its own time limit so one slow step cannot starve the others; results land in $OUT.
set -uo pipefail
OUT=${OUT:-/tmp/lnstage-gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site:$PWD
else
    export PYTHONPATH=$PWD
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, SimpleITK; print('torch', torch.__version__, torch.cuda.get_device_name(0))" | tee -a "$OUT/gpu.txt"

step() {  # step NAME SECONDS COMMAND...: run with a limit, log to $OUT/NAME.log
    local name=$1 limit=$2; shift 2
    echo "=== $name (limit ${limit}s)"
    local start=$SECONDS
    timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
    echo "=== $name exit $? after $((SECONDS - start)) s"
    tail -n 15 "$OUT/$name.log"
}

step gpu_tests 100 python3 -m pytest -q -m gpu -p no:cacheprovider tests
step gpu_registration 230 python3 benchmarks/gpu_registration.py --device cuda --scans 2 --json "$OUT/gpu_registration.json"
step train_input 150 python3 benchmarks/train_input.py --device cuda --threads 1 2 4 auto --processes 4 --seconds 2 --json "$OUT/train_input.json"
step predict_timing 110 python3 benchmarks/predict_timing.py --device cuda --json "$OUT/predict_timing.json"
