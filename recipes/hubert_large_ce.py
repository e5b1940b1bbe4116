r"""HuBERT-large (facebook/hubert-large-ll60k) fine-tuned with cross-entropy: the seed's headline model.

    python recipes/hubert_large_ce.py data.root=/data/my_corpus data.speaker_pattern='^(\\d\\d)'
    accelerate launch recipes/hubert_large_ce.py data.root=/data/my_corpus ...          # many GPUs
    python recipes/hubert_large_ce.py data.root=... model.backbone=/models/hubert-large-ll60k   # offline copy

The seed's strategy: CNN feature encoder frozen for the first 3 epochs, AdamW lr 2e-5, weight decay
0.01, linear warmup, batch 8, gradient clipping, early stopping (patience 5), layerdrop 0.
"""
from ser_dist.config import Data, Experiment, Model, Optim, Train, cli
from ser_dist.trainer import train

CONFIG = Experiment(
    name="hubert_large_ce",
    data=Data(root=None, split="speaker", max_seconds=10.0),
    model=Model(backbone="hubert_large", head="mean", embedding_size=256, dropout=0.1, freeze_feature_encoder_epochs=3, layerdrop=0.0),
    optim=Optim(name="adamw", lr=2e-5, weight_decay=0.01, scheduler="linear_warmup", warmup_ratio=0.1),
    train=Train(epochs=30, batch_size=8, max_grad_norm=1.0, early_stopping_patience=5, metric="ua", output_dir="runs/hubert_large_ce"),
)

if __name__ == "__main__":
    train(cli(CONFIG))
