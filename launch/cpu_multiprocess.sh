#!/usr/bin/env bash
# Several training processes on one machine's CPUs (gloo), e.g. to check a recipe's multi-process
# behaviour without GPUs. Paths are relative to where you run it from (the script does not cd):
#   bash launch/cpu_multiprocess.sh recipes/bilstm_mfcc_ce.py data.root=DIR train.output_dir=runs/x    # 2 processes
#   NPROC=4 bash launch/cpu_multiprocess.sh ...
#   DEEPSPEED=launch/deepspeed/zero2.json bash launch/cpu_multiprocess.sh ...     # DeepSpeed ZeRO on CPU
# Each process uses OMP_NUM_THREADS threads (default: the cores divided among the processes).
# (`accelerate launch --cpu --num_processes N` would start one process only: the trainer refuses it.)
set -euo pipefail
NPROC=${NPROC:-2}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(( $(nproc) / NPROC > 0 ? $(nproc) / NPROC : 1 ))}
PORT=${PORT:-$(python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
if [ -n "${DEEPSPEED:-}" ]; then
  # Not --cpu / ACCELERATE_USE_CPU: Accelerate would drop DeepSpeed. Without CUDA the trainer uses gloo.
  exec accelerate launch --use_deepspeed --deepspeed_config_file "$DEEPSPEED" --num_processes "$NPROC" \
    --num_machines 1 --mixed_precision no --dynamo_backend no --main_process_port "$PORT" "$@"
fi
export ACCELERATE_USE_CPU=true
exec torchrun --nproc_per_node "$NPROC" --master_port "$PORT" "$@"
