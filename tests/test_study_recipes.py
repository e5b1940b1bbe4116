"""The study stays comparable while each of its 20 recipes spells out its own settings.

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
