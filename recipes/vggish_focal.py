"""VGGish CNN on log-mel patches + focal loss: the study's cell vggish x focal.

    python recipes/vggish_focal.py data.root=/data/IEMOCAP_full_release              # fold 1 of 5
    python recipes/vggish_focal.py data.root=... model.checkpoint=vggish_audioset.pt   # AudioSet weights (key layout: ser_dist/models/vggish.py)
    ser-dist cv recipes/vggish_focal.py data.root=/data/IEMOCAP_full_release        # all folds, mean ± std

Its row (vggish_*.py) shares the model, optimiser and training settings and the whole study its data
protocol; tests/test_study_recipes.py names any setting that drifts.
"""

from ser_dist.config import Data, Experiment, Loss, Model, Optim, Train, cli
from ser_dist.trainer import train

CONFIG = Experiment(
    name="vggish_focal",
    # IEMOCAP's 4 classes (excited merged into happy), leave-one-session-out: 5 folds, ser-dist cv runs them all.
    data=Data(corpus="iemocap", root=None, split="leave_one_session_out", fold=1, max_seconds=10.0),
    # VGGish on 0.96 s log-mel patches, mean of the 128-D patch embeddings. From scratch unless
    # model.checkpoint=PATH gives the AudioSet weights (the seed's setting), then fine-tuned at a lower lr.
    model=Model(
        backbone="vggish",
        head="auto",
        hidden_size=4096,
        embedding_size=128,
        dropout=0.3,
        freeze_feature_encoder_epochs=0,
        freeze_backbone_epochs=0,
    ),
    loss=Loss(name="focal", gamma=2.0, alpha=None),
    optim=Optim(name="adam", lr=1e-4, scheduler="plateau", plateau_factor=0.5, plateau_patience=2),
    train=Train(epochs=50, batch_size=32, early_stopping_patience=5, metric="ua", max_grad_norm=1.0, output_dir="runs/vggish_focal"),
)

if __name__ == "__main__":
    train(cli(CONFIG))
