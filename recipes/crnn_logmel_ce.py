"""A CRNN trained from scratch on 64 log-mel bands, with SpecAugment, and cross-entropy.

    python recipes/crnn_logmel_ce.py data.root=DIR train.output_dir=OUT
    python recipes/crnn_logmel_ce.py data.root=DIR data.speaker_pattern='^(spk\\d+)_' model.spec_augment=false

Conv 16-32-64-64 (3x3, batch norm, ReLU, max-pools over frequency and, in the first two blocks, time)
-> BiLSTM 128 -> attentive statistics pooling -> dense 128, dropout 0.3: ~0.56 M parameters, CPU-trainable.
The split is speaker-independent; the training settings are the BiLSTM seed recipe's.
"""

from ser_dist.config import Data, Experiment, Loss, Model, Optim, Train, cli
from ser_dist.trainer import train

CONFIG = Experiment(
    name="crnn_logmel_ce",
    data=Data(corpus="folder", root=None, split="speaker", fold=None, max_seconds=10.0),
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
    loss=Loss(name="ce"),
    optim=Optim(name="adam", lr=1e-3, scheduler="plateau", plateau_factor=0.5, plateau_patience=2),
    train=Train(epochs=50, batch_size=32, early_stopping_patience=5, metric="ua", max_grad_norm=1.0, output_dir="runs/crnn_logmel_ce"),
)

if __name__ == "__main__":
    train(cli(CONFIG))
