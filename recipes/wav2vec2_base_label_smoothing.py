"""wav2vec 2.0 base + label smoothing: the study's cell wav2vec2_base x label_smoothing (settings in ser_dist/study.py).

    python recipes/wav2vec2_base_label_smoothing.py data.root=/data/IEMOCAP_full_release              # fold 1 of 5
    ser-dist cv recipes/wav2vec2_base_label_smoothing.py data.root=/data/IEMOCAP_full_release        # all folds, mean ± std
"""
from ser_dist.config import cli
from ser_dist.study import study_experiment
from ser_dist.trainer import train

CONFIG = study_experiment("wav2vec2_base", "label_smoothing")

if __name__ == "__main__":
    train(cli(CONFIG))
