r"""WavLM base+ (microsoft/wavlm-base-plus) + cross-entropy, with the seed's fine-tuning strategy.

    python recipes/wavlm_base_plus_ce.py data.root=/data/my_corpus data.speaker_pattern='^(\\d\\d)'
    python recipes/wavlm_base_plus_ce.py data.root=... model.head=weighted_layers   # SUPERB-style layer sum
"""
import dataclasses

from ser_dist.config import Data, Experiment, cli
from ser_dist.study import SSL_MODEL, SSL_OPTIM, SSL_TRAIN
from ser_dist.trainer import train

CONFIG = Experiment(
    name="wavlm_base_plus_ce",
    data=Data(root=None, split="speaker", max_seconds=10.0),
    model=dataclasses.replace(SSL_MODEL, backbone="wavlm_base_plus"),  # the seed's SSL strategy, shared with the study (ser_dist/study.py)
    optim=SSL_OPTIM,
    train=dataclasses.replace(SSL_TRAIN, output_dir="runs/wavlm_base_plus_ce"),
)

if __name__ == "__main__":
    train(cli(CONFIG))
