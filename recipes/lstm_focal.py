"""Unidirectional LSTM on 120-D MFCC + focal loss: the study's cell lstm x focal.

    python recipes/lstm_focal.py data.root=/data/IEMOCAP_full_release              # fold 1 of 5
    ser-dist cv recipes/lstm_focal.py data.root=/data/IEMOCAP_full_release        # all folds, mean ± std

Its row (lstm_*.py) shares the model, optimiser and training settings and the whole study its data
protocol; tests/test_study_recipes.py names any setting that drifts.
"""

from ser_dist.config import Data, Experiment, Loss, Model, Optim, Train, cli
from ser_dist.trainer import train

CONFIG = Experiment(
    name="lstm_focal",
    # IEMOCAP's 4 classes (excited merged into happy), leave-one-session-out: 5 folds, ser-dist cv runs them all.
    data=Data(corpus="iemocap", root=None, split="leave_one_session_out", fold=1, max_seconds=10.0),
    # LSTM(256) x 2 (unidirectional) on 40 MFCC + delta + delta-delta (120-D), dense 128.
    model=Model(
        backbone="lstm",
        head="auto",
        n_mfcc=40,
        hidden_size=256,
        embedding_size=128,
        dropout=0.3,
        freeze_feature_encoder_epochs=0,
        freeze_backbone_epochs=0,
    ),
    loss=Loss(name="focal", gamma=2.0, alpha=None),
    optim=Optim(name="adam", lr=1e-3, scheduler="plateau", plateau_factor=0.5, plateau_patience=2),
    train=Train(epochs=50, batch_size=32, early_stopping_patience=5, metric="ua", max_grad_norm=1.0, output_dir="runs/lstm_focal"),
)

if __name__ == "__main__":
    train(cli(CONFIG))
