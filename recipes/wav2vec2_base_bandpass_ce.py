r"""wav2vec 2.0 base (facebook/wav2vec2-base) + cross-entropy on a band-pass-augmented corpus (the seed's
``aug_bandpass_audio/``: every clip plus its band-passed copy, which stays in its original's split).

    ser-dist augment /data/my_corpus /data/aug_bandpass_audio --ops bandpass
    python recipes/wav2vec2_base_bandpass_ce.py data.root=/data/aug_bandpass_audio data.speaker_pattern='^(\\d\\d)'

wav2vec2-base has a group-norm feature encoder trained without attention masks: batches are
zero-padded and no mask is passed (pooling still ignores the padded frames).
"""

from ser_dist.config import Data, Experiment, Loss, Model, Optim, Train, cli
from ser_dist.trainer import train

CONFIG = Experiment(
    name="wav2vec2_base_bandpass_ce",
    # A folder with one subfolder per emotion, split by speaker (data.speaker_pattern names them).
    data=Data(corpus="folder", root=None, split="speaker", fold=None, max_seconds=10.0),
    # The seed's SSL fine-tuning, the same as the study's SSL rows (recipes/hubert_large_*.py): mean pooling
    # -> 256 -> classes, CNN feature encoder frozen for the first 3 epochs, layerdrop 0.
    model=Model(
        backbone="wav2vec2_base",
        head="mean",
        embedding_size=256,
        dropout=0.1,
        freeze_feature_encoder_epochs=3,
        freeze_backbone_epochs=0,
        layerdrop=0.0,
    ),
    loss=Loss(name="ce"),
    optim=Optim(name="adamw", lr=2e-5, weight_decay=0.01, scheduler="linear_warmup", warmup_ratio=0.1),
    train=Train(
        epochs=30, batch_size=8, early_stopping_patience=5, metric="ua", max_grad_norm=1.0, output_dir="runs/wav2vec2_base_bandpass_ce"
    ),
)

if __name__ == "__main__":
    train(cli(CONFIG))
