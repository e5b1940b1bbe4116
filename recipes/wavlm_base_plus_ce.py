r"""WavLM base+ (microsoft/wavlm-base-plus) + cross-entropy, with the seed's fine-tuning strategy.

python recipes/wavlm_base_plus_ce.py data.root=/data/my_corpus data.speaker_pattern='^(\\d\\d)'
python recipes/wavlm_base_plus_ce.py data.root=... model.head=weighted_layers   # SUPERB-style layer sum
"""

from ser_dist.config import Data, Experiment, Loss, Model, Optim, Train, cli
from ser_dist.trainer import train

CONFIG = Experiment(
    name="wavlm_base_plus_ce",
    # A folder with one subfolder per emotion, split by speaker (data.speaker_pattern names them).
    data=Data(corpus="folder", root=None, split="speaker", fold=None, max_seconds=10.0),
    # The seed's SSL fine-tuning, the same as the study's SSL rows (recipes/hubert_large_*.py): mean pooling
    # -> 256 -> classes, CNN feature encoder frozen for the first 3 epochs, layerdrop 0.
    model=Model(
        backbone="wavlm_base_plus",
        head="mean",
        embedding_size=256,
        dropout=0.1,
        freeze_feature_encoder_epochs=3,
        freeze_backbone_epochs=0,
        layerdrop=0.0,
    ),
    loss=Loss(name="ce"),
    optim=Optim(name="adamw", lr=2e-5, weight_decay=0.01, scheduler="linear_warmup", warmup_ratio=0.1),
    train=Train(epochs=30, batch_size=8, early_stopping_patience=5, metric="ua", max_grad_norm=1.0, output_dir="runs/wavlm_base_plus_ce"),
)

if __name__ == "__main__":
    train(cli(CONFIG))
