"""Every recipe's config loads and validates; the study's 20 recipes are its 20 cells with one set of settings.

The smoke run of each study recipe through its real entry point (its ``__main__`` block) is the
20-cell grid in tests/test_grid.py.
"""
from pathlib import Path

import pytest

from ser_dist.config import apply_overrides
from ser_dist.study import BACKBONE_PRESETS, LOSS_PRESETS, SMOKE_OVERRIDES, load_recipe, study_experiment

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "recipes").glob("*.py"))
STUDY_CELLS = [(backbone, loss) for backbone in BACKBONE_PRESETS for loss in LOSS_PRESETS]


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_every_recipe_config_loads_and_validates(path, tmp_path):
    recipe = load_recipe(path)
    assert recipe.config.name == path.stem
    exp = apply_overrides(recipe.config, {"data.root": str(tmp_path)}).validate()
    assert exp.train.output_dir.endswith(path.stem)
    assert '__name__ == "__main__"' in path.read_text()  # an entry point, never imported by the library


def test_the_study_has_its_20_recipes():
    assert len(STUDY_CELLS) == 20
    missing = [f"{b}_{l}.py" for b, l in STUDY_CELLS if not (ROOT / "recipes" / f"{b}_{l}.py").exists()]
    assert not missing


@pytest.mark.parametrize("backbone,loss", STUDY_CELLS, ids=[f"{b}_{l}" for b, l in STUDY_CELLS])
def test_study_recipe_is_its_cell_with_the_study_settings(backbone, loss):
    recipe = load_recipe(ROOT / "recipes" / f"{backbone}_{loss}.py")
    assert (recipe.backbone, recipe.loss) == (backbone, loss)
    # Same hyperparameters as every other cell of its row and column: they live in ser_dist/study.py.
    expected = study_experiment(backbone, loss)
    for section in ("model", "loss", "optim", "train"):
        assert getattr(recipe.config, section) == getattr(expected, section), section
    if (backbone, loss) == ("hubert_large", "ce"):
        # Also the SSL seed recipe, with the folder layout and a speaker split by default; a grid
        # run passes one data protocol to every cell (and refuses cells that differ).
        assert recipe.config.data.split == "speaker"
    else:
        assert recipe.config.data == expected.data


def test_study_protocol_is_speaker_independent_and_smoke_sizes_exist():
    for backbone, loss in STUDY_CELLS:
        exp = study_experiment(backbone, loss)
        assert exp.data.split == "leave_one_session_out" and exp.data.corpus == "iemocap"
        assert exp.train.metric == "ua"
    assert set(SMOKE_OVERRIDES) == set(BACKBONE_PRESETS)
