"""The shipped configs: per data set (and variant) one base.yaml with data/model/optim/train, and per
method a small overlay (`extends: base.yaml` + `method`); every recipe resolves to a valid RunConfig;
every configs/ path the docs and configs name exists."""

import re
from pathlib import Path

import pytest

from latefusion import yamlfile
from latefusion.config import RunConfig, read_yaml
from latefusion.resolve import resolve_config
from latefusion.methods import METHODS

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
FOLDERS = ["ave", "crema-d", "kinetics-sounds", "kinetics400", "kinetics400/rgb_flow", "modelnet40", "ucf101", "vggsound"]
METHOD_FILES = ["naive", "ume", "umt", "unimodal"]
# Baseline overlays, only where the baseline's source gives a value for that data set.
BASELINE_FILES = {"vggsound": ["ogm_ge"], "crema-d": ["ogm_ge"]}
RECIPES = [CONFIGS / folder / f"{method}.yaml" for folder in FOLDERS for method in [*METHOD_FILES, *BASELINE_FILES.get(folder, [])]]


def written(path: Path) -> dict:
    """A file's own keys, without what it extends."""
    return yamlfile.load(path.read_text(), str(path))


def test_each_folder_holds_a_base_and_one_overlay_per_method():
    found = sorted(p.relative_to(CONFIGS).as_posix() for p in CONFIGS.rglob("*.yaml"))
    assert found == sorted(f"{folder}/{name}.yaml" for folder in FOLDERS for name in ["base", *METHOD_FILES, *BASELINE_FILES.get(folder, [])])
    for folder in FOLDERS:
        base = written(CONFIGS / folder / "base.yaml")
        assert list(base) == ["data", "model", "optim", "train"], folder
        for method in [*METHOD_FILES, *BASELINE_FILES.get(folder, [])]:
            overlay = written(CONFIGS / folder / f"{method}.yaml")
            assert overlay == {"extends": "base.yaml", "method": overlay["method"]}, f"{folder}/{method}"
            assert overlay["method"]["name"] == method


@pytest.mark.parametrize("path", RECIPES, ids=[p.relative_to(CONFIGS).as_posix() for p in RECIPES])
def test_each_recipe_resolves_to_a_valid_run_config(path):
    config = resolve_config(path)
    assert isinstance(config, RunConfig)
    assert config.method.name == path.stem and config.data.name == path.relative_to(CONFIGS).parts[0]
    METHODS.get(config.method.name).Options.model_validate(config.method.options)
    # The recipe is its base with the method section added: nothing of the base is lost or changed.
    base = read_yaml(path.parent / "base.yaml")
    assert read_yaml(path) == {**base, "method": written(path)["method"]}


def test_ogm_ge_overlays_set_the_alpha_the_ogm_ge_readme_gives_for_their_data_set():
    # GeWu-Lab/OGM-GE_CVPR2022 README, Tips: "alpha=0.1 for VGGSound and alpha=0.8 for CREMA-D".
    alphas = {folder: resolve_config(CONFIGS / folder / "ogm_ge.yaml").method.options["alpha"]
              for folder, files in BASELINE_FILES.items() if "ogm_ge" in files}
    assert alphas == {"vggsound": 0.1, "crema-d": 0.8}


def test_every_configs_path_the_docs_name_exists():
    texts = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted(CONFIGS.rglob("*.yaml"))]
    named = {m for path in texts for m in re.findall(r"configs/[\w./<>-]*\w", path.read_text())}
    checked = 0
    for name in sorted(named):
        # `<method>` stands for each method file; other placeholders (`<data set>`) are not checked.
        candidates = [name.replace("<method>", m) for m in METHOD_FILES] if "<method>" in name else [name]
        for candidate in candidates:
            if "<" not in candidate:
                assert (ROOT / candidate).exists(), f"{name} is named in the docs or configs but does not exist"
                checked += 1
    assert checked > 20
