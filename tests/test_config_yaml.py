"""How config files and `--set` values are read (yamlfile.py, config.read_yaml): duplicated keys refused
with file and line, aliases bounded, only true/false are booleans, and `extends:` overlays."""

import time
import tracemalloc

import pytest

from latefusion.config import ConfigError, parse_overrides, read_yaml
from latefusion.resolve import resolve_config
from latefusion.methods import METHODS
from latefusion.yamlfile import MAX_ALIAS_NODES


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# Duplicated keys ----------------------------------------------------------------------------------

@pytest.mark.parametrize("text, key, line, first", [
    ("train:\n  epochs: 3\noptim:\n  lr: 0.1\ntrain:\n  seed: 1\n", "train", 5, 1),  # two sections
    ("optim:\n  lr: 0.1\n  momentum: 0.5\n  lr: 0.2\n", "lr", 4, 2),  # inside a section
    ("method:\n  options:\n    teachers: {a: x, a: y}\n", "a", 3, 3),  # a flow mapping, one line
])
def test_a_duplicated_key_is_refused_naming_key_file_and_line(tmp_path, text, key, line, first):
    path = write(tmp_path / "dup.yaml", text)
    with pytest.raises(ConfigError, match=rf"config file .*dup\.yaml, line {line}: duplicated key '{key}' \(first at line {first}\)"):
        resolve_config(path)


def test_a_duplicated_key_in_a_set_value_is_refused():
    with pytest.raises(ConfigError, match=r"override 'method\.options=\{w: 1, w: 2\}', line 1: duplicated key 'w'"):
        parse_overrides(["method.options={w: 1, w: 2}"])
    # Setting a key twice on the command line is not a duplicate: the last one wins.
    assert parse_overrides(["train.epochs=1", "train.epochs=2"]) == {"train": {"epochs": 2}}


def test_merge_keys_may_be_overridden(tmp_path):
    path = write(tmp_path / "merge.yaml", "model:\n  encoders:\n    a: &enc {name: mlp, options: {hidden: 8}}\n"
                                          "    b:\n      <<: *enc\n      name: mlp\n")
    assert resolve_config(path).model.encoders["b"].options == {"hidden": 8}


# Aliases ------------------------------------------------------------------------------------------

BOMB = "".join([
    "method:\n  name: naive\n  options:\n",
    '    l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n',
    *(f"    l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 12)),  # 9**12 strings expanded
])


def bounded(call):
    """call() -> its exception, asserting it took under a second and under 100 MB."""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        call()
    except ConfigError as error:
        caught = error
    else:
        caught = None
    seconds, (_, peak) = time.perf_counter() - start, tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert seconds < 1 and peak < 100e6, (seconds, peak)
    return caught


def test_an_alias_bomb_is_refused_quickly_and_in_little_memory(tmp_path):
    path = write(tmp_path / "bomb.yaml", BOMB)
    error = bounded(lambda: resolve_config(path))
    assert error is not None and f"its aliases expand it by more than {MAX_ALIAS_NODES} nodes" in str(error)
    assert "bomb.yaml" in str(error) and len(str(error)) < 300
    flow = "[" + ", ".join(f"&a{i} [{', '.join([f'*a{i - 1}' if i else '0'] * 9)}]" for i in range(12)) + "]"
    error = bounded(lambda: parse_overrides([f"method.options.x={flow}"]))
    assert error is not None and "override 'method.options.x=" in str(error) and "alias bomb" in str(error)


def test_a_recursive_alias_is_refused(tmp_path):
    path = write(tmp_path / "loop.yaml", "method:\n  options:\n    x: &x [1, *x]\n")
    with pytest.raises(ConfigError, match=r"loop\.yaml, line 3: an alias refers to a node that contains it"):
        read_yaml(path)


def test_ordinary_aliases_still_work(tmp_path):
    path = write(tmp_path / "alias.yaml", "model:\n  encoders:\n    a: &enc {name: mlp, options: {hidden: 8}}\n    b: *enc\n")
    config = resolve_config(path)
    assert config.model.encoders["a"] == config.model.encoders["b"]


def test_error_messages_show_bounded_reprs():
    # A value within the alias limit, but large: the error names it without printing it whole.
    huge = "[" + ", ".join(["[" + ", ".join(["1"] * 100) + "]"] * 100) + "]"
    for override in ["train.epochs=" + "x" * 100_000, "data.batch_size=" + huge, "train.seed={" + ", ".join(f"k{i}: {i}" for i in range(2000)) + "}"]:
        with pytest.raises(ConfigError) as error:
            resolve_config(None, [override])
        assert len(str(error.value)) < 1000, str(error.value)[:2000]


def test_values_that_match_a_yaml_type_but_cannot_be_built_are_config_errors():
    for value in ["2020-13-01", "!!float abc", "[" * 5000 + "]" * 5000, "1" * 5000]:
        with pytest.raises(ConfigError, match=r"override 'data\.path="):
            resolve_config(None, [f"data.path={value}"])


# Booleans -----------------------------------------------------------------------------------------

def test_on_off_yes_no_are_read_as_the_strings_written(tmp_path):
    path = write(tmp_path / "umt.yaml", "method:\n  name: umt\n  options:\n    teachers: {a: runs/a}\n    teacher_cache: off\n"
                                        "    other: {a: on, b: yes, c: no, d: Off, e: true, f: false, g: True, h: FALSE}\n")
    options = read_yaml(path)["method"]["options"]
    assert options["teacher_cache"] == "off"
    assert options["other"] == {"a": "on", "b": "yes", "c": "no", "d": "Off", "e": True, "f": False, "g": True, "h": False}
    assert parse_overrides(["method.options.teacher_cache=off"]) == {"method": {"options": {"teacher_cache": "off"}}}
    options.pop("other")
    assert METHODS.get("umt").Options.model_validate(options).teacher_cache == "off"


@pytest.mark.parametrize("value, expected", [("false", False), ("true", True), ("off", False), ("on", True),
                                             ("no", False), ("yes", True), ("False", False)])
def test_bool_fields_still_take_booleans_and_on_off(tmp_path, value, expected):
    path = write(tmp_path / "bools.yaml", f"train:\n  progress: {value}\ndata:\n  check: {value}\n")
    config = resolve_config(path)
    assert config.train.progress is expected and config.data.check is expected
    config = resolve_config(None, [f"train.progress={value}", f"data.check={value}"])
    assert config.train.progress is expected and config.data.check is expected
    assert METHODS.get("ogm_ge").Options.model_validate(parse_overrides([f"noise={value}"])).noise is expected


# extends: -----------------------------------------------------------------------------------------

def test_extends_deep_merges_the_file_over_its_bases(tmp_path):
    write(tmp_path / "common.yaml", "train: {epochs: 7, seed: 3}\noptim: {lr: 0.5}\n")
    write(tmp_path / "d/base.yaml", "extends: ../common.yaml\ndata: {name: synthetic-paired, options: {n: 1, m: 2}}\n"
                                    "train: {seed: 4}\n")
    write(tmp_path / "d/more.yaml", "optim: {lr: 0.25, momentum: 0.5}\n")
    path = write(tmp_path / "d/umt.yaml", "extends: [base.yaml, more.yaml]\ndata: {options: {m: 5}}\nmethod: {name: naive}\n")
    assert read_yaml(path) == {
        "train": {"epochs": 7, "seed": 4}, "optim": {"lr": 0.25, "momentum": 0.5},
        "data": {"name": "synthetic-paired", "options": {"n": 1, "m": 5}}, "method": {"name": "naive"},
    }
    assert resolve_config(path, ["train.epochs=2"]).train.epochs == 2


def test_extends_refuses_cycles_naming_the_chain(tmp_path):
    write(tmp_path / "a.yaml", "extends: b.yaml\n")
    write(tmp_path / "b.yaml", "extends: sub/c.yaml\n")
    write(tmp_path / "sub/c.yaml", "extends: ../a.yaml\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: extends \.\./a\.yaml, which makes a cycle: \S*a\.yaml -> \S*b\.yaml -> \S*c\.yaml -> \S*a\.yaml"):
        read_yaml(tmp_path / "a.yaml")
    write(tmp_path / "self.yaml", "extends: self.yaml\n")
    with pytest.raises(ConfigError, match=r"which makes a cycle: \S*self\.yaml -> \S*self\.yaml"):
        read_yaml(tmp_path / "self.yaml")


def test_extends_names_a_missing_or_bad_base(tmp_path):
    path = write(tmp_path / "x.yaml", "extends: nowhere.yaml\n")
    with pytest.raises(ConfigError, match=r"config file \S*x\.yaml: extends nowhere\.yaml, but \S*nowhere\.yaml does not exist"):
        resolve_config(path)
    for value in ["3", "[a.yaml, 2]", "", "{a: 1}"]:
        write(tmp_path / "x.yaml", f"extends: {value}\n")
        with pytest.raises(ConfigError, match=r"x\.yaml: extends: expected a file name or a list of file names"):
            read_yaml(tmp_path / "x.yaml")
    write(tmp_path / "dup.yaml", "train: {}\ntrain: {}\n")
    write(tmp_path / "x.yaml", "extends: dup.yaml\n")
    with pytest.raises(ConfigError, match=r"dup\.yaml, line 2: duplicated key 'train'"):
        read_yaml(tmp_path / "x.yaml")


def test_a_diamond_is_not_a_cycle(tmp_path):
    write(tmp_path / "root.yaml", "train: {epochs: 1}\n")
    write(tmp_path / "left.yaml", "extends: root.yaml\noptim: {lr: 0.1}\n")
    write(tmp_path / "right.yaml", "extends: root.yaml\noptim: {momentum: 0.5}\n")
    path = write(tmp_path / "top.yaml", "extends: [left.yaml, right.yaml]\n")
    assert read_yaml(path) == {"train": {"epochs": 1}, "optim": {"lr": 0.1, "momentum": 0.5}}
