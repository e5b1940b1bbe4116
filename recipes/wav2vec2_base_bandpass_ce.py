r"""wav2vec 2.0 base (facebook/wav2vec2-base) + cross-entropy on a band-pass-augmented corpus (the seed's
``aug_bandpass_audio/``: every clip plus its band-passed copy, which stays in its original's split).

    ser-dist augment /data/my_corpus /data/aug_bandpass_audio --ops bandpass
    python recipes/wav2vec2_base_bandpass_ce.py data.root=/data/aug_bandpass_audio data.speaker_pattern='^(\\d\\d)'

wav2vec2-base has a group-norm feature encoder trained without attention masks: batches are
zero-padded and no mask is passed (pooling still ignores the padded frames).
"""
import dataclasses

from ser_dist.config import Data, Experiment, cli
from ser_dist.study import SSL_MODEL, SSL_OPTIM, SSL_TRAIN
from ser_dist.trainer import train

CONFIG = Experiment(
    name="wav2vec2_base_bandpass_ce",
    data=Data(root=None, split="speaker", max_seconds=10.0),
    model=dataclasses.replace(SSL_MODEL, backbone="wav2vec2_base"),  # the seed's SSL strategy, shared with the study (ser_dist/study.py)
    optim=SSL_OPTIM,
    train=dataclasses.replace(SSL_TRAIN, output_dir="runs/wav2vec2_base_bandpass_ce"),
)

if __name__ == "__main__":
    train(cli(CONFIG))
