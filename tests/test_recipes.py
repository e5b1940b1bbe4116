"""Every recipe's config loads and validates; the study's 20 recipes are its 20 cells.

That the 20 share one set of settings per row and column is tests/test_study_recipes.py. The smoke run
of each study recipe through its real entry point (its ``__main__`` block) is the 20-cell grid in
tests/test_grid.py.
"""

from importlib import resources
from pathlib import Path

import pytest
import yaml
from conftest import STUDY_BACKBONES, STUDY_LOSSES

from ser_dist.config import apply_overrides
from ser_dist.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "recipes").glob("*.py"))
STUDY_CELLS = [(backbone, loss) for backbone in STUDY_BACKBONES for loss in STUDY_LOSSES]


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_every_recipe_config_loads_and_validates(path, tmp_path):
    recipe = load_recipe(path)
    assert recipe.config.name == path.stem
    exp = apply_overrides(recipe.config, {"data.root": str(tmp_path)}).validate()
    assert exp.train.output_dir.endswith(path.stem)
    assert '__name__ == "__main__"' in path.read_text()  # an entry point, never imported by the library


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_a_recipe_is_a_page_of_settings(path):
    """Every value is in the file: it imports the config classes and the training loop, no presets."""
    imports = [line for line in path.read_text().splitlines() if line.startswith(("import ", "from "))]
    assert imports and all(line.startswith(("from ser_dist.config import ", "from ser_dist.trainer import ")) for line in imports), imports


def test_the_study_has_its_20_recipes():
    assert len(STUDY_CELLS) == 20
    missing = [f"{b}_{loss}.py" for b, loss in STUDY_CELLS if not (ROOT / "recipes" / f"{b}_{loss}.py").exists()]
    assert not missing


@pytest.mark.parametrize("backbone,loss", STUDY_CELLS, ids=[f"{b}_{loss}" for b, loss in STUDY_CELLS])
def test_study_recipe_is_its_cell(backbone, loss):
    recipe = load_recipe(ROOT / "recipes" / f"{backbone}_{loss}.py")
    assert (recipe.backbone, recipe.loss) == (backbone, loss)
    if (backbone, loss) == ("hubert_large", "ce"):
        # Also the SSL seed recipe, with the folder layout and a speaker split by default; a grid
        # run passes one data protocol to every cell (and refuses cells that differ).
        assert recipe.config.data.split == "speaker"


def test_study_protocol_is_speaker_independent_and_smoke_sizes_exist():
    for backbone, loss in STUDY_CELLS:
        exp = load_recipe(ROOT / "recipes" / f"{backbone}_{loss}.py").config
        if (backbone, loss) != ("hubert_large", "ce"):  # the seed recipe's own protocol, above
            assert exp.data.split == "leave_one_session_out" and exp.data.corpus == "iemocap"
        assert exp.train.metric == "ua"
    # Read as an installed copy reads it: package data beside ser_dist/recipe.py.
    smoke = yaml.safe_load(resources.files("ser_dist").joinpath("smoke.yaml").read_text(encoding="utf-8"))
    assert set(smoke["backbones"]) == set(STUDY_BACKBONES)
