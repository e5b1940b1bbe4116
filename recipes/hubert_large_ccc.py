"""HuBERT large + CCC loss: the study's cell hubert_large x ccc (settings in ser_dist/study.py).

    python recipes/hubert_large_ccc.py data.root=/data/IEMOCAP_full_release              # fold 1 of 5
    ser-dist cv recipes/hubert_large_ccc.py data.root=/data/IEMOCAP_full_release        # all folds, mean ± std
"""
from ser_dist.config import cli
from ser_dist.study import study_experiment
from ser_dist.trainer import train

CONFIG = study_experiment("hubert_large", "ccc")

if __name__ == "__main__":
    train(cli(CONFIG))
