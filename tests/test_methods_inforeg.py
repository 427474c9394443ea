"""InfoReg: the loss, the regulated gradients and the Fisher trace recomputed from the official code's
equations on a fixed batch; the prime-learning-window rule against the official moving averages; the
anchor set at each epoch's start and the state through checkpoints."""

import math

import pytest
import torch
import torch.nn.functional as F

from latefusion.errors import ConfigError
from latefusion.methods import StepInfo, TrainingContext, build_method
from latefusion.runs import RunDir
from latefusion.storage import load_checkpoint
from latefusion.train import train

from test_methods_baselines import one_batch, prototype_bundle
from test_methods_fidelity import FLOAT32, fitted_late_fusion


def official_k(traces: list[float]) -> float:
    """main.py: the trace list starts with ten zeros; k = (mean of the last 10 - mean of the 10
    before the last) / mean of the last 10."""
    history = [0.0] * 10 + traces
    tr1 = sum(history[-10:]) / 10
    tr2 = sum(history[-11:-1]) / 10
    return (tr1 - tr2) / tr1


def test_inforeg_window_follows_the_official_moving_averages(tiny_config):
    bundle = prototype_bundle({"a": 4.0, "b": 0.5}, {"a": 8, "b": 8})
    method = build_method(tiny_config("method.name=inforeg"), bundle.spec)
    model = method.build_model()
    ctx = TrainingContext(None, bundle, None, torch.device("cpu"))
    method.on_epoch_start(0, model, ctx)
    assert method.in_window.tolist() == [True, True]  # epoch 0: k = 1
    # a: the trace grows fast, then flattens; b: it keeps growing.
    per_epoch = {"a": [5.0, 9.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0],
                 "b": [1.0 + 2 * e for e in range(14)]}
    for epoch in range(1, 15):
        method.epoch_trace.copy_(torch.tensor([per_epoch["a"][epoch - 1], per_epoch["b"][epoch - 1]]))
        method.on_epoch_start(epoch, model, ctx)
        for i, m in enumerate(("a", "b")):
            expected = official_k(per_epoch[m][:epoch]) > 0.05
            assert method.in_window[i].item() == expected, (epoch, m)
        assert method.epoch_trace.tolist() == [0.0, 0.0]
    assert method.in_window.tolist() == [False, True]  # a's window closed, b's still open


def test_inforeg_step_follows_the_equations(tiny_config):
    """L = CE(fused) + CE(share_a) + CE(share_b) (shares: weight columns + half the bias); the
    modality ahead on summed true-class probability, in its window, gets
    grad += 0.95 exp(tanh(s_a - s_b)) (theta - anchor) on every encoder parameter; the epoch's trace
    grows by the sum over weight tensors of mean(grad^2)."""
    bundle = prototype_bundle({"a": 4.0, "b": 0.5}, {"a": 16, "b": 16})
    inputs, labels = one_batch(bundle)
    model = fitted_late_fusion(tiny_config, bundle, inputs, labels)
    method = build_method(tiny_config("method.name=inforeg"), bundle.spec)
    ctx = TrainingContext(None, bundle, None, torch.device("cpu"))
    anchor = {n: p.detach().clone() for n, p in model.named_parameters()}
    method.on_epoch_start(0, model, ctx)
    with torch.no_grad():  # the model moves away from its anchor during the epoch
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))

    features = {m: model.encoders[m](inputs[m]) for m in ("a", "b")}
    weight, bias = model.head.linear.weight, model.head.linear.bias
    width = features["a"].shape[1]
    shares = {"a": features["a"] @ weight[:, :width].T + bias / 2, "b": features["b"] @ weight[:, width:].T + bias / 2}
    fused = torch.cat([features["a"], features["b"]], 1) @ weight.T + bias
    loss = F.cross_entropy(fused, labels) + F.cross_entropy(shares["a"], labels) + F.cross_entropy(shares["b"], labels)
    names = [n for n, _ in model.named_parameters()]
    expected = dict(zip(names, torch.autograd.grad(loss, list(model.parameters()))))
    score = {m: z.softmax(1)[torch.arange(len(labels)), labels].sum().item() for m, z in shares.items()}
    assert score["a"] > score["b"]
    beta = 0.95 * math.exp(math.tanh(score["a"] - score["b"]))
    for name, p in model.named_parameters():
        if name.startswith("encoders.a."):
            expected[name] = expected[name] + beta * (p.detach() - anchor[name])
    trace_a = sum(g.pow(2).mean() for n, g in expected.items() if n.startswith("encoders.a.") and g.dim() >= 2).item()
    trace_b = sum(g.pow(2).mean() for n, g in expected.items() if n.startswith("encoders.b.") and g.dim() >= 2).item()

    model.zero_grad(set_to_none=True)
    output = method.loss(model, inputs, labels, StepInfo(0))
    assert output.loss.item() == pytest.approx(loss.item(), rel=1e-5)
    assert output.logs["beta_a"].item() == pytest.approx(beta, rel=1e-5) and output.logs["beta_b"].item() == 0.0
    method.backward(model, output)
    for name, p in model.named_parameters():
        assert torch.allclose(p.grad, expected[name], **FLOAT32), name
    assert method.epoch_trace.tolist() == pytest.approx([trace_a, trace_b], rel=1e-4)

    # Out of its window, the leading modality is not regulated.
    method.in_window[0] = False
    model.zero_grad(set_to_none=True)
    out = method.loss(model, inputs, labels, StepInfo(0))
    assert out.logs["beta_a"].item() == 0.0


def test_inforeg_per_modality_strengths_and_their_check(tiny_config):
    bundle = prototype_bundle({"a": 4.0, "b": 0.5}, {"a": 8, "b": 8})
    method = build_method(tiny_config("method.name=inforeg", "method.options.beta_by_modality={a: 0.3}"), bundle.spec)
    assert method.strengths.tolist() == pytest.approx([0.3, 0.95])
    with pytest.raises(ConfigError, match=r"beta_by_modality names modalities \['video'\]"):
        build_method(tiny_config("method.name=inforeg", "method.options.beta_by_modality={video: 0.1}"), bundle.spec)


def test_inforeg_checkpoints_its_anchor_and_traces(tmp_path, tiny_config):
    result = train(tiny_config("method.name=inforeg", "train.epochs=2"), tmp_path / "run")
    assert 0 <= result["test_acc"] <= 1
    state = load_checkpoint(RunDir(tmp_path / "run").last)
    saved = state["method"]
    assert {"traces", "epoch_trace", "in_window"} <= set(saved)
    assert (saved["epoch_trace"] > 0).all() and (saved["traces"][:, -1] > 0).all()  # epoch 1 accumulating; epoch 0's pushed
    anchors = {k.removeprefix("anchor."): v for k, v in saved.items() if k.startswith("anchor.")}
    assert anchors and all(not torch.equal(v, state["model"][f"encoders.{k}"]) for k, v in anchors.items() if v.is_floating_point() and "weight" in k)
