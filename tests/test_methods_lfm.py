"""LFM (NeurIPS 2024) against its equations as the official code computes them (methods/lfm.py):
the loss 2 (w_cls CE(fused) + w_align D) with D = (KL(mid||p_a) + KL(mid||p_b)) / 2 on the
per-modality classifiers' logits; the learned update of w_align from a Hessian-vector product on
the held-out slice, recomputed here with torch.autograd.functional.hvp on the flattened
parameters; the fitted schedule; options checked when the config is resolved; the weight saved in
checkpoints and a run crashed inside an epoch resumed exactly."""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call

from latefusion.errors import ConfigError
from latefusion.methods import StepInfo, TrainingContext
from latefusion.methods.lfm import LFM
from latefusion.resolve import resolve_config
from latefusion.runs import RunDir
from latefusion.storage import load_checkpoint
from latefusion.train import train

from method_resume import check_resumes_exactly, crashing
from test_methods_equations import built, close, first, make_bundle

crashing(LFM)
MODALITIES = ("a", "b")


def kl(p, q):
    """KL(p || q) per sample, summed over classes."""
    return (p * (p.log() - q.log())).sum(-1)


def loss_terms(features, weight, bias, labels):
    """(fused CE, D) from the features and the concatenated head's weight and bias, written out."""
    fused = torch.cat([features[m] for m in MODALITIES], 1) @ weight.T + bias
    dims = [features[m].shape[1] for m in MODALITIES]
    w_a, w_b = weight.split(dims, 1)
    # Each modality's own classifier: u_m = 2 * (its share of the fused logits), so fused = (u_a + u_b) / 2.
    u_a, u_b = 2 * (features["a"] @ w_a.T + bias / 2), 2 * (features["b"] @ w_b.T + bias / 2)
    close((u_a + u_b) / 2, fused)
    p_a, p_b = u_a.softmax(1), u_b.softmax(1)
    mid = (p_a + p_b) / 2
    divergence = ((kl(mid, p_a) + kl(mid, p_b)) / 2).mean()
    ce = -fused.log_softmax(1)[torch.arange(len(labels)), labels].mean()
    return ce, divergence


def test_lfm_loss_is_twice_the_weighted_fused_cross_entropy_and_alignment_divergence():
    bundle = make_bundle({"a": 2.0, "b": 1.0}, {"a": 6, "b": 5})
    method, model = built("lfm", bundle, "model.feature_dim=8")
    method.alignment_weight.fill_(0.3)
    inputs, labels = first(bundle, 32)
    output = method.loss(model, inputs, labels, StepInfo(0))
    with torch.no_grad():
        features = {m: model.encoders[m](inputs[m]) for m in MODALITIES}
        ce, divergence = loss_terms(features, model.head.linear.weight, model.head.linear.bias, labels)
    assert divergence > 1e-4  # the two modalities disagree: the term is not trivially 0
    close(output.loss.detach(), 2 * (0.7 * ce + 0.3 * divergence))
    close(output.logs["align"], divergence)


def test_lfm_learned_weight_moves_by_the_mean_hessian_vector_product_of_the_first_parameter(tmp_path):
    bundle = make_bundle({"a": 2.0, "b": 1.0}, {"a": 6, "b": 5}, n_train=64)
    method, model = built("lfm", bundle, "model.feature_dim=8", "method.options.alpha_lr=50.0",
                          "method.options.alpha_lr_halving_epochs=3", "method.options.holdout=16")
    context = TrainingContext(method.config, bundle, RunDir(tmp_path), torch.device("cpu"))
    train_part = method.prepare(model, context)
    assert len(train_part) == 64 - 16 and len(method.held_out) == 16
    # The held-out samples: the first 16 of the seeded permutation (train.seed 0), never trained on.
    order = torch.randperm(64, generator=torch.Generator().manual_seed(0))[:16].tolist()
    held_inputs, held_labels = bundle.splits["train"].__getitems__(order)

    names = [n for n, p in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    sizes = [p.numel() for p in model.parameters()]
    start = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def terms(flat):
        params = dict(zip(names, (t.view(s) for t, s in zip(flat.split(sizes), shapes))))
        features = {m: functional_call(model.encoders[m], {k.split(".", 2)[2]: v for k, v in params.items() if k.startswith(f"encoders.{m}.")},
                                       (held_inputs[m],)) for m in MODALITIES}
        return loss_terms(features, params["head.linear.weight"], params["head.linear.bias"], held_labels)

    model.eval()
    updates = []
    for epoch, w in ((1, 0.6), (3, 0.6), (4, 0.9496)):
        method.alignment_weight.fill_(w)
        flat = start.clone().requires_grad_()
        g_cls = torch.autograd.grad(terms(flat)[0], flat)[0]
        _, h = torch.autograd.functional.hvp(lambda v: (1 - w) * terms(v)[0] + w * terms(v)[1], start, g_cls)
        step = -50.0 * 0.5 ** (epoch // 3) * h[: sizes[0]].mean().item()  # alpha_lr halved every 3 epochs
        method.on_epoch_start(epoch, model, context)
        got = method.alignment_weight.item()
        if w + step > 0.95:
            assert got == pytest.approx(0.95)
        else:
            assert abs(step) > 1e-3 and got - w == pytest.approx(step, rel=1e-3)
        updates.append(got)
    assert updates[-1] == pytest.approx(0.95)  # the last update was clipped
    assert names[0] == "encoders.a.net.1.weight"  # "the first parameter tensor": the first modality's first layer


def test_lfm_fitted_schedule_is_the_official_polynomial_at_the_same_fraction_of_the_run():
    coefficients = [2.04623704e-01, 3.35472727e-03, 1.22989557e-04, -2.92947416e-06, 2.23835486e-08, -5.39717505e-11]
    bundle = make_bundle({"a": 2.0, "b": 1.0}, {"a": 6, "b": 5})
    method, model = built("lfm", bundle, "method.options.balance=fitted", "train.epochs=50")
    for epoch in (0, 10, 25, 49):
        x = 200 * epoch / 50
        method.on_epoch_start(epoch, model, None)
        close(method.alignment_weight, torch.tensor(1 - sum(c * x**i for i, c in enumerate(coefficients))))
    assert 0.9 < 1 - method.alignment_weight.item() < 0.96  # at the end of the run, classification leads


def test_lfm_options_are_checked_when_the_config_is_resolved():
    with pytest.raises(ConfigError, match="holdout"):
        resolve_config(None, ["method.name=lfm", "method.options.holdout=0"])
    with pytest.raises(ConfigError, match="initial_alignment_weight"):
        resolve_config(None, ["method.name=lfm", "method.options.initial_alignment_weight=1.5"])
    with pytest.raises(ConfigError, match="balance"):
        resolve_config(None, ["method.name=lfm", "method.options.balance=guessed"])


def test_lfm_saves_its_weight_and_resumes_a_run_crashed_inside_an_epoch(tmp_path, tiny_config, monkeypatch):
    # 300 - 8 held out = 292 samples in batches of 50: 6 steps an epoch, a step checkpoint every 2;
    # the 9th call is epoch 1, step 3. A large alpha_lr makes the weight move at every epoch start.
    config = tiny_config("method.name=lfm-crashing", "data.batch_size=50", "train.checkpoint_every_steps=2",
                         "method.options.alpha_lr=10", "method.options.initial_alignment_weight=0.5")
    check_resumes_exactly(config, tmp_path, monkeypatch, at_call=9)
    saved = load_checkpoint(RunDir(tmp_path / "whole").last)["method"]
    assert "alignment_weight" in saved and 0.05 < saved["alignment_weight"].item() < 0.95 and saved["alignment_weight"].item() != 0.5


def test_lfm_trains_in_the_loop_with_the_sum_head(tmp_path, tiny_config):
    result = train(tiny_config("method.name=lfm", "model.fusion=sum", "train.epochs=2"), tmp_path / "run")
    assert 0 <= result["test_acc"] <= 1 and set(result["test_acc_by_modality"]) == {"a", "b"}
