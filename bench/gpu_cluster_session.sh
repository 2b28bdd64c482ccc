#!/usr/bin/env bash
# Issue 15 on a lent CUDA machine, in one call (device time is scarce): scoring on Ray with a GPU model actor
# against the bare forward pass and the local pipeline (bench_cluster_gpu.py), then the CUDA tests (the detector on
# CUDA, score --cluster on the GPU, the model forms, nvJPEG). Writes log.txt and cluster_gpu_*.json into $OUT.
# Ray is not on that machine: carry its wheel (and jsonschema's) in .whl/, see BENCHMARKS "Scoring on Ray with a GPU".
#   run from the repo root on the GPU machine:  bash bench/gpu_cluster_session.sh
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/gpu_out}; mkdir -p "$OUT"
exec > >(tee "$OUT/log.txt") 2>&1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
echo "cores: $(nproc)  memory: $(free -g | awk '/Mem/ {print $2}') GiB"
if ! python3 -c "import ray" 2>/dev/null && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile .whl/*.whl 2>&1 | grep -v "as the 'root' user" || true
fi
python3 -c "import torch, ray; print('torch', torch.__version__, 'ray', ray.__version__, 'cuda', torch.cuda.is_available())"
quiet='WARNING|INFO|core_worker.cc|Token authentication|^\s*$'
if [ "${STEADY:-0}" = 1 ]; then     # the steady rates: 32,768 images and their first quarter, ResNet-50, local:16
  timeout 300 python3 bench/bench_cluster_gpu.py --arch resnet50 --n 32768 --runs 1 --skip-loader --marginal \
    --clusters "$(nproc)" --out "$OUT/cluster_gpu_steady_resnet50.json" 2>&1 | grep -Ev "$quiet" | tail -12
  timeout 200 python3 -m pytest -q -p no:cacheprovider -W ignore tests/test_model_cuda.py 2>&1 | tail -8
else
  timeout 300 python3 bench/bench_cluster_gpu.py --arch "${ARCH:-resnet50}" --n "${N:-8192}" --runs 2 --loader-n 1024 \
    --out "$OUT/cluster_gpu_${ARCH:-resnet50}.json" 2>&1 | grep -Ev "$quiet" | tail -30
  timeout 200 python3 -m pytest -q -p no:cacheprovider -W ignore tests/test_model_cuda.py tests/test_model_gpu_decode.py \
    tests/test_model_runtime.py 2>&1 | tail -15
  if [ "$SECONDS" -lt 400 ]; then
    timeout $((520 - SECONDS)) python3 bench/bench_cluster_gpu.py --arch resnet18 --n "${N:-8192}" --runs 2 \
      --loader-n 1024 --out "$OUT/cluster_gpu_resnet18.json" 2>&1 | grep -Ev "$quiet" | tail -12
  fi
fi
echo "session: ${SECONDS} s"
