"""Plugins: a user's module registering an encoder (or method, or data set) is imported by `--import`
on every command, or through the `latefusion.plugins` entry-point group, and then works from the CLI."""

import os
import subprocess
import sys
import textwrap

import pytest

from latefusion import cli
from latefusion.data import DATASETS
from latefusion.models import ENCODERS

PLUGIN = textwrap.dedent('''
    """A plugin for the tests: one encoder."""
    import math

    from torch import nn

    from latefusion.models import ENCODERS


    @ENCODERS.register("plugin-linear")
    class PluginLinear(nn.Module):
        """One linear map and a ReLU, from a plugin."""

        def __init__(self, input_shape, out_dim, hidden=0):
            super().__init__()
            self.out_dim = out_dim
            self.net = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), out_dim), nn.ReLU())

        def forward(self, x):
            return self.net(x)
''')
SETTINGS = ["data.name=synthetic-unimodal", "data.options.train_size=64", "data.options.val_size=32", "data.options.test_size=32",
            "data.batch_size=16", "train.epochs=1", "train.device=cpu", "train.progress=false",
            "model.encoders.a.name=plugin-linear", "model.encoders.b.name=plugin-linear"]


def latefusion(cwd, *args) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    return subprocess.run([sys.executable, "-m", "latefusion.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def settings():
    return [arg for s in SETTINGS for arg in ("--set", s)]


@pytest.fixture
def plugin_folder(tmp_path):
    (tmp_path / "lf_test_plugin.py").write_text(PLUGIN)
    return tmp_path


def test_an_imported_plugin_encoder_trains_probes_and_reports(plugin_folder):
    """The module lies in the current folder, which `--import` searches."""
    done = latefusion(plugin_folder, "train", "--import", "lf_test_plugin", *settings(), "--out", "run")
    assert done.returncode == 0, done.stderr
    assert "plugin-linear" in (plugin_folder / "run" / "config.yaml").read_text()

    refused = latefusion(plugin_folder, "probe", "run", "--steps", "5")  # without the plugin its encoder is unknown
    assert refused.returncode == 2 and "unknown encoder 'plugin-linear'" in refused.stderr, refused.stderr
    probed = latefusion(plugin_folder, "probe", "run", "--steps", "5", "--import", "lf_test_plugin")
    assert probed.returncode == 0, probed.stderr
    assert "linear probe of run" in probed.stdout

    demo = latefusion(plugin_folder, "--import", "lf_test_plugin", "demo", *settings(), "--out", "demo")  # --import before the command
    assert demo.returncode == 0, demo.stderr
    report = latefusion(plugin_folder, "report", "demo", "--import", "lf_test_plugin")
    assert report.returncode == 0, report.stderr
    assert (plugin_folder / "demo" / "report.html").is_file()


def test_a_plugin_given_as_a_file_path_is_imported(plugin_folder, monkeypatch, capsys):
    monkeypatch.setattr(ENCODERS, "_entries", dict(ENCODERS._entries))
    monkeypatch.setattr(ENCODERS, "_defaults", dict(ENCODERS._defaults))
    monkeypatch.delitem(sys.modules, "latefusion_plugin_lf_test_plugin", raising=False)
    assert cli.main(["encoders", "--import", str(plugin_folder / "lf_test_plugin.py")]) == 0
    assert "plugin-linear" in capsys.readouterr().out and "One linear map" in ENCODERS.get("plugin-linear").__doc__
    sys.modules.pop("latefusion_plugin_lf_test_plugin", None)


def test_a_plugin_that_fails_to_import_is_named(tmp_path, monkeypatch, capsys):
    (tmp_path / "lf_broken_plugin.py").write_text("raise RuntimeError('the plugin is broken')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert cli.main(["list", "--import", "lf_broken_plugin"]) == 2
    error = capsys.readouterr().err
    assert "--import lf_broken_plugin" in error and "RuntimeError: the plugin is broken" in error
    assert cli.main(["list", "--import", "lf_no_such_plugin"]) == 2
    assert "no module named 'lf_no_such_plugin'" in capsys.readouterr().err


def write_distribution(folder, module: str, source: str) -> None:
    """An installed package, as importlib.metadata finds it on sys.path, with one latefusion.plugins entry point."""
    (folder / f"{module}.py").write_text(source)
    info = folder / f"{module}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[latefusion.plugins]\n{module}-entry = {module}\n")


def test_entry_points_of_the_plugin_group_are_loaded_at_start(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(DATASETS, "_entries", dict(DATASETS._entries))
    monkeypatch.setattr(DATASETS, "_defaults", dict(DATASETS._defaults))
    write_distribution(tmp_path, "lf_ep_plugin", textwrap.dedent('''
        """Plugin data set: registered by an entry point."""
        from latefusion.data import DATASETS

        @DATASETS.register("entry-point-data")
        def build(config):
            raise NotImplementedError
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert cli.main(["list"]) == 0
        assert "entry-point-data" in capsys.readouterr().out
    finally:
        sys.modules.pop("lf_ep_plugin", None)


def test_a_broken_entry_point_names_its_module(tmp_path, monkeypatch, capsys):
    write_distribution(tmp_path, "lf_bad_ep_plugin", "import lf_missing_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert cli.main(["list"]) == 2
    error = capsys.readouterr().err
    assert "'lf_bad_ep_plugin-entry'" in error and "'lf_bad_ep_plugin'" in error and "lf_missing_dependency" in error
