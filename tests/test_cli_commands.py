"""The small commands: --version, config --print, list / methods / encoders, and --quick refused where
a data set has no quick settings."""

import pytest
import yaml

from latefusion import cli
from latefusion.errors import ConfigError
from latefusion.resolve import resolve_config
from latefusion.version import __version__


def test_version(capsys):
    with pytest.raises(SystemExit) as exit:
        cli.main(["--version"])
    assert exit.value.code == 0 and capsys.readouterr().out.strip() == f"latefusion {__version__}"


def test_config_print_shows_the_resolved_config_and_runs_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "run.yaml"
    config.write_text("method:\n  name: ogm_ge\nmodel:\n  feature_dim: 32\n")
    assert cli.main(["config", "--print", "--config", str(config), "--data", "avdigits", "--quick", "--set", "optim.lr=0.01"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["data"]["name"] == "avdigits" and printed["method"]["name"] == "ogm_ge"
    assert printed["optim"]["lr"] == 0.01 and printed["model"]["feature_dim"] == 32
    assert printed["train"]["epochs"] == 10  # avdigits' quick settings
    assert printed["data"]["batch_size"] == 64  # avdigits' registered default
    assert list(tmp_path.iterdir()) == [config]


def test_list_names_methods_with_group_and_description_encoders_and_data_sets(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert "paper" in lines["umt"] and "Uni-Modal Teacher" in lines["umt"]
    assert "baseline" in lines["ogm_ge"] and "unimodal" in lines["unimodal"]
    assert "Linear-ReLU" in lines["mlp"] and "resnet18" in lines
    assert "yes" in lines["avdigits"] and "folder" in lines
    assert cli.main(["methods"]) == 0 and "umt" in capsys.readouterr().out
    assert cli.main(["encoders"]) == 0 and "audio-cnn" in capsys.readouterr().out


def test_quick_is_refused_by_name_on_a_data_set_without_quick_settings(tmp_path, capsys):
    with pytest.raises(ConfigError, match=r"--quick: data set 'folder' .*no quick settings.*train.epochs"):
        resolve_config(None, ["data.name=folder", f"data.path={tmp_path}"], quick=True)
    with pytest.raises(ConfigError, match="data set 'vggsound'"):
        resolve_config(None, ["data.name=vggsound"], quick=True)
    assert cli.main(["config", "--data", str(tmp_path), "--quick"]) == 2
    assert f"'folder' ({tmp_path})" in capsys.readouterr().err


def test_quick_means_the_registered_quick_settings():
    assert resolve_config(None, ["data.name=avdigits"], quick=True).train.epochs == 10
    assert resolve_config(None, ["data.name=avdigits"]).train.epochs == 30
    # The synthetic presets registered empty quick settings: small already, --quick accepted and changes nothing.
    assert resolve_config(None, ["data.name=synthetic-paired"], quick=True) == resolve_config(None, ["data.name=synthetic-paired"])


def test_prepare_help_lists_every_registered_recipe(capsys):
    from latefusion.cli import main
    from latefusion.data.prepared import RECIPES

    with pytest.raises(SystemExit):
        main(["prepare", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert {"crema-d", "kinetics-sounds", "ave", "vggsound"} <= set(RECIPES.names())
    assert all(name in text.replace("- ", "-") for name in RECIPES.names()), text
