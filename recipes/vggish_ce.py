"""VGGish CNN on log-mel patches + cross-entropy: the study's cell vggish x ce (settings in ser_dist/study.py).

    python recipes/vggish_ce.py data.root=/data/IEMOCAP_full_release              # fold 1 of 5
    python recipes/vggish_ce.py data.root=... model.checkpoint=vggish_audioset.pt   # AudioSet weights (key layout: ser_dist/models/vggish.py)
    ser-dist cv recipes/vggish_ce.py data.root=/data/IEMOCAP_full_release        # all folds, mean ± std
"""
from ser_dist.config import cli
from ser_dist.study import study_experiment
from ser_dist.trainer import train

CONFIG = study_experiment("vggish", "ce")

if __name__ == "__main__":
    train(cli(CONFIG))
