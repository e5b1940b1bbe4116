"""The seed's BiLSTM on MFCC + delta + delta-delta (120-D), cross-entropy.

    accelerate launch recipes/bilstm_mfcc_ce.py data.root=DIR train.output_dir=OUT
    python recipes/bilstm_mfcc_ce.py data.root=DIR data.speaker_pattern='^(spk\\d+)_'

Seed settings: Bi-LSTM 256 x 2 -> Bi-LSTM 256 -> dense 128, dropout 0.3, batch 32, Adam lr 1e-3,
ReduceLROnPlateau, early stopping, 50 epochs, clips cut at 10 s. The split is speaker-independent.
"""

from ser_dist.config import Data, Experiment, Loss, Model, Optim, Train, cli
from ser_dist.trainer import train

CONFIG = Experiment(
    name="bilstm_mfcc_ce",
    data=Data(corpus="folder", root=None, split="speaker", fold=None, max_seconds=10.0),
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
    loss=Loss(name="ce"),
    optim=Optim(name="adam", lr=1e-3, scheduler="plateau", plateau_factor=0.5, plateau_patience=2),
    train=Train(epochs=50, batch_size=32, early_stopping_patience=5, metric="ua", max_grad_norm=1.0, output_dir="runs/bilstm_mfcc_ce"),
)

if __name__ == "__main__":
    train(cli(CONFIG))
