"""eGeMAPS functionals (88-D) + a small MLP (one hidden layer), cross-entropy: the classical features, a non-linear head.

    python recipes/opensmile_egemaps_mlp.py data.root=/data/emodb                  # fold 1 of 10 (speaker 03 tested)
    ser-dist cv recipes/opensmile_egemaps_mlp.py data.root=/data/emodb             # leave-one-speaker-out, mean ± std
    bash benchmarks/opensmile_baseline.sh runs/opensmile                           # the same, as docs/benchmarks.md ran it

openSMILE's eGeMAPSv02 functionals are computed once per clip (and kept on disk under the decode cache) and
standardised with the training speakers' statistics, then one hidden layer (model.hidden_size units, ReLU,
dropout) and a linear classifier, trained with cross-entropy and L2 on the weights (optim.weight_decay). Needs
pip install 'ser-dist[opensmile]' (openSMILE: research and education use only, see the README).
"""

from ser_dist.config import Data, Experiment, Loss, Model, Optim, Train, cli
from ser_dist.trainer import train

CONFIG = Experiment(
    name="opensmile_egemaps_mlp",
    # EmoDB's 7 classes, leave-one-speaker-out: 10 folds (each validates on the next speaker), ser-dist cv runs them all.
    data=Data(corpus="emodb", root=None, split="leave_one_speaker_out", fold=1, max_seconds=10.0),
    # The extractor has no parameters: frozen for the whole run, its output cached (required for opensmile).
    model=Model(
        backbone="opensmile",
        smile_set="egemaps",
        mlp_layers=1,
        hidden_size=128,
        dropout=0.3,
        classifier="linear",
        freeze_backbone_epochs=-1,
        cache_features=True,
    ),
    loss=Loss(name="ce"),
    # lr and weight decay: the best mean validation UA of a sweep over EmoDB's folds (docs/benchmarks.md).
    optim=Optim(name="adam", lr=1e-2, weight_decay=1e-2, scheduler="plateau", plateau_factor=0.5, plateau_patience=3),
    train=Train(
        epochs=100, batch_size=32, early_stopping_patience=10, metric="ua", max_grad_norm=None, output_dir="runs/opensmile_egemaps_mlp"
    ),
)

if __name__ == "__main__":
    train(cli(CONFIG))
