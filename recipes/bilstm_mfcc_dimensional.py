"""The seed's BiLSTM on MFCC + delta + delta-delta (120-D), regressing arousal, valence and dominance with the CCC loss.

    ser-dist make-demo-data demo_data
    python recipes/bilstm_mfcc_dimensional.py data.root=demo_data train.output_dir=OUT
    python recipes/bilstm_mfcc_dimensional.py data.manifest=FILE data.dimension_range=[1,7] data.targets=both

The manifest (or a Hugging Face dataset, data.hf_dataset) holds each clip's ratings in the columns
data.dimension_columns, here on a 1-5 scale mapped to [0, 1]. The model is the BiLSTM seed recipe's with one
regression output per dimension instead of the classifier (data.targets=both: beside it); the loss is the mean over
dimensions of 1 - CCC over each batch (Lin 1989), and the best epoch is the one with the highest mean validation CCC.
The split is speaker-independent.
"""

from ser_dist.config import Data, Experiment, Loss, Model, Optim, Train, cli
from ser_dist.trainer import train

CONFIG = Experiment(
    name="bilstm_mfcc_dimensional",
    data=Data(
        corpus="folder",
        manifest=None,
        split="speaker",
        fold=None,
        max_seconds=10.0,
        speaker_pattern=None,
        targets="dimensional",
        dimension_columns=["arousal", "valence", "dominance"],
        dimension_range=[1.0, 5.0],
    ),
    # head "auto" is the last layer's final states, the seed's; the freezing settings are for SSL encoders.
    model=Model(
        backbone="bilstm",
        head="auto",
        n_mfcc=40,
        hidden_size=256,
        embedding_size=128,
        dropout=0.3,
        freeze_feature_encoder_epochs=0,
        freeze_backbone_epochs=0,
    ),
    # loss.name is the categorical loss, used with data.targets=both (weighted by 1, and the CCC loss by dimension_weight)
    loss=Loss(name="ce", dimension_loss="ccc", dimension_weight=1.0),
    optim=Optim(name="adam", lr=1e-3, scheduler="plateau", plateau_factor=0.5, plateau_patience=2),
    train=Train(
        epochs=50, batch_size=32, early_stopping_patience=5, metric="ccc_mean", max_grad_norm=1.0, output_dir="runs/bilstm_mfcc_dimensional"
    ),
)

if __name__ == "__main__":
    train(cli(CONFIG))
