"""The CRNN from scratch on 64 log-mel bands, with SpecAugment, regressing arousal, valence and dominance with the CCC loss.

    ser-dist make-demo-data demo_data
    python recipes/crnn_logmel_dimensional.py data.root=demo_data train.output_dir=OUT
    python recipes/crnn_logmel_dimensional.py data.manifest=FILE data.targets=both loss.dimension_weight=1.0

The CRNN recipe's model (conv 16-32-64-64 -> BiLSTM 128 -> attentive statistics pooling -> dense 128) with one
regression output per rating column (data.targets=both: beside the classifier); ratings 1-5 mapped to [0, 1]; the
loss is the mean over dimensions of 1 - CCC over each batch, the best epoch the one with the highest mean validation
CCC. The split is speaker-independent; the training settings are the BiLSTM seed recipe's.
"""

from ser_dist.config import Data, Experiment, Loss, Model, Optim, Train, cli
from ser_dist.trainer import train

CONFIG = Experiment(
    name="crnn_logmel_dimensional",
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
    # head "auto" is attentive statistics pooling over the valid 40 ms frames; the freezing settings are for SSL encoders.
    model=Model(
        backbone="crnn",
        head="auto",
        feature_norm="utterance",
        cnn_width=1.0,
        hidden_size=128,
        embedding_size=128,
        dropout=0.3,
        # per clip, 2 bands of up to 8 of the 64 mels and 2 spans of up to 10% of its frames, in training only
        spec_augment=True,
        freq_masks=2,
        freq_mask_width=8,
        time_masks=2,
        time_mask_ratio=0.1,
        freeze_feature_encoder_epochs=0,
        freeze_backbone_epochs=0,
    ),
    # loss.name is the categorical loss, used with data.targets=both (weighted by 1, and the CCC loss by dimension_weight)
    loss=Loss(name="ce", dimension_loss="ccc", dimension_weight=1.0),
    optim=Optim(name="adam", lr=1e-3, scheduler="plateau", plateau_factor=0.5, plateau_patience=2),
    train=Train(
        epochs=50, batch_size=32, early_stopping_patience=5, metric="ccc_mean", max_grad_norm=1.0, output_dir="runs/crnn_logmel_dimensional"
    ),
)

if __name__ == "__main__":
    train(cli(CONFIG))
