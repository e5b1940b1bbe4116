"""A freeze-then-unfreeze schedule on one global batch, on however many processes this is launched with.

    python tests/dist/freeze_schedule.py OUT.pt
    ACCELERATE_USE_CPU=true torchrun --nproc_per_node 2 tests/dist/freeze_schedule.py OUT.pt
    accelerate launch --use_deepspeed --deepspeed_config_file launch/deepspeed/zero2.json --num_processes 2 tests/dist/freeze_schedule.py OUT.pt

A tiny random HuBERT (layer norm + attention mask, so padding does not change its output) trains 3
"epochs" of 2 optimizer steps each on the same 8 clips, split evenly across the processes: epoch 1 with
the whole encoder frozen, epoch 2 with only the CNN feature encoder frozen, epoch 3 with nothing frozen.
Freezing goes through the trainer's own ``Freezing``, the step through the same accelerator calls as the
trainer (backward, clip to a small norm so clipping is active, step). Rank 0 saves the weights after each
epoch; they must match across 1 process, 2 DDP processes and 2 ZeRO-2 processes.
"""
import sys
from pathlib import Path

import torch
from accelerate.utils import set_seed

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script or in-process (runpy)
from global_batch import my_share  # noqa: E402

from ser_dist.config import Experiment, apply_overrides
from ser_dist.losses import build_loss
from ser_dist.models import build_model
from ser_dist.optim import Freezing, build_optimizer
from ser_dist.trainer import configure_deepspeed, make_accelerator

GLOBAL_BATCH, NUM_CLASSES, SAMPLE_RATE, STEPS_PER_EPOCH = 8, 4, 16000, 2

exp = apply_overrides(Experiment(), {
    "model.backbone": "hubert_tiny_random", "model.pretrained": False, "model.embedding_size": 16, "model.dropout": 0.0,
    "model.freeze_backbone_epochs": 1, "model.freeze_feature_encoder_epochs": 2,
    "optim.name": "adamw", "optim.lr": 1e-4, "optim.weight_decay": 0.01, "optim.scheduler": "none",
    "train.max_grad_norm": 0.05, "data.root": ".",
})
accelerator = make_accelerator(exp)
exp.train.batch_size = GLOBAL_BATCH // accelerator.num_processes
set_seed(0)
model = build_model(exp, NUM_CLASSES)
optimizer = build_optimizer(model, exp.optim)
criterion = build_loss(exp.loss, NUM_CLASSES)

waves, lengths, labels = my_share(accelerator, GLOBAL_BATCH, SAMPLE_RATE // 4, SAMPLE_RATE // 2, NUM_CLASSES)

if accelerator.state.deepspeed_plugin is not None:
    configure_deepspeed(accelerator.state.deepspeed_plugin, exp)
model, optimizer = accelerator.prepare(model, optimizer)
freezing = Freezing(exp.model, accelerator.unwrap_model(model), optimizer)
model.eval()  # no dropout: the encoder's own dropout draws differ with the shard size; gradients flow the same
snapshots, frozen_log = [], []
state = accelerator.get_state_dict(model)
if accelerator.is_main_process:
    snapshots.append({k: v.detach().cpu().clone().float() for k, v in state.items()})  # before training
for epoch in range(3):
    frozen = freezing.start_epoch(epoch)
    frozen_log.append(sorted(frozen))
    for _ in range(STEPS_PER_EPOCH):
        loss = criterion(model(waves, lengths).logits, labels)
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(model.parameters(), exp.train.max_grad_norm)
        optimizer.step()
        freezing.after_step(frozen)
        optimizer.zero_grad(set_to_none=True)
    state = accelerator.get_state_dict(model)
    if accelerator.is_main_process:
        snapshots.append({k: v.detach().cpu().clone().float() for k, v in state.items()})

if accelerator.is_main_process:
    torch.save({"snapshots": snapshots, "frozen": frozen_log, "num_processes": accelerator.num_processes,
                "deepspeed": accelerator.state.deepspeed_plugin is not None}, sys.argv[1])
accelerator.wait_for_everyone()
accelerator.end_training()
