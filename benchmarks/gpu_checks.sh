#!/usr/bin/env bash
# Every GPU check and benchmark of the project in one prepared run, for a lent GPU machine whose image has
# PyTorch but not SimpleITK/pydicom (the command line needs no third-party parser now). Fetch those once as
# wheels into an ignored .whl/ folder:
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux2014_x86_64 -d .whl SimpleITK pydicom
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
# Registration memory at 1 mm (one phantom scan, 5 atlases): CUDA peak with one atlas at a time (target <= 8 GiB),
# then all 5 atlases in one batch, timed warm (second registration of the process; target <= 10 s on a large card).
step phantom_1mm 300 python3 -m preprocess.phantom --spacing-mm 1 --patients 1 --atlases 5 --out /tmp/lnstage-p1mm
step memory_cuda_batch1 200 python3 benchmarks/memory.py --root /tmp/lnstage-p1mm --device cuda --configs 1:5 2:5 \
    --atlas-batch 1 --json "$OUT/memory_cuda_batch1.json"
step memory_cuda_all 200 python3 benchmarks/memory.py --root /tmp/lnstage-p1mm --device cuda --configs 1:5 \
    --atlas-batch 5 --repeat 2 --json "$OUT/memory_cuda_all.json"
