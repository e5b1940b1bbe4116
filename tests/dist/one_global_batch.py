"""One optimizer step on one global batch, on however many ranks this is launched with.

    python tests/dist/one_global_batch.py OUT.pt
    ACCELERATE_USE_CPU=true torchrun --nproc_per_node 2 tests/dist/one_global_batch.py OUT.pt

The global batch (8 clips of different lengths) is split evenly across ranks; rank 0 saves the
global loss and the updated weights, which must match between 1 and 2 ranks. It also checks that
``check_ranks_agree`` passes when ranks agree and fails on every rank when one rank diverges.
"""
import sys
from pathlib import Path

import torch
from accelerate.utils import set_seed

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script or in-process (runpy)
from global_batch import my_share  # noqa: E402

from ser_dist.checkpoint import TrainerState
from ser_dist.config import Experiment, apply_overrides
from ser_dist.losses import build_loss
from ser_dist.models import build_model
from ser_dist.optim import build_optimizer
from ser_dist.trainer import TrainingError, check_ranks_agree, make_accelerator

GLOBAL_BATCH, NUM_CLASSES, SAMPLE_RATE = 8, 6, 16000

exp = apply_overrides(Experiment(), {
    "model.backbone": "bilstm", "model.hidden_size": 16, "model.embedding_size": 16, "model.dropout": 0.0,
    "optim.name": "adamw", "optim.lr": 1e-2, "optim.weight_decay": 0.01, "train.max_grad_norm": 1.0, "data.root": ".",
})
accelerator = make_accelerator(exp)
set_seed(0)
model = build_model(exp, NUM_CLASSES)
initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
optimizer = build_optimizer(model, exp.optim)
criterion = build_loss(exp.loss, NUM_CLASSES)

waves, lengths, labels = my_share(accelerator, GLOBAL_BATCH, SAMPLE_RATE // 2, SAMPLE_RATE, NUM_CLASSES)

model, optimizer = accelerator.prepare(model, optimizer)
model.train()
loss = criterion(model(waves, lengths).logits, labels)
accelerator.backward(loss)
accelerator.clip_grad_norm_(model.parameters(), exp.train.max_grad_norm)
optimizer.step()
global_loss = accelerator.reduce(loss.detach(), "mean")

state = TrainerState(epoch=0, global_step=1)
check_ranks_agree(accelerator, state, optimizer, set())
if accelerator.num_processes > 1:
    state.stopped_early = accelerator.process_index == 1  # a decision taken on one rank alone
    try:
        check_ranks_agree(accelerator, state, optimizer, set())
        raise SystemExit("check_ranks_agree missed a divergent rank")
    except TrainingError as err:
        assert "stopped_early" in str(err), err
        print(f"rank {accelerator.process_index}: divergence caught", flush=True)

if accelerator.is_main_process:
    weights = {k: v.detach().cpu().clone() for k, v in accelerator.unwrap_model(model).state_dict().items()}
    torch.save({"loss": float(global_loss), "weights": weights, "initial": initial, "num_processes": accelerator.num_processes}, sys.argv[1])
accelerator.wait_for_everyone()
accelerator.end_training()
