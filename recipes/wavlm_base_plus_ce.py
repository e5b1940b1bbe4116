r"""WavLM base+ (microsoft/wavlm-base-plus) + cross-entropy, with the seed's fine-tuning strategy.

    python recipes/wavlm_base_plus_ce.py data.root=/data/my_corpus data.speaker_pattern='^(\\d\\d)'
    python recipes/wavlm_base_plus_ce.py data.root=... model.head=weighted_layers   # SUPERB-style layer sum
"""
from ser_dist.config import Data, Experiment, Model, Optim, Train, cli
from ser_dist.trainer import train

CONFIG = Experiment(
    name="wavlm_base_plus_ce",
    data=Data(root=None, split="speaker", max_seconds=10.0),
    model=Model(backbone="wavlm_base_plus", head="mean", embedding_size=256, dropout=0.1, freeze_feature_encoder_epochs=3, layerdrop=0.0),
    optim=Optim(name="adamw", lr=2e-5, weight_decay=0.01, scheduler="linear_warmup", warmup_ratio=0.1),
    train=Train(epochs=30, batch_size=8, max_grad_norm=1.0, early_stopping_patience=5, metric="ua", output_dir="runs/wavlm_base_plus_ce"),
)

if __name__ == "__main__":
    train(cli(CONFIG))
