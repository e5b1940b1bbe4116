r"""HuBERT-large (facebook/hubert-large-ll60k) fine-tuned with cross-entropy: the seed's headline model.

    python recipes/hubert_large_ce.py data.root=/data/my_corpus data.speaker_pattern='^(\\d\\d)'
    accelerate launch recipes/hubert_large_ce.py data.root=/data/my_corpus ...          # many GPUs
    python recipes/hubert_large_ce.py data.root=... model.backbone=/models/hubert-large-ll60k   # offline copy

The seed's strategy: CNN feature encoder frozen for the first 3 epochs, AdamW lr 2e-5, weight decay
0.01, linear warmup, batch 8, gradient clipping, early stopping (patience 5), layerdrop 0.
"""
import dataclasses

from ser_dist.config import Data, Experiment, cli
from ser_dist.study import SSL_MODEL, SSL_OPTIM, SSL_TRAIN
from ser_dist.trainer import train

CONFIG = Experiment(
    name="hubert_large_ce",
    data=Data(root=None, split="speaker", max_seconds=10.0),
    model=dataclasses.replace(SSL_MODEL, backbone="hubert_large"),  # the seed's SSL strategy, shared with the study (ser_dist/study.py)
    optim=SSL_OPTIM,
    train=dataclasses.replace(SSL_TRAIN, output_dir="runs/hubert_large_ce"),
)

if __name__ == "__main__":
    train(cli(CONFIG))
