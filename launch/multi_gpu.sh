#!/usr/bin/env bash
# Every GPU of this machine, bf16 (accelerate_config.yaml), one process per GPU:
#   bash launch/multi_gpu.sh recipes/hubert_large_focal.py data.root=/data/iemocap train.output_dir=runs/x
#   NUM_GPUS=4 bash launch/multi_gpu.sh ...                                       # only 4 of them
#   DEEPSPEED=launch/deepspeed/zero3.json bash launch/multi_gpu.sh ...            # under DeepSpeed ZeRO-3
# train.batch_size is per GPU: the global batch is batch_size x GPUs x train.grad_accum_steps.
set -euo pipefail
cd "$(dirname "$0")/.."
NUM_GPUS=${NUM_GPUS:-$(nvidia-smi --list-gpus | wc -l)}
deepspeed=()
if [ -n "${DEEPSPEED:-}" ]; then
  # precision on the command line: Accelerate refuses a DeepSpeed file together with the config file's precision
  deepspeed=(--use_deepspeed --deepspeed_config_file "$DEEPSPEED" --mixed_precision "${MIXED_PRECISION:-bf16}")
fi
exec accelerate launch --config_file accelerate_config.yaml --num_processes "$NUM_GPUS" ${deepspeed[@]+"${deepspeed[@]}"} "$@"
