r"""HuBERT-large (facebook/hubert-large-ll60k) fine-tuned with cross-entropy: the seed's headline model.

    python recipes/hubert_large_ce.py data.root=/data/my_corpus data.speaker_pattern='^(\\d\\d)'
    accelerate launch recipes/hubert_large_ce.py data.root=/data/my_corpus ...          # many GPUs
    python recipes/hubert_large_ce.py data.root=... model.backbone=/models/hubert-large-ll60k   # offline copy

The seed's strategy: CNN feature encoder frozen for the first 3 epochs, AdamW lr 2e-5, weight decay
0.01, linear warmup, batch 8, gradient clipping, early stopping (patience 5), layerdrop 0.

Also the study's cell hubert_large x ce: its model, loss, optimiser and training settings are its row's and
column's (tests/test_study_recipes.py), but its data stays the seed's folder and speaker split; a grid
passes one protocol to every cell (ser-dist grid ... --data corpus=iemocap split=leave_one_session_out).
"""

from ser_dist.config import Data, Experiment, Loss, Model, Optim, Train, cli
from ser_dist.trainer import train

CONFIG = Experiment(
    name="hubert_large_ce",
    # A folder with one subfolder per emotion, split by speaker (data.speaker_pattern names them).
    data=Data(corpus="folder", root=None, split="speaker", fold=None, max_seconds=10.0),
    # The seed's SSL fine-tuning, the same as the study's SSL rows (recipes/hubert_large_*.py): mean pooling
    # -> 256 -> classes, CNN feature encoder frozen for the first 3 epochs, layerdrop 0.
    model=Model(
        backbone="hubert_large",
        head="mean",
        embedding_size=256,
        dropout=0.1,
        freeze_feature_encoder_epochs=3,
        freeze_backbone_epochs=0,
        layerdrop=0.0,
    ),
    loss=Loss(name="ce"),
    optim=Optim(name="adamw", lr=2e-5, weight_decay=0.01, scheduler="linear_warmup", warmup_ratio=0.1),
    train=Train(epochs=30, batch_size=8, early_stopping_patience=5, metric="ua", max_grad_norm=1.0, output_dir="runs/hubert_large_ce"),
)

if __name__ == "__main__":
    train(cli(CONFIG))
