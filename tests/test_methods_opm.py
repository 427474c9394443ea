"""OPM: the drop probabilities and the dropped, rescaled forward pass recomputed from the official
code's equations on a fixed batch, the warm-up, and the drop statistics over many steps."""

import math

import pytest
import torch
import torch.nn.functional as F

from latefusion.errors import ConfigError
from latefusion.methods import StepInfo, build_method
from latefusion.methods.opm import drop_probabilities

from test_methods_baselines import one_batch, prototype_bundle
from test_methods_fidelity import fitted_late_fusion


def scores_by_hand(model, inputs, labels):
    features = {m: model.encoders[m](inputs[m]) for m in ("a", "b")}
    weight, bias = model.head.linear.weight, model.head.linear.bias
    width = features["a"].shape[1]
    shares = {"a": features["a"] @ weight[:, :width].T + bias / 2, "b": features["b"] @ weight[:, width:].T + bias / 2}
    return features, {m: z.softmax(1)[torch.arange(len(labels)), labels].sum().item() for m, z in shares.items()}


def q_by_hand(score, other, q_base, lam):
    rho = score / other
    return min(max(q_base * (1 + lam * math.tanh(rho - 1)), 0.0), 1.0) if rho > 1 else 0.0


def test_opm_drop_probabilities_follow_the_official_rule():
    # float32 against float64: relative 1e-5.
    q = drop_probabilities(torch.tensor([60.0, 20.0]), q_base=0.5, lam=0.5).tolist()
    assert q[0] == pytest.approx(0.5 * (1 + 0.5 * math.tanh(2.0)), rel=1e-5) and q[1] == 0.0
    assert drop_probabilities(torch.tensor([60.0, 20.0]), q_base=0.9, lam=1.0).tolist() == [1.0, 0.0]  # clipped
    assert drop_probabilities(torch.tensor([5.0, 5.0]), q_base=0.5, lam=0.5).tolist() == [0.0, 0.0]


def test_opm_forward_drops_the_dominant_modality_and_rescales(tiny_config):
    bundle = prototype_bundle({"a": 4.0, "b": 0.5}, {"a": 16, "b": 16})
    inputs, labels = one_batch(bundle)
    model = fitted_late_fusion(tiny_config, bundle, inputs, labels)
    features, score = scores_by_hand(model, inputs, labels)
    q_a = q_by_hand(score["a"], score["b"], 0.5, 0.5)
    assert q_a > 0.5 and q_by_hand(score["b"], score["a"], 0.5, 0.5) == 0.0

    def step(epoch, *overrides):
        method = build_method(tiny_config("method.name=opm", *overrides), bundle.spec)
        return method.loss(model, inputs, labels, StepInfo(epoch))

    plain = F.cross_entropy(model.head(features), labels).item()
    out = step(3, "method.options.p_exe=1")  # the warm-up: plain late fusion
    assert out.loss.item() == pytest.approx(plain, rel=1e-6)
    assert out.logs["q_a"].item() == pytest.approx(q_a, rel=1e-5) and out.logs["q_b"].item() == 0.0
    assert step(6, "method.options.p_exe=0").loss.item() == pytest.approx(plain, rel=1e-6)  # never executes
    # q_a = 1 (clipped): every sample loses a; theta = (16 * 1 + 16 * 0) / 32, so b is scaled by 1 / (1 - 1/2).
    dropped = F.cross_entropy(model.head({"a": torch.zeros_like(features["a"]), "b": features["b"] / (1 - 0.5)}), labels).item()
    out = step(6, "method.options.p_exe=1", "method.options.q_base=1")
    assert out.loss.item() == pytest.approx(dropped, rel=1e-5) and out.logs["executed"].item() == 1.0
    # Beyond end_epoch: plain again.
    assert step(7, "method.options.p_exe=1", "method.options.q_base=1", "method.options.end_epoch=6").loss.item() == pytest.approx(plain, rel=1e-6)


def test_opm_drops_samples_at_rate_q_on_executed_steps_and_never_the_weaker_modality(tiny_config):
    """Over 400 steps: the fraction of steps that drop is p_exe, and on those, each sample of the
    dominant modality is dropped with probability q_a (its gradient then gets nothing from it)."""
    bundle = prototype_bundle({"a": 4.0, "b": 0.5}, {"a": 16, "b": 16})
    inputs, labels = one_batch(bundle, 64)
    model = fitted_late_fusion(tiny_config, bundle, inputs, labels)
    method = build_method(tiny_config("method.name=opm", "method.options.p_exe=0.7"), bundle.spec)
    _, score = scores_by_hand(model, inputs, labels)
    q_a = q_by_hand(score["a"], score["b"], 0.5, 0.5)
    executed, kept_a, kept_b = 0, [], []
    for _ in range(400):
        features = model.features(inputs)
        for f in features.values():
            f.retain_grad()
        model.features = lambda _inputs, features=features: features  # observe the features the step used
        out = method.loss(model, inputs, labels, StepInfo(6))
        del model.features
        out.loss.backward()
        if out.logs["executed"].item():
            executed += 1
            kept_a.append((features["a"].grad.abs().sum(1) > 0).float().mean().item())
            kept_b.append((features["b"].grad.abs().sum(1) > 0).float().mean().item())
    # Binomial(400, 0.7): std 9.2 steps; 4 std.
    assert abs(executed - 280) < 37, executed
    # Mean over ~280 steps x 64 samples of Bernoulli(1 - q_a): std below 0.004; 0.02 is 5 std.
    assert sum(kept_a) / len(kept_a) == pytest.approx(1 - q_a, abs=0.02)
    assert min(kept_b) == 1.0


def test_opm_window_is_checked_when_the_config_is_resolved(tiny_config):
    with pytest.raises(ConfigError, match="end_epoch 2 is before start_epoch 6"):
        tiny_config("method.name=opm", "method.options.end_epoch=2")
    with pytest.raises(ConfigError, match="q_base"):
        tiny_config("method.name=opm", "method.options.q_base=1.5")
