"""Configuration errors: each names the key, what was found and what was expected; and no input,
however odd, makes config parsing fail with anything but ConfigError."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from latefusion.config import ConfigError, RunConfig, parse_overrides, read_yaml
from latefusion.resolve import resolve_config


@pytest.mark.parametrize("overrides, message", [
    (["train.epocs=3"], r"train\.epocs: unknown key\. Did you mean 'epochs'\?"),
    (["model.encoders.a.nmae=mlp"], r"model\.encoders\.a\.nmae: unknown key\. Did you mean 'name'\?"),
    (["trian.epochs=3"], r"trian: unknown key\. Did you mean 'train'\?"),
    (["train.epochs=three"], r"train\.epochs: Input should be a valid integer.* \(found 'three'\)"),
    (["train.progress=[1, 2]"], r"train\.progress: Input should be a valid boolean \(found \[1, 2\]\)"),
    (["optim.lr=-1"], r"optim\.lr: Input should be greater than 0 \(found -1\)"),
    (["optim.lr=.inf"], r"optim\.lr: Input should be a finite number \(found inf\)"),
    (["optim.momentum=1"], r"optim\.momentum: Input should be less than 1 \(found 1\)"),
    (["train.seed=-1"], r"train\.seed: Input should be greater than or equal to 0 \(found -1\)"),
    (["train.checkpoint_every_steps=0"], r"train\.checkpoint_every_steps: Input should be greater than 0 \(found 0\)"),
    (["model.fusion=product"], r"model\.fusion: Input should be 'concat' or 'sum' \(found 'product'\)"),
    (["model.encoders.a.options.width=8"], r"model\.encoders\.a\.name: required key is missing"),
    (["data=5"], r"data: Input should be a valid dictionary .*\(found 5\)"),
    (["data.name=[1]"], r"data\.name: Input should be a valid string \(found \[1\]\)"),
    (["train.epochs"], r"override 'train\.epochs': expected KEY=VALUE"),
    (["train.epochs=[1"], r"override 'train\.epochs=\[1': the value is not a valid YAML scalar or list"),
    (["train=1", "train.epochs=2"], r"'train' is set both as a value and as a section"),
])
def test_each_config_error_names_key_found_and_expected(overrides, message):
    with pytest.raises(ConfigError, match=message):
        resolve_config(None, overrides)


def test_config_file_errors_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match=r"config file .*absent\.yaml does not exist"):
        read_yaml(tmp_path / "absent.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match=r"list\.yaml: expected a mapping at the top level, found list"):
        read_yaml(tmp_path / "list.yaml")
    (tmp_path / "broken.yaml").write_text("train: {epochs: 3\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml is not valid YAML"):
        read_yaml(tmp_path / "broken.yaml")
    (tmp_path / "binary.yaml").write_bytes(b"\xff\xfe\x00train")
    with pytest.raises(ConfigError, match=r"binary\.yaml is not UTF-8 text"):
        read_yaml(tmp_path / "binary.yaml")
    (tmp_path / "typo.yaml").write_text("optim:\n  lr: 0.1\n  weigth_decay: 0\n")
    with pytest.raises(ConfigError, match=r"invalid configuration in .*typo\.yaml:\n  optim\.weigth_decay: unknown key\. Did you mean 'weight_decay'\?"):
        resolve_config(tmp_path / "typo.yaml")


# Keys that are real, nearly real, or random; values that are any text YAML might make something of.
KNOWN = ["data", "model", "optim", "train", "method", "name", "options", "epochs", "lr", "seed", "encoders", "a", "fusion", "batch_size"]
KEYS = st.lists(st.one_of(st.sampled_from(KNOWN), st.text(max_size=6)), min_size=1, max_size=4).map(".".join)
VALUES = st.one_of(st.text(max_size=20), st.integers().map(str), st.floats().map(str),
                   st.sampled_from(["[", "{a: 1}", "[1, [2]]", "&a [*a]", "!!python/object:os.system x", ".nan", "-.inf", "~", "true", "2020-01-01", "1e400"]))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.tuples(KEYS, VALUES).map("=".join), st.text(max_size=20)), max_size=5))
def test_config_parsing_fails_only_with_config_error(overrides):
    try:
        parse_overrides(overrides)
        config = resolve_config(None, overrides)
    except ConfigError:
        return
    assert isinstance(config, RunConfig)


@settings(max_examples=100, deadline=None)
@given(st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode)))
def test_config_files_fail_only_with_config_error(tmp_path_factory, content):
    path = tmp_path_factory.mktemp("yaml") / "config.yaml"
    path.write_bytes(content)
    try:
        resolve_config(path)
    except ConfigError:
        pass
