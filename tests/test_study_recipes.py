"""The study stays comparable while each of its 20 recipes spells out its own settings (and so do the openSMILE baselines).

Over ``recipes/{lstm,vggish,wav2vec2_base,hubert_large}_{ce,label_smoothing,focal,aam,ccc}.py``: one
data protocol for all 20, one model / optimiser / training setting per backbone row (but where a run
writes and its name), one loss setting per loss column. A drift fails naming the recipe, the dotted key,
its value and the value of the recipe it is compared with, so a setting changed in one cell is changed
in its whole row or column on purpose.
"""

import dataclasses
from pathlib import Path

from conftest import ROOT, STUDY_BACKBONES, STUDY_LOSSES

from ser_dist.config import Experiment
from ser_dist.recipe import load_recipe

ROW_SECTIONS = ("model", "optim", "train")
PER_RUN_KEYS = ("name", "train.output_dir")  # each cell's own run, not a setting it shares
# hubert_large_ce is also the seed's headline recipe (folder layout, speaker split by default), so its
# data is the other SSL seed recipes' instead of the study's; a grid passes one protocol to every cell.
SEED_DATA = {"hubert_large_ce": "wavlm_base_plus_ce"}


def settings(exp: Experiment, sections) -> dict[str, object]:
    """``section.key`` -> value over ``sections``, without the per-run keys."""
    flat = {
        f"{section}.{field.name}": getattr(getattr(exp, section), field.name)
        for section in sections
        for field in dataclasses.fields(getattr(exp, section))
    }
    return {key: value for key, value in flat.items() if key not in PER_RUN_KEYS}


def study_drifts(folder: Path) -> list[str]:
    """Every drift of the 20 recipes in ``folder``, one line each: data against the first cell, each
    cell's model / optim / train against its row's first cell, its loss against its column's first."""
    configs = {path.stem: load_recipe(path).config for path in folder.glob("*.py")}

    def drifts(name: str, reference: str, sections, why: str) -> list[str]:
        ours, theirs = settings(configs[name], sections), settings(configs[reference], sections)
        return [
            f"{folder.name}/{name}.py: {key}={ours[key]!r}, but {folder.name}/{reference}.py has {theirs[key]!r} ({why})"
            for key in ours
            if ours[key] != theirs[key]
        ]

    found = []
    for backbone in STUDY_BACKBONES:
        for loss in STUDY_LOSSES:
            name = f"{backbone}_{loss}"
            found += drifts(
                name, SEED_DATA.get(name, f"{STUDY_BACKBONES[0]}_{STUDY_LOSSES[0]}"), ["data"], "one data protocol for the study"
            )
            found += drifts(name, f"{backbone}_{STUDY_LOSSES[0]}", ROW_SECTIONS, f"the {backbone} row")
            found += drifts(name, f"{STUDY_BACKBONES[0]}_{loss}", ["loss"], f"the {loss} column")
    return found


def test_the_study_recipes_share_data_rows_and_columns():
    found = study_drifts(ROOT / "recipes")
    assert not found, "\n".join(found)


def test_a_drift_names_the_recipe_the_key_and_both_values(tmp_path):
    copy = tmp_path / "recipes"
    copy.mkdir()
    for path in (ROOT / "recipes").glob("*.py"):
        (copy / path.name).write_text(path.read_text())
    drifted = copy / "vggish_focal.py"
    drifted.write_text(drifted.read_text().replace("epochs=50", "epochs=40").replace("gamma=2.0", "gamma=1.0"))
    found = study_drifts(copy)
    assert found == [
        "recipes/vggish_focal.py: train.epochs=40, but recipes/vggish_ce.py has 50 (the vggish row)",
        "recipes/vggish_focal.py: loss.gamma=1.0, but recipes/lstm_focal.py has 2.0 (the focal column)",
    ]


# The openSMILE baselines are not study cells (their protocol is EmoDB's leave-one-speaker-out); they share their
# data protocol and training settings, and the eGeMAPS SVM and logistic regression form one grid row (backbone
# opensmile, columns svm and ce), so `ser-dist grid` can put them side by side.
OPENSMILE_RECIPES = ("opensmile_egemaps_svm", "opensmile_egemaps_logreg", "opensmile_egemaps_mlp", "opensmile_compare_svm")


def test_the_opensmile_baselines_share_data_and_training_and_the_egemaps_row_its_model():
    configs = {name: load_recipe(ROOT / "recipes" / f"{name}.py").config for name in OPENSMILE_RECIPES}
    reference = settings(configs["opensmile_egemaps_svm"], ["data", "train"])
    for name, config in configs.items():
        ours = settings(config, ["data", "train"])
        assert ours == reference, (name, [key for key in ours if ours[key] != reference[key]])
        assert (config.model.backbone, config.model.cache_features, config.model.freeze_backbone_epochs) == ("opensmile", True, -1)
    svm, logreg = (settings(configs[name], ROW_SECTIONS) for name in ("opensmile_egemaps_svm", "opensmile_egemaps_logreg"))
    assert svm == logreg, [key for key in svm if svm[key] != logreg[key]]
    assert (configs["opensmile_egemaps_svm"].loss.name, configs["opensmile_egemaps_logreg"].loss.name) == ("svm", "ce")
