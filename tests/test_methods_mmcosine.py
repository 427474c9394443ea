"""MMCosine: the loss and predictions against the paper's cosine logits written out independently on a
fixed batch, and the method through the one loop (checkpoint, resume, reload)."""

import pytest
import torch
import torch.nn.functional as F

from latefusion.methods import StepInfo, build_method, load_model
from latefusion.train import train

from test_methods_baselines import one_batch, prototype_bundle


def test_mmcosine_logits_and_loss_follow_the_equations(tiny_config):
    """logits = s * sum_m <f_m/|f_m|, W_m[k]/|W_m[k]|>, no bias; loss = CE(logits, y); each modality's
    share is its own scaled cosines; predictions are the same logits."""
    bundle = prototype_bundle({"a": 3.0, "b": 1.0}, {"a": 8, "b": 6})
    s = 7.5
    method = build_method(tiny_config("method.name=mmcosine", f"method.options.scaling={s}", "model.feature_dim=16"), bundle.spec)
    model = method.build_model().train()
    inputs, labels = one_batch(bundle, 32)
    with torch.no_grad():  # features and weights away from unit norm, so that a missing normalisation shows
        for linear in model.head.linears.values():
            linear.weight.mul_(torch.linspace(0.2, 5.0, linear.weight.shape[0])[:, None])
    features = {m: model.encoders[m](inputs[m]) for m in ("a", "b")}
    cosines = {}
    for m, f in features.items():
        w = model.head.linears[m].weight
        # cos(f_i, w_k) = f_i . w_k / (|f_i| |w_k|), one entry at a time
        cosines[m] = torch.stack([torch.stack([torch.dot(f[i], w[k]) / (f[i].norm() * w[k].norm()) for k in range(w.shape[0])])
                                  for i in range(len(f))])
    expected_logits = s * (cosines["a"] + cosines["b"])
    assert expected_logits.abs().max() <= 2 * s + 1e-4  # bounded by s per modality
    expected_loss = -expected_logits.log_softmax(1)[torch.arange(len(labels)), labels].mean()

    output = method.loss(model, inputs, labels, StepInfo(0))
    assert output.loss.item() == pytest.approx(expected_loss.item(), rel=1e-5)
    fused, shares = method.scores(model, inputs)
    assert torch.allclose(fused, expected_logits, rtol=1e-5, atol=1e-5)
    assert torch.allclose(method.predict(model, inputs), expected_logits, rtol=1e-5, atol=1e-5)
    for m in ("a", "b"):
        assert torch.allclose(shares[m], s * cosines[m], rtol=1e-5, atol=1e-5)
    # Scaling a modality's features or a class's weights changes nothing: only angles count.
    with torch.no_grad():
        model.head.linears["a"].weight.mul_(3.0)
    assert torch.allclose(method.predict(model, inputs), expected_logits, rtol=1e-5, atol=1e-5)
    assert not any(linear.bias is not None for linear in model.head.linears.values())


def test_mmcosine_trains_checkpoints_and_reloads_with_its_head(tmp_path, tiny_config):
    config = tiny_config("method.name=mmcosine", "train.epochs=2")
    result = train(config, tmp_path / "run")
    assert 0 <= result["test_acc"] <= 1 and result["epochs_run"] == 2
    model = load_model(tmp_path / "run")
    assert type(model.head).__name__ == "CosineHead" and model.head.scaling == 10.0


def test_mmcosine_options_are_checked_when_the_config_is_resolved(tiny_config):
    from latefusion.errors import ConfigError
    with pytest.raises(ConfigError, match="scaling"):
        tiny_config("method.name=mmcosine", "method.options.scaling=0")
    with pytest.raises(ConfigError, match="scalling"):
        tiny_config("method.name=mmcosine", "method.options.scalling=3")


def test_mmcosine_needs_two_modalities(tmp_path, tiny_config):
    from latefusion.errors import ConfigError
    with pytest.raises(ConfigError, match="at least 2 modalities"):
        train(tiny_config("method.name=mmcosine"), tmp_path / "run", bundle=prototype_bundle({"a": 1.0}, {"a": 8}))


def test_mmcosine_gradient_reaches_both_encoders_and_head_weights(tiny_config):
    bundle = prototype_bundle({"a": 3.0, "b": 1.0}, {"a": 8, "b": 8})
    method = build_method(tiny_config("method.name=mmcosine"), bundle.spec)
    model = method.build_model().train()
    inputs, labels = one_batch(bundle, 32)
    method.backward(model, method.loss(model, inputs, labels, StepInfo(0)))
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    # The gradient of a cosine is orthogonal to the vector it normalises: <dL/dW_k, W_k> = 0 per class.
    for linear in model.head.linears.values():
        assert torch.allclose((linear.weight.grad * linear.weight).sum(1), torch.zeros(linear.weight.shape[0]), atol=1e-6)
    assert F.cross_entropy(model(inputs), labels).item() == pytest.approx(method.loss(model, inputs, labels, StepInfo(0)).loss.item())
