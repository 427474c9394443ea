"""ReconBoost (ICML 2024) against its equations (methods/reconboost.py, from the official code):
the stage schedule (one modality boosted, then the whole ensemble rectified, modalities in turn);
the boosting loss (1/C) mean (w1 - w2 q[y]) (-log p_k[y]) with q the other learners' softmax, plus
alpha times the consolidation MSE against the previous stage's learner, written out here on a
fixed batch, with the gradients reaching only the boosted learner and the shared head; the
rectification cross-entropy of beta * sum_m f_m; options checked when the config is resolved; a run
crashed inside an epoch resumed exactly."""

from __future__ import annotations

import pytest
import torch

from latefusion.errors import ConfigError
from latefusion.methods import StepInfo
from latefusion.methods.reconboost import ReconBoost
from latefusion.resolve import resolve_config
from latefusion.runs import RunDir
from latefusion.train import train

from method_resume import check_resumes_exactly, crashing
from test_methods_equations import built, close, first, make_bundle

crashing(ReconBoost)


def learner(model, m, inputs):
    """f_m = W2 relu(W1 encoder_m(x_m) + b1) + b2, the shared head written out."""
    h = model.encoders[m](inputs[m]) @ model.head[0].weight.T + model.head[0].bias
    return h.relu() @ model.head[2].weight.T + model.head[2].bias


def test_reconboost_stages_boost_each_modality_in_turn_then_rectify():
    bundle = make_bundle({"a": 2.0, "b": 1.0, "c": 1.0}, {"a": 6, "b": 5, "c": 4})
    method, _ = built("reconboost", bundle, "method.options.boost_epochs=2", "method.options.rectify_epochs=1")
    phases = [method.phase(e) for e in range(10)]
    assert phases == [(0, "a"), (0, "a"), (0, None), (1, "b"), (1, "b"), (1, None), (2, "c"), (2, "c"), (2, None), (3, "a")]
    method, _ = built("reconboost", bundle, "method.options.rectify_epochs=0")
    assert [method.phase(e)[1] for e in range(4)] == ["a", "b", "c", "a"]


@pytest.mark.parametrize("stage", [0, 1])
def test_reconboost_boosting_step_follows_the_reconcilement_and_consolidation_terms(stage):
    bundle = make_bundle({"a": 2.0, "b": 1.0}, {"a": 6, "b": 5})
    method, model = built("reconboost", bundle, "model.feature_dim=8", "method.options.weight1=4", "method.options.weight2=1.5",
                          "method.options.consolidation=0.7", "method.options.boost_rate=0.8", "method.options.head_hidden=16")
    inputs, labels = first(bundle, 32)
    epoch = 2 * stage  # stage 0 boosts a, stage 1 boosts b (one boosting and one rectification epoch each)
    k, other = ("a", "b") if stage == 0 else ("b", "a")
    output = method.loss(model, inputs, labels, StepInfo(epoch))
    model.zero_grad(set_to_none=True)
    method.backward(model, output)
    rows = torch.arange(32)
    own = learner(model, k, inputs)
    with torch.no_grad():
        q = (0.8 * learner(model, other, inputs)).softmax(1)[rows, labels]
        previous = learner(model, other, inputs).softmax(1)
    expected = ((4 - 1.5 * q) * -own.log_softmax(1)[rows, labels]).mean() / 4  # 4 classes: the mean over classes
    if stage > 0:  # consolidation toward the learner of the previous stage (the other modality)
        expected = expected + 0.7 * ((own.softmax(1) - previous) ** 2).mean()
    assert 0.05 < q.min() and q.max() < 0.95  # the other learner's probabilities weigh the samples unevenly
    close(output.loss.detach(), expected.detach())
    params = dict(model.named_parameters())
    got = {n: p.grad for n, p in params.items() if p.grad is not None}
    trained = {n: params[n] for n in got}
    assert set(got) == {n for n in params if n.startswith(f"encoders.{k}.") or n.startswith("head.")}  # nothing else moves
    wanted = torch.autograd.grad(expected, list(trained.values()))
    for (name, g), w in zip(got.items(), wanted):
        close(g, w, atol=1e-6)


def test_reconboost_rectification_trains_every_learner_and_the_boost_rate_on_the_ensemble():
    bundle = make_bundle({"a": 2.0, "b": 1.0}, {"a": 6, "b": 5})
    method, model = built("reconboost", bundle, "model.feature_dim=8", "method.options.boost_rate=0.8", "method.options.head_hidden=16")
    inputs, labels = first(bundle, 32)
    output = method.loss(model, inputs, labels, StepInfo(1))
    ensemble = 0.8 * (learner(model, "a", inputs) + learner(model, "b", inputs))
    expected = -ensemble.log_softmax(1)[torch.arange(32), labels].mean()
    close(output.loss.detach(), expected.detach())
    model.zero_grad(set_to_none=True)
    method.backward(model, output)
    assert all(p.grad is not None for p in model.parameters()) and model.boost_rate.grad.abs() > 0
    fused, shares = model.scores(inputs)
    close(fused, ensemble)
    close(shares["a"] + shares["b"], fused)


def test_reconboost_options_are_checked_when_the_config_is_resolved():
    for bad, field in (("boost_epochs=0", "boost_epochs"), ("rectify_epochs=-1", "rectify_epochs"), ("weight1=0", "weight1"),
                       ("consolidation=-0.5", "consolidation")):
        with pytest.raises(ConfigError, match=field):
            resolve_config(None, ["method.name=reconboost", f"method.options.{bad}"])


def test_reconboost_resumes_a_run_crashed_inside_an_epoch(tmp_path, tiny_config, monkeypatch):
    # 6 steps an epoch, a step checkpoint every 2; the 15th call is epoch 2 (stage 1, boosting b), step 3.
    config = tiny_config("method.name=reconboost-crashing", "data.batch_size=50", "train.checkpoint_every_steps=2", "train.epochs=4")
    check_resumes_exactly(config, tmp_path, monkeypatch, at_call=15)


def test_reconboost_trains_in_the_loop(tmp_path, tiny_config):
    result = train(tiny_config("method.name=reconboost", "train.epochs=4"), tmp_path / "run")
    assert 0 <= result["test_acc"] <= 1 and set(result["test_acc_by_modality"]) == {"a", "b"}
    history = RunDir(tmp_path / "run").metrics_file.read_text()
    assert '"train_boost"' in history and '"train_ce_ensemble"' in history and '"train_consolidation"' in history
