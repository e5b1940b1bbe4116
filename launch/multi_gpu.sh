#!/usr/bin/env bash
# Every visible GPU of this machine, bf16 (accelerate_config.yaml), one process per GPU. Paths are
# relative to where you run it from (the script does not cd):
#   bash launch/multi_gpu.sh recipes/hubert_large_focal.py data.root=/data/iemocap train.output_dir=runs/x
#   CUDA_VISIBLE_DEVICES=0,1 bash launch/multi_gpu.sh ...                         # those 2 GPUs
#   NUM_GPUS=4 bash launch/multi_gpu.sh ...                                       # only 4 of them
#   DEEPSPEED=launch/deepspeed/zero3.json bash launch/multi_gpu.sh ...            # under DeepSpeed ZeRO-3
# train.batch_size is per GPU: the global batch is batch_size x GPUs x train.grad_accum_steps.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -z "${NUM_GPUS:-}" ]; then
  if [ -n "${CUDA_VISIBLE_DEVICES+set}" ]; then  # the GPUs this process may use, not every GPU of the machine
    NUM_GPUS=$(tr ',' '\n' <<< "$CUDA_VISIBLE_DEVICES" | grep -c '[^[:space:]]' || true)
  else
    NUM_GPUS=$(nvidia-smi --list-gpus | wc -l)
  fi
fi
if [ "$NUM_GPUS" -lt 1 ]; then
  echo "ser-dist: error: no GPU visible (CUDA_VISIBLE_DEVICES='${CUDA_VISIBLE_DEVICES-}'); on CPUs use bash launch/cpu_multiprocess.sh" >&2
  exit 2
fi
deepspeed=()
if [ -n "${DEEPSPEED:-}" ]; then
  # precision on the command line: Accelerate refuses a DeepSpeed file together with the config file's precision
  deepspeed=(--use_deepspeed --deepspeed_config_file "$DEEPSPEED" --mixed_precision "${MIXED_PRECISION:-bf16}")
fi
exec accelerate launch --config_file "$ROOT/accelerate_config.yaml" --num_processes "$NUM_GPUS" ${deepspeed[@]+"${deepspeed[@]}"} "$@"
