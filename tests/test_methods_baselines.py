"""The baselines (G-Blending, OGM-GE, MMPareto, MLA): each test checks the mechanism that defines
the method on a small data set built for it, not only that the method runs."""

import math

import pytest
import torch
import torch.nn.functional as F

from latefusion.data import DataBundle, Modality, TensorSplit
from latefusion.errors import ConfigError
from latefusion.methods import StepInfo, build_method
from latefusion.methods.gblend import blend_weights
from latefusion.methods.mla import entropy_weights
from latefusion.methods.mmpareto import pareto_integrate
from latefusion.methods.ogm_ge import modulated_parameters, modulation_coefficients
from latefusion.pipeline import baseline_methods, run_pipeline
from latefusion.runs import RunDir
from latefusion.storage import load_checkpoint
from latefusion.methods import load_model
from latefusion.train import train

BASELINE_NAMES = ["gblend", "ogm_ge", "mmpareto", "mla"]


def prototype_bundle(strengths: dict[str, float], dims: dict[str, int], *, n_train: int = 400, classes: int = 4, seed: int = 0) -> DataBundle:
    """Modality m = strengths[m] * (unit class prototype) + unit Gaussian noise; strength 0 makes
    the modality pure noise, unrelated to the label."""
    g = torch.Generator().manual_seed(seed)
    prototypes = {m: F.normalize(torch.randn(classes, dims[m], generator=g), dim=1) for m in strengths}
    splits = {}
    for split, n in (("train", n_train), ("val", 200), ("test", 200)):
        labels = torch.randint(classes, (n,), generator=g)
        inputs = {m: s * prototypes[m][labels] + torch.randn(n, dims[m], generator=g) for m, s in strengths.items()}
        splits[split] = TensorSplit(inputs, labels)
    return DataBundle("prototypes", [Modality(m, "vector", (dims[m],)) for m in strengths], classes, splits=splits)


def one_batch(bundle: DataBundle, size: int = 128):
    split = bundle.splits["train"]
    return split.__getitems__(list(range(size)))


def encoder_grad(model, modality: str) -> torch.Tensor:
    return torch.cat([p.grad.reshape(-1) for p in model.encoders[modality].parameters()])


# ---------------------------------------------------------------- OGM-GE


def test_ogm_coefficients_follow_the_paper():
    # float32 1 - tanh(1.5) against float64: the subtraction loses digits, so relative 1e-4.
    k = modulation_coefficients(torch.tensor([60.0, 20.0]), alpha=0.5).tolist()
    assert k[1] == 1.0 and k[0] == pytest.approx(1 - math.tanh(0.5 * 3.0), rel=1e-4)
    assert modulation_coefficients(torch.tensor([1.0, 1.0]), alpha=0.5).tolist() == [1.0, 1.0]
    k3 = modulation_coefficients(torch.tensor([6.0, 2.0, 2.0]), alpha=0.5).tolist()  # against the mean of the others
    assert k3[0] == pytest.approx(1 - math.tanh(0.5 * 3.0), rel=1e-4) and k3[1:] == [1.0, 1.0]


def test_ogm_ge_slows_the_dominant_encoder_relative_to_naive(tmp_path, tiny_config):
    # a carries a strong label signal, b a weak one: after a little joint training a dominates.
    bundle = prototype_bundle({"a": 4.0, "b": 0.5}, {"a": 16, "b": 16})
    train(tiny_config("method.name=naive"), tmp_path / "naive", bundle=bundle)
    inputs, labels = one_batch(bundle)

    def gradients(*overrides, epoch=0):
        model = load_model(RunDir(tmp_path / "naive")).train()
        method = build_method(tiny_config(*overrides), bundle.spec)
        output = method.loss(model, inputs, labels, StepInfo(epoch))
        model.zero_grad()
        method.backward(model, output)
        return output, {m: torch.cat([p.grad.reshape(-1) for p in modulated_parameters(model.encoders[m])]) for m in ("a", "b")}

    _, naive = gradients("method.name=naive")
    ogm, plain = gradients("method.name=ogm_ge", "method.options.noise=false")
    k = {m: c.item() for m, c in ogm.saved["coefficients"].items()}
    assert k["a"] < 0.9 and k["b"] == 1.0, k
    assert plain["a"].norm().item() == pytest.approx(k["a"] * naive["a"].norm().item(), rel=1e-4)
    assert plain["a"].norm() < 0.9 * naive["a"].norm()
    assert torch.allclose(plain["b"], naive["b"])

    # With the generalisation-enhancement noise, the part of the update along the naive gradient is
    # still scaled by k (the noise has zero mean); the noise itself is of the gradient's spread.
    torch.manual_seed(0)
    _, noisy = gradients("method.name=ogm_ge")
    along = {m: (noisy[m].dot(naive[m]) / naive[m].dot(naive[m])).item() for m in ("a", "b")}
    assert along["a"] == pytest.approx(k["a"], abs=0.05)
    assert along["b"] == pytest.approx(1.0, abs=0.05)

    # Outside the modulation window the update is naive.
    _, late = gradients("method.name=ogm_ge", "method.options.end_epoch=2", epoch=3)
    assert torch.allclose(late["a"], naive["a"]) and torch.allclose(late["b"], naive["b"])


# ---------------------------------------------------------------- G-Blending


def test_blend_weights_reward_generalisation_per_unit_of_overfitting():
    # rows: (train loss, held-out loss); heads: a generalises, b only overfits, fused in between.
    start = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]])
    end = torch.tensor([[0.6, 0.2, 0.4], [0.7, 1.3, 0.8]])
    w = blend_weights(start, end, eps=1e-4)
    assert w.sum().item() == pytest.approx(1.0, rel=1e-4)  # a float32 sum
    assert w[1] == 0 and w[0] > w[2] > 0
    assert blend_weights(start, torch.tensor([[0.5] * 3, [1.2] * 3]), eps=1e-4) is None  # nothing generalised


def test_gblend_weights_favour_the_modality_that_overfits_less(tmp_path, tiny_config):
    # a: a clear label signal in a few dimensions; b: label-free noise in many dimensions, which a
    # 240-sample training set lets the encoder memorise (overfit) and never generalise.
    bundle = prototype_bundle({"a": 2.0, "b": 0.0}, {"a": 8, "b": 256}, n_train=300)
    config = tiny_config("method.name=gblend", "method.options.every=2", "method.options.holdout=0.2",
                         "train.epochs=7", "data.batch_size=32", "optim.lr=0.003")
    train(config, tmp_path / "gblend", bundle=bundle)
    state = load_checkpoint(RunDir(tmp_path / "gblend").last)
    assert state["method"]["weights"].sum().item() == pytest.approx(1.0, rel=1e-4)  # saved with the run, for resuming
    # The weights each super-epoch trained with (estimated before epochs 0, 2, 4, 6), in metrics.jsonl.
    estimates = [(row["train_w_a"], row["train_w_b"], row["train_w_fused"]) for row in state["history"][::2]]
    history = state["history"]
    assert all(history[e]["train_w_a"] == pytest.approx(history[e + 1]["train_w_a"]) for e in (0, 2, 4))  # fixed within a super-epoch
    assert all(w_b < 0.05 for _, w_b, _ in estimates), estimates  # b never generalises: no weight
    assert estimates[0][0] > 0.5, estimates  # a generalises with little overfitting: most of the weight


# ---------------------------------------------------------------- MMPareto


def test_pareto_integration_never_opposes_either_loss():
    torch.manual_seed(0)
    for _ in range(100):
        g_mm, g_u = torch.randn(20), torch.randn(20) * 3
        d = pareto_integrate(g_mm, g_u, gamma=1.5)
        assert d.dot(g_mm) >= -1e-5 and d.dot(g_u) >= -1e-5
        assert d.norm() >= 1.5 * (g_mm + g_u).norm() - 1e-5  # at least the sum's magnitude, times gamma
        if g_mm.dot(g_u) > 0:  # float32, with the code's rescaling by a norm ratio of about 1: relative 1e-4
            assert torch.allclose(d, 1.5 * (g_mm + g_u), rtol=1e-4, atol=1e-6)


def test_mmpareto_encoder_update_agrees_with_both_losses_under_conflict(tiny_config):
    bundle = prototype_bundle({"a": 2.0, "b": 2.0}, {"a": 16, "b": 16})
    method = build_method(tiny_config("method.name=mmpareto"), bundle.spec)
    model = method.build_model().train()
    # Make the conflict: modality a's own head votes against its share of the fused head.
    with torch.no_grad():
        method.unimodal_heads["a"].weight.copy_(-3 * model.head.linear.weight[:, : model.encoders["a"].out_dim])
    inputs, labels = one_batch(bundle)
    output = method.loss(model, inputs, labels, StepInfo(0))
    g_mm, g_u = method.encoder_gradients(model, output)["a"]
    assert F.cosine_similarity(g_mm, g_u, dim=0) < -0.5  # the conflict is real
    summed = g_mm + g_u
    assert min(summed.dot(g_mm), summed.dot(g_u)) < 0  # plain summation would work against one loss
    # The integrated direction (before the per-tensor rescaling) works against neither loss.
    direction = pareto_integrate(g_mm, g_u, gamma=1.0)
    assert direction.dot(g_mm) >= 0 and direction.dot(g_u) >= 0
    method.backward(model, output)
    # The heads still learn from their own loss only.
    fused_head_grad = torch.autograd.grad(F.cross_entropy(model(inputs), labels), model.head.linear.weight)[0]
    assert torch.allclose(model.head.linear.weight.grad, fused_head_grad, rtol=1e-4, atol=1e-6)  # float32 gradients; 1e-6 for entries near 0


# ---------------------------------------------------------------- MLA


def test_mla_alternates_modalities_and_protects_what_the_shared_head_learnt(tiny_config):
    bundle = prototype_bundle({"a": 2.0, "b": 2.0}, {"a": 16, "b": 16})
    inputs, labels = one_batch(bundle)

    def head_gradient_on_b_after_a(projection: bool):
        method = build_method(tiny_config("method.name=mla", f"method.options.projection={projection}"), bundle.spec)
        model = method.build_model().train()
        assert method.steps_per_batch == 2
        trained = []
        for substep in range(method.steps_per_batch):
            model.zero_grad(set_to_none=True)
            method.backward(model, method.loss(model, inputs, labels, StepInfo(0, substep)))
            trained.append([m for m in ("a", "b") if next(model.encoders[m].parameters()).grad is not None])
        r_a = model.encoders["a"](inputs["a"]).detach().mean(0)
        return trained, model.head.weight.grad, r_a

    trained, projected, r_a = head_gradient_on_b_after_a(True)
    assert trained == [["a"], ["b"]]  # one modality per step, in turn, never fused
    _, unprojected, _ = head_gradient_on_b_after_a(False)
    # The b step's head update barely moves the head's output on what the a step fitted.
    relative = lambda grad: (grad @ r_a).norm() / (grad.norm() * r_a.norm())
    assert relative(projected) < 0.25 * relative(unprojected)


def test_mla_test_time_fusion_favours_the_more_certain_modality(tmp_path, tiny_config):
    confident, flat = torch.tensor([[8.0, 0, 0, 0]]), torch.tensor([[0.3, 0, 0, 0]])
    w = entropy_weights(torch.stack([confident, flat]))
    assert w[0, 0] > 0.5 > w[1, 0] and w.sum(0).item() == pytest.approx(1.0, rel=1e-4)

    # Trained end to end: a carries the label, b is noise; at test the fusion leans on a.
    bundle = prototype_bundle({"a": 3.0, "b": 0.0}, {"a": 16, "b": 16})
    train(tiny_config("method.name=mla", "train.epochs=6", "data.batch_size=32"), tmp_path / "mla", bundle=bundle)
    model = load_model(RunDir(tmp_path / "mla"))
    test = bundle.splits["test"]
    with torch.no_grad():
        weights = model.fusion_weights(model.modality_logits(test.inputs)).mean(1)
    # (The weights cannot pass about 0.8 for 4 classes: entropies differ by at most log 4.)
    assert weights[0] > 0.55 > weights[1], weights


# ---------------------------------------------------------------- all four, through the one loop


@pytest.mark.parametrize("name", BASELINE_NAMES)
def test_baseline_trains_in_the_loop_and_checkpoints_its_state(tmp_path, tiny_config, name):
    result = train(tiny_config(f"method.name={name}", "train.epochs=2"), tmp_path / name)
    assert 0 <= result["test_acc"] <= 1 and result["epochs_run"] == 2
    checkpoint = load_checkpoint(RunDir(tmp_path / name).last)
    if name == "ogm_ge":  # stateless between steps: what it did each step is its logged coefficients
        rows = checkpoint["history"]
        assert all(0 < row[f"train_coeff_{m}"] <= 1 for row in rows for m in ("a", "b"))
        assert any(row[f"train_coeff_{m}"] < 1 for row in rows for m in ("a", "b"))  # some modality was slowed
    else:
        expected = {"gblend": "weights", "mla": "projector", "mmpareto": "unimodal_heads.a.weight"}[name]
        assert expected in checkpoint["method"]


def test_baselines_need_two_modalities(tmp_path, tiny_config):
    bundle = prototype_bundle({"a": 1.0}, {"a": 8})
    with pytest.raises(ConfigError, match="at least 2 modalities"):
        train(tiny_config("method.name=ogm_ge"), tmp_path / "run", bundle=bundle)


def test_pipeline_runs_and_probes_the_baselines(tmp_path, tiny_config):
    assert set(BASELINE_NAMES) <= set(baseline_methods())
    summary = run_pipeline(tiny_config("train.epochs=2"), tmp_path / "demo", methods=baseline_methods(), log=lambda *_: None)
    for name in BASELINE_NAMES:
        assert 0 <= summary["methods"][name]["test_acc"] <= 1
        assert set(summary["probe"][name]) == {"a", "b"}


def test_demo_methods_option():
    from latefusion.cli import parse_methods
    assert parse_methods("paper") == [] and parse_methods("all") == baseline_methods()
    assert parse_methods("ogm_ge, gblend") == ["ogm_ge", "gblend"]
    with pytest.raises(ConfigError, match="unknown: \\['ogm'\\]"):
        parse_methods("ogm")
