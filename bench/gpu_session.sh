#!/usr/bin/env bash
# Everything measured on a lent CUDA machine, in one call (device time is scarce). Writes into $OUT:
#   log.txt, scoring_cuda_<arch>.json, gpu_saved.tar (the sample model saved from the GPU, for the CPU test)
#   run from the repo root on the GPU machine:  bash bench/gpu_session.sh
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/gpu_out}; mkdir -p "$OUT"
exec > >(tee "$OUT/log.txt") 2>&1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
echo "cores: $(nproc)"
python3 -c "import torch, PIL, pandas, numpy; print('torch', torch.__version__, 'pillow', PIL.__version__, 'pandas', pandas.__version__, 'numpy', numpy.__version__)"
if [ "${SKIP_FILES:-0}" != 1 ]; then
  python3 bench/gpu_model_files.py /tmp/gpu_saved 2>&1 | tail -20 && tar -cf "$OUT/gpu_saved.tar" -C /tmp gpu_saved
  python3 -m pytest -q -p no:cacheprovider tests/test_model_cuda.py tests/test_model_scoring.py tests/test_model_loading.py 2>&1 | tail -25
fi
python3 -m pytest -q -p no:cacheprovider tests/test_model_gpu_decode.py 2>&1 | tail -3
for decoder in ${DECODERS:-pillow gpu}; do
  for arch in ${ARCHS:-resnet18 resnet50}; do
    python3 bench/bench_scoring.py --arch "$arch" --decoder "$decoder" --n "${N:-8192}" --runs 3 ${WORKERS:+--workers $WORKERS} \
      --data /tmp/scoring_data --out "$OUT/scoring_cuda_${arch}_${decoder}.json" 2>&1 \
      | grep -E '"(device|bare_forward_img_per_s|pipeline_img_per_s|ratio_to_bare|loader_only_img_per_s|workers|batch_size|decoder)"|Error|error'
  done
done
python3 bench/gpu_decode_probe.py /tmp/scoring_data 2>&1 | tail -3
