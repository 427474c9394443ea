"""OGM of the TPAMI 2024 extension (`ogm_tpami`): its modulated gradients recomputed from the official code's
equations on a fixed batch, with the official warm-up (epochs 0-5 plain) and defaults (alpha 0.8,
epochs 6..60, noise on)."""

import pytest
import torch
import torch.nn.functional as F

from latefusion.errors import ConfigError
from latefusion.methods import StepInfo, build_method

from test_methods_baselines import one_batch, prototype_bundle
from test_methods_fidelity import FLOAT32, fitted_late_fusion, shares_and_k


def test_ogm_modulates_after_the_official_warm_up_with_the_official_alpha(tiny_config):
    bundle = prototype_bundle({"a": 4.0, "b": 0.5}, {"a": 16, "b": 16})
    inputs, labels = one_batch(bundle)
    model = fitted_late_fusion(tiny_config, bundle, inputs, labels)
    k = shares_and_k(model, inputs, labels, alpha=0.8)
    assert k["a"] < 0.5 and k["b"] == 1.0  # a dominates
    names = [n for n, _ in model.named_parameters()]
    plain = dict(zip(names, torch.autograd.grad(F.cross_entropy(model(inputs), labels), list(model.parameters()))))

    def gradients(epoch, *overrides):
        method = build_method(tiny_config("method.name=ogm_tpami", *overrides), bundle.spec)
        model.zero_grad(set_to_none=True)
        method.backward(model, method.loss(model, inputs, labels, StepInfo(epoch)))
        return {n: p.grad.clone() for n, p in model.named_parameters()}

    for epoch in (0, 5, 61):  # the warm-up, and past the window's end: plain late fusion, no noise
        got = gradients(epoch)
        for name, g in plain.items():
            assert torch.allclose(got[name], g, **FLOAT32), (epoch, name)
    for epoch in (6, 60):
        got = gradients(epoch, "method.options.noise=false")
        for name, g in plain.items():
            m = name.split(".")[1] if name.startswith("encoders.") else None
            factor = k[m] if m and name.endswith("weight") else 1.0
            assert torch.allclose(got[name], factor * g, **FLOAT32), (epoch, name)
    # The official script runs with the noise on (its --modulation default is OGM_GE).
    big = "encoders.a.net.1.weight"
    residual = gradients(6)[big] - k["a"] * plain[big]
    assert residual.std().item() == pytest.approx(plain[big].std().item(), rel=0.15)


def test_ogm_window_is_checked_when_the_config_is_resolved(tiny_config):
    with pytest.raises(ConfigError, match="end_epoch 3 is before start_epoch 6"):
        tiny_config("method.name=ogm_tpami", "method.options.end_epoch=3")
    config = tiny_config("method.name=ogm_tpami", "method.options.start_epoch=0", "method.options.end_epoch=3")
    assert config.method.options["end_epoch"] == 3
