"""wav2vec 2.0 base + label smoothing: the study's cell wav2vec2_base x label_smoothing.

    python recipes/wav2vec2_base_label_smoothing.py data.root=/data/IEMOCAP_full_release              # fold 1 of 5
    ser-dist cv recipes/wav2vec2_base_label_smoothing.py data.root=/data/IEMOCAP_full_release        # all folds, mean ± std

Its row (wav2vec2_base_*.py) shares the model, optimiser and training settings and the whole study its data
protocol; tests/test_study_recipes.py names any setting that drifts.
"""

from ser_dist.config import Data, Experiment, Loss, Model, Optim, Train, cli
from ser_dist.trainer import train

CONFIG = Experiment(
    name="wav2vec2_base_label_smoothing",
    # IEMOCAP's 4 classes (excited merged into happy), leave-one-session-out: 5 folds, ser-dist cv runs them all.
    data=Data(corpus="iemocap", root=None, split="leave_one_session_out", fold=1, max_seconds=10.0),
    # The seed's SSL fine-tuning: mean pooling -> 256 -> classes, CNN feature encoder frozen for the
    # first 3 epochs, layerdrop 0; AdamW 2e-5 with linear warmup, batch 8.
    model=Model(
        backbone="wav2vec2_base",
        head="mean",
        embedding_size=256,
        dropout=0.1,
        freeze_feature_encoder_epochs=3,
        freeze_backbone_epochs=0,
        layerdrop=0.0,
    ),
    loss=Loss(name="label_smoothing", label_smoothing=0.1),
    optim=Optim(name="adamw", lr=2e-5, weight_decay=0.01, scheduler="linear_warmup", warmup_ratio=0.1),
    train=Train(
        epochs=30, batch_size=8, early_stopping_patience=5, metric="ua", max_grad_norm=1.0, output_dir="runs/wav2vec2_base_label_smoothing"
    ),
)

if __name__ == "__main__":
    train(cli(CONFIG))
