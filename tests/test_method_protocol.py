"""The method protocol (methods/base.py) and the fused-model protocol (models/protocol.py), checked
over every registered method: each declares its group, builds what it owns in its constructor, and
trains a model that implements the fused-model protocol."""

import pytest
import torch

from latefusion.data import build_dataset
from latefusion.errors import ConfigError
from latefusion.methods import METHODS, Method, TrainingContext, build_method
from latefusion.methods.base import GROUPS
from latefusion.methods.naive import Naive
from latefusion.models import FusedModel, FusionHead, LateFusionModel
from latefusion.pipeline import baseline_methods
from latefusion.resolve import resolve_config
from latefusion.runs import RunDir
from latefusion.train import train


@pytest.mark.parametrize("name", METHODS.names())
def test_every_registered_method_declares_its_own_group(name):
    cls = METHODS.get(name)
    assert "group" in cls.__dict__ and cls.group in GROUPS, (name, cls.__dict__.get("group"))


def test_a_method_class_without_a_group_is_refused_when_it_is_defined():
    with pytest.raises(TypeError, match=r"method class .*NoGroup \(name 'no-group'\) declares no group; declare `group = \.\.\.`"):
        class NoGroup(Method):
            name = "no-group"

    # Inheriting the group of a registered method is not declaring one: it would join that group's runs unasked.
    with pytest.raises(TypeError, match=r"Inherits \(name 'inherits'\) declares no group"):
        class Inherits(Naive):
            name = "inherits"

    with pytest.raises(TypeError, match=r"declares group = 'baselines'; .* one of 'unimodal', 'paper', 'baseline', 'other'"):
        class Misspelt(Method):
            name = "misspelt"
            group = "baselines"

    class Helper(Method):  # no name: a base for methods, not a method, so no group needed
        pass

    class Named(Helper):
        name = "named"
        group = "other"

    assert Named.group == "other" and "group" not in Helper.__dict__


def test_only_methods_declaring_baseline_join_methods_all():
    assert baseline_methods() == [n for n in METHODS.names() if METHODS.get(n).__dict__["group"] == "baseline"]


# ---------------------------------------------------------------- every method's model and owned modules

TINY = ["data.name=synthetic-unimodal", "data.options.train_size=300", "data.options.val_size=200", "data.options.test_size=200",
        "train.epochs=2", "train.progress=false", "data.batch_size=128"]


def tiny(*overrides: str):
    return resolve_config(None, [*TINY, *overrides])


def method_options(name: str, runs: dict[str, str]) -> list[str]:
    """The options a method cannot do without here: its uni-modal runs, or the modality it trains on."""
    option = METHODS.get(name).unimodal_runs_option
    given = [f"method.options.{option}.{m}={path}" for m, path in runs.items()] if option else []
    return given + (["method.options.modality=a"] if name == "unimodal" else [])


@pytest.fixture(scope="module")
def unimodal_runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("unimodal")
    runs = {m: str(folder / m) for m in ("a", "b")}
    for m, path in runs.items():
        train(tiny("method.name=unimodal", f"method.options.modality={m}"), path)
    return runs


def prepared(name: str, runs: dict[str, str], folder):
    """(method, model, what they were before `prepare`, a test batch) for method `name` on the tiny data."""
    config = tiny(f"method.name={name}", *method_options(name, runs))
    bundle = build_dataset(config.data)
    method = build_method(config, bundle.spec)
    model = method.build_model()
    before = {"method": owned(method), "model": owned(model)}
    method.prepare(model, TrainingContext(config, bundle, RunDir(folder), torch.device("cpu")))
    return method, model, before, bundle.splits["test"].__getitems__(list(range(16)))


def owned(module: torch.nn.Module) -> tuple[dict[str, tuple[int, ...]], list[int]]:
    """What an optimiser and a checkpoint see of a module: its state's names and shapes (an extra state's
    type: its contents may depend on the data, as Remix's per-sample assignment), its parameters."""
    return ({k: tuple(v.shape) if torch.is_tensor(v) else type(v).__name__ for k, v in module.state_dict().items()},
            [id(p) for p in module.parameters()])


@pytest.mark.parametrize("name", METHODS.names())
def test_prepare_builds_no_module_the_optimiser_or_the_checkpoint_would_miss(tmp_path, unimodal_runs, name):
    """The loop may build the optimiser before or after `prepare`, and loads last.pt into the method
    it constructed: whatever a method trains or saves exists once its constructor has run."""
    method, model, before, _ = prepared(name, unimodal_runs, tmp_path / "run")
    assert owned(method) == before["method"], name
    assert owned(model) == before["model"], name


@pytest.mark.parametrize("name", METHODS.names())
def test_every_method_trains_a_model_of_the_fused_model_protocol(tmp_path, unimodal_runs, name):
    method, model, _, (inputs, _) = prepared(name, unimodal_runs, tmp_path / "run")
    model.eval()
    assert isinstance(model, FusedModel)
    if type(method).build_model is Method.build_model:  # the default model is late fusion
        assert isinstance(model, LateFusionModel) and isinstance(model.head, FusionHead)
    with torch.no_grad():
        features = model.features(inputs)
        assert list(features) == list(model.modalities) == method.modalities()
        for m, f in features.items():
            assert f.shape == (16, model.encoders[m].out_dim)
            torch.testing.assert_close(f, model.encoders[m](inputs[m]))
        fused, own = model.scores(inputs)
        classes = method.spec.num_classes
        assert fused.shape == (16, classes) and list(own) == model.modalities and all(s.shape == (16, classes) for s in own.values())
        torch.testing.assert_close(model(inputs), fused)
        torch.testing.assert_close(method.predict(model, inputs), fused)
        if isinstance(getattr(model, "head", None), FusionHead):  # late fusion: the head gives both
            torch.testing.assert_close(model.head(features), fused)
            shares = model.head.modality_logits(features)
            for m in model.modalities:
                torch.testing.assert_close(shares[m], own[m])


def test_umt_builds_its_projectors_before_the_teachers_are_loaded_and_refuses_teachers_of_another_size(tmp_path, unimodal_runs):
    config = tiny("method.name=umt", *method_options("umt", unimodal_runs), "method.options.teacher_dim=7")
    bundle = build_dataset(config.data)
    method = build_method(config, bundle.spec)
    assert {m: p.out_features for m, p in method.projectors.items()} == {"a": 7, "b": 7}
    size = config.model.feature_dim  # the teachers'
    with pytest.raises(ConfigError, match=rf"teachers' features have sizes \{{'a': {size}, 'b': {size}\}}, but this run expects 7 .*"
                                          rf"set method.options.teacher_dim={size}"):
        method.prepare(method.build_model(), TrainingContext(config, bundle, RunDir(tmp_path / "run"), torch.device("cpu")))
    with pytest.raises(ConfigError, match=rf"distill=plain needs teacher features of the student's size {size}"):
        build_method(tiny("method.name=umt", *method_options("umt", unimodal_runs), "method.options.teacher_dim=7",
                          "method.options.distill=plain"), bundle.spec)
