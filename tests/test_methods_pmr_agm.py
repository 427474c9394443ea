"""PMR and AGM: each step's update against the papers' equations written out independently on a fixed
batch, a longer run showing the mechanism does what the method claims on a constructed imbalanced
problem, and both baselines through the one loop, the pipeline and the demo's method list."""

import math

import pytest
import torch
import torch.nn.functional as F

from latefusion.data import DataBundle
from latefusion.methods import StepInfo, TrainingContext, build_method
from latefusion.methods.agm import modulation_coefficients
from latefusion.methods.pmr import rebalance_coefficients
from latefusion.pipeline import baseline_methods, run_pipeline
from latefusion.probe import ProbeConfig, fit_linear
from latefusion.runs import RunDir
from latefusion.storage import load_checkpoint
from latefusion.train import train

from test_methods_baselines import one_batch, prototype_bundle


def context(config, bundle) -> TrainingContext:
    return TrainingContext(config, bundle, None, torch.device("cpu"))


def gradients(module) -> dict[str, torch.Tensor]:
    return {name: p.grad.clone() for name, p in module.named_parameters() if p.grad is not None}


def assert_same_gradients(got: dict, expected: dict) -> None:
    """float32 gradients computed in another order: relative 1e-4, with an absolute floor of 1e-6 for
    entries near zero (ten times the largest rounding difference these tests show)."""
    assert got.keys() == expected.keys()
    for name in got:
        assert torch.allclose(got[name], expected[name], rtol=1e-4, atol=1e-6), name


# ---------------------------------------------------------------- PMR


def test_pmr_coefficients_boost_the_slow_modality_and_hold_back_the_fast_one():
    # float32 results against exact values (rho - 1 loses digits to cancellation): relative 1e-4.
    beta, gamma = rebalance_coefficients(torch.tensor([40.0, 60.0]))  # rho_a = 2/3
    assert beta.tolist() == pytest.approx([0.5, 0.0], rel=1e-4) and gamma.tolist() == pytest.approx([0.0, 0.5], rel=1e-4)
    beta, gamma = rebalance_coefficients(torch.tensor([10.0, 60.0]))  # clipped at 1
    assert beta.tolist() == pytest.approx([1.0, 0.0], rel=1e-4) and gamma.tolist() == pytest.approx([0.0, 1.0], rel=1e-4)
    beta, gamma = rebalance_coefficients(torch.tensor([40.0, 60.0]), "constant")  # the official code's rule
    assert beta.tolist() == [1.0, 0.0] and gamma.tolist() == [0.0, 1.0]
    beta, gamma = rebalance_coefficients(torch.tensor([30.0, 60.0, 60.0]))  # each against the mean of the others
    assert beta.tolist() == pytest.approx([1.0, 0.0, 0.0], rel=1e-4) and gamma.tolist() == pytest.approx([0.0, 1 / 3, 1 / 3], rel=1e-4)


def test_pmr_prototypes_and_update_follow_the_equations(tiny_config):
    bundle = prototype_bundle({"a": 3.0, "b": 1.0}, {"a": 8, "b": 8}, n_train=120)
    config = tiny_config("method.name=pmr", "method.options.alpha=0.7", "method.options.mu=0.3", "model.feature_dim=16")
    method = build_method(config, bundle.spec)
    model = method.build_model()
    ctx = context(config, bundle)
    method.prepare(model, ctx)
    train_split = bundle.splits["train"]

    def class_means():
        with torch.no_grad():
            return torch.stack([
                torch.stack([model.encoders[m](train_split.inputs[m])[train_split.labels == k].mean(0) for k in range(bundle.num_classes)])
                for m in ("a", "b")])

    method.on_epoch_start(0, model, ctx)
    first = class_means()
    # Means of float32 features (about 1 in size) summed in another order: relative 1e-4.
    assert torch.allclose(method.prototypes, first, rtol=1e-4, atol=1e-5)
    moves = torch.Generator().manual_seed(1)
    with torch.no_grad():  # the encoders move; the next estimate keeps 0.2 of the old prototypes
        for p in model.encoders.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=moves))
    method.on_epoch_start(1, model, ctx)
    assert torch.allclose(method.prototypes, 0.8 * class_means() + 0.2 * first, rtol=1e-4, atol=1e-5)

    # The step, written from the equations: p = softmax(-|z - c|), S = sum of p[y], rho = S_a / S_b.
    inputs, labels = one_batch(bundle, 64)
    model.train()
    model.zero_grad()
    features = model.features(inputs)
    p = {m: (-(features[m][:, None, :] - method.prototypes[i][None]).norm(dim=-1)).softmax(1) for i, m in enumerate(("a", "b"))}
    s = {m: p[m][torch.arange(64), labels].sum().item() for m in p}
    rho = s["a"] / s["b"]
    slow, fast = ("b", "a") if rho > 1 else ("a", "b")
    gap = min(max(rho, 1 / rho) - 1, 1.0)
    pce = -p[slow][torch.arange(64), labels].log().mean()
    entropy = -(p[fast] * p[fast].log()).sum(1).mean()
    expected_loss = F.cross_entropy(model.head(features), labels) + 0.7 * gap * pce - 0.3 * gap * entropy
    expected_loss.backward()
    expected = gradients(model)

    model.zero_grad()
    output = method.loss(model, inputs, labels, StepInfo(1))
    method.backward(model, output)
    # float32 sums in another order than the code's (and rho here in float64): relative 1e-4.
    assert output.loss.item() == pytest.approx(expected_loss.item(), rel=1e-4)
    assert output.logs[f"beta_{slow}"].item() == pytest.approx(gap, rel=1e-4) and output.logs[f"gamma_{fast}"].item() == pytest.approx(gap, rel=1e-4)
    assert output.logs[f"beta_{fast}"].item() == 0 and output.logs[f"gamma_{slow}"].item() == 0
    assert_same_gradients(gradients(model), expected)

    # After the PER epochs only the PCE remains; outside the window the step is naive late fusion.
    late = method.loss(model, inputs, labels, StepInfo(10))
    assert late.logs[f"gamma_{fast}"].item() == 0 and late.logs[f"beta_{slow}"].item() == pytest.approx(gap, rel=1e-4)
    outside = method.loss(model, inputs, labels, StepInfo(101))
    assert outside.loss.item() == pytest.approx(F.cross_entropy(model(inputs), labels).item(), rel=1e-4)


def train_by_hand(name: str, bundle: DataBundle, tiny_config, *overrides: str, epochs: int = 30, batch: int = 16, seed: int = 0):
    """The loop's order of calls (on_epoch_start, loss, backward, step) with plain SGD, fast on tiny
    tensors; returns the model, the per-step logs and each encoder's initial parameters."""
    torch.manual_seed(seed)
    config = tiny_config(f"method.name={name}", "model.feature_dim=4", *overrides)
    method = build_method(config, bundle.spec)
    model = method.build_model()
    initial = {m: torch.cat([p.detach().reshape(-1) for p in model.encoders[m].parameters()]).clone() for m in ("a", "b")}
    ctx = context(config, bundle)
    split = method.prepare(model, ctx)
    optimizer = torch.optim.SGD([*model.parameters(), *method.parameters()], lr=0.03, momentum=0.9)
    order_rng = torch.Generator().manual_seed(seed)
    logs = []
    for epoch in range(epochs):
        method.on_epoch_start(epoch, model, ctx)
        model.train()
        order = torch.randperm(len(split), generator=order_rng).tolist()
        for start in range(0, len(order), batch):
            inputs, labels = split.__getitems__(order[start:start + batch])
            output = method.loss(model, inputs, labels, StepInfo(epoch))
            optimizer.zero_grad()
            method.backward(model, output)
            optimizer.step()
            logs.append({k: v.item() for k, v in output.logs.items()})
    return model.eval(), logs, initial


def probe(model, bundle: DataBundle, modality: str) -> float:
    """Test accuracy of a linear classifier on the frozen encoder's features."""
    with torch.no_grad():
        features = {s: (model.encoders[modality](bundle.splits[s].inputs[modality]), bundle.splits[s].labels) for s in ("train", "val", "test")}
    return fit_linear(features, bundle.num_classes, ProbeConfig(steps=200))["test_acc"]


def imbalanced_bundle() -> DataBundle:
    # a: a strong signal the fused head fits within a few steps; b: a weaker one in 64 dimensions that
    # its encoder must learn to project onto its 4 features, which naive training leaves undone.
    return prototype_bundle({"a": 5.0, "b": 2.0}, {"a": 16, "b": 64}, n_train=400)


def test_pmr_makes_the_slow_encoder_learn_what_naive_training_leaves(tiny_config):
    bundle = imbalanced_bundle()
    naive, _, _ = train_by_hand("naive", bundle, tiny_config)
    pmr, logs, _ = train_by_hand("pmr", bundle, tiny_config)  # 30 epochs x 25 steps
    # b is the slow modality throughout: it gets the PCE, a the PER while that lasts.
    boosted_b = sum(step["beta_b"] > 0 for step in logs) / len(logs)
    held_back_a = sum(step["gamma_a"] > 0 for step in logs[:250]) / 250  # PER: the first 10 epochs
    assert boosted_b > 0.9 and held_back_a > 0.9, (boosted_b, held_back_a)
    naive_b, pmr_b = probe(naive, bundle, "b"), probe(pmr, bundle, "b")
    assert pmr_b > naive_b + 0.08, (naive_b, pmr_b)
    assert probe(pmr, bundle, "a") > 0.95  # the strong modality is not given up for it


# ---------------------------------------------------------------- AGM


def test_agm_coefficients_follow_the_paper():
    # float32 results against float64 formulas: relative 1e-4.
    # this step: s = (1, 2); running means equal, so rbar = 1 for both
    k = modulation_coefficients(torch.tensor([1.0, 2.0]), torch.tensor([1.5, 1.5]), alpha=0.5, clip=10.0).tolist()
    assert k[0] == pytest.approx(math.exp(0.5 * (1 - math.e)), rel=1e-4) and k[1] == pytest.approx(math.exp(0.5 * (1 - 1 / math.e)), rel=1e-4)
    assert k[0] < 1 < k[1]  # a is doing better than usual: slowed; b worse than usual: sped up
    # the exponent is clipped at `clip`
    k = modulation_coefficients(torch.tensor([5.0, 0.0]), torch.tensor([0.0, 5.0]), alpha=1.0, clip=10.0).tolist()
    assert k[0] == pytest.approx(math.exp(10.0), rel=1e-4)
    # three modalities: each against the mean of the others' scores
    k = modulation_coefficients(torch.tensor([1.0, 2.0, 3.0]), torch.zeros(3), alpha=1.0, clip=10.0).tolist()
    assert k == pytest.approx([math.exp(1 - math.exp(1.5)), math.exp(1 - 1.0), math.exp(1 - math.exp(-1.5))], rel=1e-4)


def test_agm_responses_are_the_official_shapley_formulas(tiny_config):
    from latefusion.methods.agm import padded_features, shapley_responses

    def fused(model, inputs, absent=()):
        """The model with the modalities in `absent` fed zeros; a padded pass runs the whole network in
        eval mode, as the official code does (model/CREMAD_net.py lines 57-66)."""
        if absent:
            model.eval()
        logits = model.head({m: model.encoders[m](torch.zeros_like(inputs[m]) if m in absent else inputs[m]) for m in model.modalities})
        model.train()
        return logits

    bundle = prototype_bundle({"a": 2.0, "b": 1.0}, {"a": 8, "b": 8})
    model = build_method(tiny_config("method.name=agm"), bundle.spec).build_model().train()
    inputs, _ = one_batch(bundle, 32)
    o = shapley_responses(model.head, model.features(inputs), *padded_features(model, inputs))
    # Sums and differences of float32 logits about 1 in size, in another order than the code's: an
    # absolute bound, 1e-5, some hundred roundings of such a logit and far below any wrong formula's error.
    # two modalities (official code): o_a = (f(a,v) - f(0,v) + f(a,0)) / 2
    assert torch.allclose(o["a"], 0.5 * (fused(model, inputs) - fused(model, inputs, "a") + fused(model, inputs, "b")), atol=1e-5)
    assert torch.allclose(o["b"], 0.5 * (fused(model, inputs) - fused(model, inputs, "b") + fused(model, inputs, "a")), atol=1e-5)
    assert torch.allclose(o["a"] + o["b"], model(inputs), atol=1e-5)

    # three modalities (official CMU-MOSEI code): o_a = (f(avt) - f(vt))/3 + (f(av) - f(v) + f(at) - f(t))/6 + f(a)/3
    bundle3 = prototype_bundle({"a": 2.0, "v": 1.0, "t": 1.0}, {"a": 8, "v": 8, "t": 8})
    model = build_method(tiny_config("method.name=agm", "model.fusion=sum"), bundle3.spec).build_model().train()
    inputs, _ = one_batch(bundle3, 32)
    o = shapley_responses(model.head, model.features(inputs), *padded_features(model, inputs))
    f = lambda *present: fused(model, inputs, [m for m in "avt" if m not in present])
    expected_a = (f("a", "v", "t") - f("v", "t")) / 3 + (f("a", "v") - f("v") + f("a", "t") - f("t")) / 6 + f("a") / 3
    assert torch.allclose(o["a"], expected_a, atol=1e-5)
    assert torch.allclose(o["a"] + o["v"] + o["t"], model(inputs), atol=1e-5)


def test_agm_update_scales_each_response_gradient(tiny_config):
    bundle = prototype_bundle({"a": 3.0, "b": 1.0}, {"a": 8, "b": 8})
    method = build_method(tiny_config("method.name=agm", "method.options.alpha=0.8"), bundle.spec)
    model = method.build_model().train()
    method.running_scores.copy_(torch.tensor([1.2, 1.5]))
    method.steps.fill_(4)
    inputs, labels = one_batch(bundle, 64)

    # By hand: the two-modality responses, their scores and coefficients, and the gradient of
    # CE(o_a + o_b) with the part through o_m multiplied by k_m.
    model.zero_grad()
    features = model.features(inputs)
    zero = {m: model.encoders[m].eval()(torch.zeros_like(inputs[m][:1])).expand(64, -1) for m in ("a", "b")}
    model.train()
    f = lambda a, b: model.head({"a": a, "b": b})
    o = {"a": 0.5 * (f(features["a"], features["b"]) - f(zero["a"], features["b"]) + f(features["a"], zero["b"])),
         "b": 0.5 * (f(features["a"], features["b"]) - f(features["a"], zero["b"]) + f(zero["a"], features["b"]))}
    s = torch.stack([F.cross_entropy(o[m].detach(), labels) for m in ("a", "b")])
    r = torch.exp(s.flip(0) - s)
    rbar = torch.exp(torch.tensor([1.5 - 1.2, 1.2 - 1.5]))
    k = torch.exp(0.8 * (rbar - r))
    g = torch.autograd.grad(F.cross_entropy(o["a"] + o["b"], labels), o["a"], retain_graph=True)[0]  # dL/dfused, the same for both
    (k[0] * (o["a"] * g).sum() + k[1] * (o["b"] * g).sum()).backward()
    expected = gradients(model)

    model.zero_grad()
    output = method.loss(model, inputs, labels, StepInfo(0))
    # float32 losses and their exponentials, computed here in another order than the code's: relative 1e-4.
    assert torch.allclose(output.saved["scores"], s, rtol=1e-4, atol=1e-5)
    assert torch.allclose(torch.stack([output.logs["coeff_a"], output.logs["coeff_b"]]), k, rtol=1e-4)
    assert output.loss.item() == pytest.approx(F.cross_entropy(model(inputs), labels).item(), rel=1e-4)  # forward: the fused model
    method.backward(model, output)
    assert_same_gradients(gradients(model), expected)
    # the running means take this step's scores: (4 * old + new) / 5
    assert torch.allclose(method.running_scores, (4 * torch.tensor([1.2, 1.5]) + s) / 5, rtol=1e-4) and method.steps.item() == 5

    # After the window (epochs 0..20) the coefficients are this last step's, not recomputed.
    assert torch.allclose(method.coefficients, k, rtol=1e-4)
    model.zero_grad()
    after = method.loss(model, inputs, labels, StepInfo(21))
    assert torch.equal(after.saved["coefficients"], method.coefficients)
    method.backward(model, after)
    assert_same_gradients(gradients(model), expected)


class NormedEncoder(torch.nn.Module):
    """Linear -> batch norm -> ReLU: train and eval mode give different features."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(in_dim, out_dim), torch.nn.BatchNorm1d(out_dim), torch.nn.ReLU())
        self.out_dim = out_dim

    def forward(self, x):
        return self.net(x)


def test_agm_padded_passes_run_the_whole_network_in_eval_mode(tiny_config):
    """Official code (model/CREMAD_net.py lines 57-66): f(a, v) from the train-mode pass; f(0, v),
    f(a, 0), f(0, 0) with the whole network in eval mode, the present encoder on its real input
    included; gradients flow through every pass."""
    bundle = prototype_bundle({"a": 3.0, "b": 1.0}, {"a": 8, "b": 8})
    method = build_method(tiny_config("method.name=agm", "model.feature_dim=16"), bundle.spec)
    model = method.build_model()
    for m in ("a", "b"):
        model.encoders[m] = NormedEncoder(8, 16)
    model.train()
    method.running_scores.copy_(torch.tensor([1.1, 1.6]))
    method.steps.fill_(3)
    inputs, labels = one_batch(bundle, 32)
    before = {k: v.clone() for k, v in model.state_dict().items()}

    trained = {m: model.encoders[m](inputs[m]) for m in ("a", "b")}  # updates the running statistics once
    model.eval()
    evaluated = {m: model.encoders[m](inputs[m]) for m in ("a", "b")}
    zero = {m: model.encoders[m](torch.zeros_like(inputs[m])) for m in ("a", "b")}
    model.train()
    assert not torch.allclose(trained["a"], evaluated["a"], atol=1e-3)  # the modes differ, so the test can tell them apart
    f = lambda a, b: model.head({"a": a, "b": b})
    both = f(trained["a"], trained["b"])
    o = {"a": 0.5 * (both - f(zero["a"], evaluated["b"]) + f(evaluated["a"], zero["b"])),
         "b": 0.5 * (both - f(evaluated["a"], zero["b"]) + f(zero["a"], evaluated["b"]))}
    s = torch.stack([F.cross_entropy(o[m].detach(), labels) for m in ("a", "b")])
    k = torch.exp(torch.exp(torch.tensor([0.5, -0.5])) - torch.exp(s.flip(0) - s))  # alpha 1, rbar from (1.1, 1.6)
    fused = o["a"] + o["b"]
    g = torch.autograd.grad(F.cross_entropy(fused, labels), fused, retain_graph=True)[0]
    (k[0] * (o["a"] * g).sum() + k[1] * (o["b"] * g).sum()).backward()
    expected, statistics = gradients(model), {k: v.clone() for k, v in model.state_dict().items()}

    model.load_state_dict(before)
    model.zero_grad()
    output = method.loss(model, inputs, labels, StepInfo(0))
    assert torch.allclose(output.saved["scores"], s, rtol=1e-4, atol=1e-5)
    assert torch.allclose(output.saved["coefficients"], k, rtol=1e-4)
    method.backward(model, output)
    assert_same_gradients(gradients(model), expected)
    assert all(torch.equal(model.state_dict()[key], statistics[key]) for key in statistics)  # running statistics: one train pass
    assert all(module.training for module in model.modules())  # every module back in train mode


def test_agm_coefficients_are_one_before_the_window_and_keep_their_last_value_after_it(tiny_config):
    bundle = prototype_bundle({"a": 3.0, "b": 1.0}, {"a": 8, "b": 8})
    method = build_method(tiny_config("method.name=agm", "method.options.start_epoch=1", "method.options.end_epoch=2"), bundle.spec)
    model = method.build_model().train()
    applied = []
    for epoch, start in ((0, 0), (1, 32), (2, 64), (3, 96), (5, 128)):
        inputs, labels = bundle.splits["train"].__getitems__(list(range(start, start + 32)))
        output = method.loss(model, inputs, labels, StepInfo(epoch))
        model.zero_grad()
        method.backward(model, output)
        applied.append(output.saved["coefficients"].clone())
    assert applied[0].tolist() == [1.0, 1.0]  # before the window
    assert (applied[1] != 1).all() and (applied[2] != applied[1]).all()  # recomputed inside it
    assert torch.equal(applied[3], applied[2]) and torch.equal(applied[4], applied[2])  # after it: the window's last
    assert torch.equal(method.state_dict()["coefficients"], applied[2])  # in the checkpointed state


def test_agm_speeds_up_the_weak_encoder_while_the_strong_one_pulls_ahead(tiny_config):
    bundle = imbalanced_bundle()
    naive, _, start = train_by_hand("naive", bundle, tiny_config)
    agm, logs, _ = train_by_hand("agm", bundle, tiny_config)  # 30 epochs x 25 steps, modulated for the first 21
    modulated = logs[: 21 * 25]
    mean = lambda key: sum(step[key] for step in modulated) / len(modulated)
    assert mean("score_b") > mean("score_a")  # b is the weak modality
    assert mean("coeff_b") > 1 > mean("coeff_a"), (mean("coeff_a"), mean("coeff_b"))
    moved = lambda model: torch.cat([p.detach().reshape(-1) for p in model.encoders["b"].parameters()]).sub(start["b"]).norm()
    assert moved(agm) > 1.1 * moved(naive)  # the weak encoder travels further than under naive training
    naive_b, agm_b = probe(naive, bundle, "b"), probe(agm, bundle, "b")
    assert agm_b > naive_b + 0.02, (naive_b, agm_b)


# ---------------------------------------------------------------- both, through the one loop


@pytest.mark.parametrize("name, state", [("pmr", ["prototypes", "estimates"]), ("agm", ["running_scores", "steps", "coefficients"])])
def test_trains_in_the_loop_and_checkpoints_its_state(tmp_path, tiny_config, name, state):
    result = train(tiny_config(f"method.name={name}", "train.epochs=2"), tmp_path / name)
    assert 0 <= result["test_acc"] <= 1 and result["epochs_run"] == 2
    saved = load_checkpoint(RunDir(tmp_path / name).last)["method"]
    assert set(state) <= set(saved)
    steps_per_epoch = math.ceil(300 / 128)
    if name == "pmr":
        assert saved["estimates"].item() == 2 and saved["prototypes"].abs().sum() > 0
    else:
        assert saved["steps"].item() == 2 * steps_per_epoch and (saved["running_scores"] > 0).all()


def test_need_two_modalities(tmp_path, tiny_config):
    from latefusion.errors import ConfigError
    bundle = prototype_bundle({"a": 1.0}, {"a": 8})
    for name in ("pmr", "agm"):
        with pytest.raises(ConfigError, match="at least 2 modalities"):
            train(tiny_config(f"method.name={name}"), tmp_path / name, bundle=bundle)


def test_pipeline_and_demo_include_them(tmp_path, tiny_config):
    from latefusion.cli import parse_methods
    assert {"pmr", "agm"} <= set(baseline_methods()) and {"pmr", "agm"} <= set(parse_methods("all"))
    summary = run_pipeline(tiny_config("train.epochs=1"), tmp_path / "demo", methods=["pmr", "agm"], log=lambda *_: None)
    for name in ("pmr", "agm"):
        assert 0 <= summary["methods"][name]["test_acc"] <= 1
        assert set(summary["probe"][name]) == {"a", "b"}
