"""Each method's key step recomputed from its equations (docs/methods.md and the module docstrings,
which cite the paper and the official code), written out here in a few lines on a small seeded
batch, and compared with what the method computes: UME's combination, UMT's loss, G-Blending's
weights and blended loss, OGM-GE's coefficient over its whole window and its noise, MMPareto's
integration per tensor, MLA's test-time fusion and projector, PMR's prototypes and loss, AGM's
coefficients, gradients and running means. Every random draw is seeded.

These are the tests `scripts/mutate_methods.py` expects to catch its mutations; keep them fast.

Tolerances: float32 results computed in another order than the method's agree to a relative 1e-4
(rtol below); the absolute floors (atol) are for entries near zero, where a relative bound means
nothing: 1e-6 for gradients and losses of order 0.01 to 1, 1e-5 for sums of a few hundred terms
of order 1 (float32 rounding of such a sum is about 1e-5 at most).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from latefusion.data import DataBundle, Modality, TensorSplit
from latefusion.methods import StepInfo, TrainingContext, build_method, load_model
from latefusion.methods.gblend import blend_weights
from latefusion.methods.mmpareto import pareto_integrate
from latefusion.pipeline import method_config
from latefusion.resolve import resolve_config
from latefusion.runs import RunDir
from latefusion.train import train

RTOL, ATOL = 1e-4, 1e-6


def close(got, expected, rtol=RTOL, atol=ATOL):
    torch.testing.assert_close(got, expected, rtol=rtol, atol=atol)


def make_bundle(strengths: dict[str, float], dims: dict[str, int], *, n_train: int = 240, classes: int = 4, seed: int = 0) -> DataBundle:
    """Modality m = strengths[m] * (a unit class prototype) + unit Gaussian noise, from one seeded generator."""
    g = torch.Generator().manual_seed(seed)
    prototypes = {m: F.normalize(torch.randn(classes, dims[m], generator=g), dim=1) for m in strengths}
    splits = {}
    for split, n in (("train", n_train), ("val", 120), ("test", 120)):
        labels = torch.randint(classes, (n,), generator=g)
        inputs = {m: s * prototypes[m][labels] + torch.randn(n, dims[m], generator=g) for m, s in strengths.items()}
        splits[split] = TensorSplit(inputs, labels)
    return DataBundle("equations", [Modality(m, "vector", (dims[m],)) for m in strengths], classes, splits=splits)


def config(*overrides: str):
    return resolve_config(None, ["data.name=synthetic-unimodal", "train.epochs=1", "train.progress=false", "data.batch_size=32", *overrides])


def built(name: str, bundle: DataBundle, *overrides: str, seed: int = 0):
    """The method and its model, the model's initial weights drawn from `seed`."""
    torch.manual_seed(seed)
    method = build_method(config(f"method.name={name}", *overrides), bundle.spec)
    return method, method.build_model()


def first(bundle: DataBundle, n: int, start: int = 0, split: str = "train"):
    return bundle.splits[split].__getitems__(list(range(start, start + n)))


def grads(*modules) -> dict[str, torch.Tensor]:
    return {f"{i}.{name}": p.grad.clone() for i, module in enumerate(modules) for name, p in module.named_parameters() if p.grad is not None}


def zero(*modules) -> None:
    for module in modules:
        module.zero_grad(set_to_none=True)


def assert_same_gradients(got: dict, expected: dict) -> None:
    assert got.keys() == expected.keys()
    for name in got:
        close(got[name], expected[name])


# ---------------------------------------------------------------- UME


def test_ume_predicts_the_mean_of_its_members_probabilities():
    """docs/methods.md, UME: predictions combined by the mean of the members' softmax probabilities
    (`combine: prob`), or the mean of their logits (`combine: logit`)."""
    bundle = make_bundle({"a": 1.0, "b": 1.0}, {"a": 8, "b": 8})
    inputs, _ = first(bundle, 64)
    for combine in ("prob", "logit"):
        _, model = built("ume", bundle, "method.options.members.a=x", "method.options.members.b=y", f"method.options.combine={combine}")
        with torch.no_grad():
            for member in model.members.values():  # confident members that disagree, so the rule matters
                member.head.linear.weight.mul_(6)
            logits = [model.members[m](inputs) for m in ("a", "b")]
            scores = model(inputs)
        if combine == "prob":
            mean_probability = (logits[0].softmax(1) + logits[1].softmax(1)) / 2
            close(scores.exp(), mean_probability)  # the score is the log of the mean probability
            # The members disagree on some samples, and max and mean of probabilities choose differently there.
            largest = torch.maximum(logits[0].softmax(1), logits[1].softmax(1))
            assert (largest.argmax(1) != mean_probability.argmax(1)).any()
        else:
            close(scores, (logits[0] + logits[1]) / 2)


# ---------------------------------------------------------------- UMT


@pytest.fixture(scope="module")
def umt_setup(tmp_path_factory):
    """Two uni-modal teacher runs (one short epoch each) on a small seeded data set."""
    folder = tmp_path_factory.mktemp("umt")
    bundle = make_bundle({"a": 2.0, "b": 1.0}, {"a": 8, "b": 8}, n_train=160)
    base = config("model.feature_dim=16")
    teachers = {}
    for m in ("a", "b"):
        teachers[m] = str(folder / f"unimodal-{m}")
        train(method_config(base, "unimodal", {"modality": m}), teachers[m], bundle=bundle)
    return folder, bundle, base, teachers


@pytest.mark.parametrize("options", [
    {"weight": 0.7},                                                # ours: projected, from the teacher
    {"weight": 10.0, "distill": "plain", "init": "scratch"},        # the paper's form, the recipes' weight
], ids=["projected-teacher", "plain-scratch"])
def test_umt_loss_is_fused_cross_entropy_plus_weighted_distillation(umt_setup, options):
    """L = CE(fused logits, y) + weight * sum_m MSE(g_m(f_m(x_m)), t_m(x_m)) (docs/methods.md, UMT):
    g_m a learned linear map (projected) or the identity (plain); t_m the frozen teacher encoder."""
    folder, bundle, base, teachers = umt_setup
    cfg = method_config(base, "umt", {"teachers": teachers, **options})
    torch.manual_seed(1)
    method = build_method(cfg, bundle.spec)
    model = method.build_model().train()
    run = RunDir(folder / f"umt-{options.get('distill', 'projected')}")
    split = method.prepare(model, TrainingContext(cfg, bundle, run, torch.device("cpu")))
    inputs, labels = split.__getitems__(list(range(48)))
    assert {"teacher:a", "teacher:b"} <= set(inputs)  # the cached teacher features travel with the batch
    frozen = {m: load_model(RunDir(teachers[m])).encoders[m].eval() for m in ("a", "b")}
    if options.get("init", "teacher") == "teacher":
        for m in ("a", "b"):  # students start from their teachers
            for p, q in zip(model.encoders[m].parameters(), frozen[m].parameters()):
                assert torch.equal(p, q)

    projectors = method.projectors
    zero(model, projectors)
    features = {m: model.encoders[m](inputs[m]) for m in ("a", "b")}
    ce = F.cross_entropy(model.head.linear(torch.cat([features["a"], features["b"]], 1)), labels)
    distill = 0
    for m in ("a", "b"):
        with torch.no_grad():
            target = frozen[m](inputs[m])
        close(inputs[f"teacher:{m}"], target, atol=1e-5)
        student = features[m] if options.get("distill") == "plain" else features[m] @ projectors[m].weight.T + projectors[m].bias
        distill = distill + ((student - target) ** 2).mean()
    expected_loss = ce + options["weight"] * distill
    assert distill.item() > 0.01 * ce.item()  # the distillation term is there to be checked
    expected_loss.backward()
    expected = grads(model, projectors)

    zero(model, projectors)
    output = method.loss(model, inputs, labels, StepInfo(0))
    method.backward(model, output)
    close(output.loss, expected_loss.detach())
    assert_same_gradients(grads(model, projectors), expected)
    assert all(p.grad is None for t in method.teachers.values() for p in t.parameters())  # teachers stay frozen


# ---------------------------------------------------------------- G-Blending


def test_gblend_weights_are_generalisation_over_overfitting_squared():
    """Wang et al. (CVPR 2020), online G-Blend: G = V_N - V_{N+n}, O = (V_{N+n} - T_{N+n}) - (V_N - T_N),
    w proportional to G / O^2 (negative G counting as 0, eps added to O^2), normalised to sum 1."""
    g = torch.Generator().manual_seed(3)
    eps = 1e-3
    for _ in range(50):
        start = 0.5 + torch.rand(2, 4, generator=g)          # rows: (train loss, held-out loss); 4 heads
        end = start - 0.4 * torch.rand(2, 4, generator=g) + 0.1 * torch.rand(2, 4, generator=g)
        raw = []
        for h in range(4):
            (t0, v0), (t1, v1) = start[:, h].tolist(), end[:, h].tolist()
            gain = v0 - v1
            overfitting = (v1 - t1) - (v0 - t0)
            raw.append(max(gain, 0.0) / (overfitting**2 + eps))
        w = blend_weights(start, end, eps)
        if sum(raw) == 0:
            assert w is None
        else:
            close(w, torch.tensor(raw) / sum(raw))


def test_gblend_loss_blends_every_heads_cross_entropy_with_its_weight():
    """L = w_fused CE(fused head) + sum_m w_m CE(head_m)."""
    bundle = make_bundle({"a": 2.0, "b": 0.5}, {"a": 8, "b": 8})
    method, model = built("gblend", bundle)
    method.weights.copy_(torch.tensor([0.15, 0.25, 0.6]))  # a, b, fused
    with torch.no_grad():  # heads of unequal confidence, so that their cross-entropies differ
        method.unimodal_heads["a"].weight.mul_(10)
        model.head.linear.weight.mul_(4)
    inputs, labels = first(bundle, 64)
    features = {m: model.encoders[m](inputs[m]) for m in ("a", "b")}
    terms = [F.cross_entropy(method.unimodal_heads[m](features[m]), labels) for m in ("a", "b")]
    terms.append(F.cross_entropy(model.head.linear(torch.cat([features["a"], features["b"]], 1)), labels))
    expected = 0.15 * terms[0] + 0.25 * terms[1] + 0.6 * terms[2]
    close(method.loss(model, inputs, labels, StepInfo(0)).loss, expected)
    assert abs(expected.item() - sum(terms).item() / 3) > 1e-3  # other weights would give another loss


# ---------------------------------------------------------------- OGM-GE


def ogm_expected_coefficients(model, inputs, labels, alpha: float) -> dict[str, float]:
    """Peng et al. (CVPR 2022) Eq. 10: s_m = sum over the batch of softmax(modality m's share of the
    concat head's logits: its weight columns + half the bias)[y]; rho_a = s_a / s_b, rho_b = 1 / rho_a;
    k_m = 1 - tanh(alpha rho_m) if rho_m > 1 else 1."""
    with torch.no_grad():
        features = {m: model.encoders[m](inputs[m]) for m in ("a", "b")}
        weight, bias = model.head.linear.weight, model.head.linear.bias
        width = features["a"].shape[1]
        shares = {"a": features["a"] @ weight[:, :width].T + bias / 2, "b": features["b"] @ weight[:, width:].T + bias / 2}
        s = {m: z.softmax(1)[torch.arange(len(labels)), labels].sum().item() for m, z in shares.items()}
    rho = {"a": s["a"] / s["b"], "b": s["b"] / s["a"]}
    return {m: 1 - math.tanh(alpha * r) if r > 1 else 1.0 for m, r in rho.items()}


def test_ogm_ge_coefficient_applies_on_every_epoch_of_its_window_and_on_no_other():
    """The official code's window, start_epoch <= epoch <= end_epoch (both inclusive): inside it the
    modulated weights (MLP encoders: the weight matrices) get k_m times the plain gradient, every other
    parameter its plain gradient; outside it every parameter gets the plain gradient."""
    bundle = make_bundle({"a": 3.0, "b": 0.5}, {"a": 8, "b": 8})
    alpha = 0.6
    method, model = built("ogm_ge", bundle, f"method.options.alpha={alpha}", "method.options.noise=false",
                          "method.options.start_epoch=2", "method.options.end_epoch=5")
    model.train()
    inputs, labels = first(bundle, 64)
    k = ogm_expected_coefficients(model, inputs, labels, alpha)
    assert min(k.values()) < 0.7 and max(k.values()) == 1.0  # one modality is slowed, and clearly
    zero(model)
    F.cross_entropy(model(inputs), labels).backward()
    plain = grads(model)
    for epoch in range(0, 8):
        zero(model)
        output = method.loss(model, inputs, labels, StepInfo(epoch))
        method.backward(model, output)
        got = grads(model)
        inside = 2 <= epoch <= 5
        for name, g in plain.items():
            parts = name.split(".")  # "0.encoders.<m>.net.<i>.weight"
            modulated = inside and parts[1] == "encoders" and g.dim() == 2
            close(got[name], (k[parts[2]] if modulated else 1.0) * g, atol=1e-7)
        for m in ("a", "b"):  # the logged coefficient is Eq. 10's, inside the window or not
            assert output.logs[f"coeff_{m}"].item() == pytest.approx(k[m], rel=RTOL)


def test_ogm_ge_noise_has_the_spread_of_the_unmodulated_gradient():
    """Generalisation enhancement (official code): noise N(0, std(grad)^2), the std of the entries of
    the gradient before it is scaled by k. With alpha = 2, k <= 1 - tanh(2) = 0.036, so the spread
    of the scaled gradient would be over 25 times smaller. The weight checked has 128 x 8 entries: the sample std
    of 1024 Gaussian draws is within 3 % of the true one with overwhelming probability, so 10 % is safe."""
    bundle = make_bundle({"a": 3.0, "b": 0.5}, {"a": 8, "b": 8})
    method, model = built("ogm_ge", bundle, "method.options.alpha=2.0")
    model.train()
    inputs, labels = first(bundle, 64)
    k = ogm_expected_coefficients(model, inputs, labels, 2.0)
    m = min(k, key=k.get)
    assert k[m] < 0.1
    zero(model)
    F.cross_entropy(model(inputs), labels).backward()
    plain = model.encoders[m].net[1].weight.grad.clone()
    zero(model)
    torch.manual_seed(7)
    method.backward(model, method.loss(model, inputs, labels, StepInfo(0)))
    residual = model.encoders[m].net[1].weight.grad - k[m] * plain
    assert residual.std().item() == pytest.approx(plain.std().item(), rel=0.1)
    assert abs(residual.mean().item()) < 0.1 * plain.std().item()


# ---------------------------------------------------------------- MMPareto


def reference_integration(g_mm: torch.Tensor, g_u: torch.Tensor, sizes: list[int], gamma: float) -> tuple[torch.Tensor, bool]:
    """MMPareto (Wei & Hu, ICML 2024; official `MMPareto.py`), in float64: cosine > 0 -> weights 1/2, 1/2;
    else the two-gradient min-norm weights (c, 1 - c); both times 2. Then each tensor's part scaled up
    to the norm of its summed gradient if smaller, times gamma. Also returns whether the factor 2
    decided a tensor's size (its integrated part longer than its summed part, so not rescaled)."""
    a, b = g_mm.double(), g_u.double()
    if a @ b > 0:
        w_mm = w_u = 0.5
    else:  # min over c in [0, 1] of |c a + (1 - c) b|^2: the derivative 2 (a - b).(b + c (a - b)) = 0
        w_mm = float(((b - a) @ b / ((a - b) @ (a - b))).clamp(0, 1))
        w_u = 1 - w_mm
    d = 2 * (w_mm * a + w_u * b)
    out, decided = [], False
    for d_t, s_t in zip(d.split(sizes), (a + b).split(sizes)):
        if d_t.norm() < s_t.norm():
            d_t = d_t * s_t.norm() / d_t.norm()
        elif w_mm != 0.5:
            decided = True
        out.append(d_t)
    return gamma * torch.cat(out), decided


def test_mmpareto_integration_per_tensor_follows_the_official_rule():
    g = torch.Generator().manual_seed(5)
    sizes = [6, 3, 10, 1]
    conflicts = decided = 0
    for _ in range(300):
        g_mm = torch.randn(sum(sizes), generator=g) * torch.rand(sum(sizes), generator=g) * 3
        mix = torch.rand((), generator=g).item()  # from agreeing to strongly conflicting gradients
        g_u = (0.5 - 2 * mix) * g_mm + torch.randn(sum(sizes), generator=g) * torch.rand(sum(sizes), generator=g) * 3
        expected, factor_two = reference_integration(g_mm, g_u, sizes, gamma=1.5)
        conflicts += bool(g_mm @ g_u <= 0)
        decided += factor_two
        close(pareto_integrate(g_mm, g_u, 1.5, sizes), expected.float(), atol=1e-5)
    assert conflicts > 50 and decided > 20  # both branches, and tensors whose size the factor 2 sets


# ---------------------------------------------------------------- MLA


@pytest.mark.parametrize("modalities", [("a", "b"), ("a", "b", "c")])
def test_mla_test_time_fusion_weights_each_sample_by_its_modalities_entropies(modalities):
    """Zhang et al. (CVPR 2024): w_m = softmax over modalities of -H(softmax(logits_m)), per sample;
    fused = sum_m w_m logits_m."""
    bundle = make_bundle({m: 1.0 + i for i, m in enumerate(modalities)}, {m: 8 for m in modalities})
    _, model = built("mla", bundle, "model.feature_dim=16")
    with torch.no_grad():
        model.head.weight.mul_(15)  # confident enough that the entropies differ
    inputs, _ = first(bundle, 64, split="test")
    with torch.no_grad():
        z = torch.stack([model.head(model.encoders[m](inputs[m])) for m in modalities])  # (M, batch, classes)
        p = z.softmax(-1)
        entropy = -(p * p.log()).sum(-1)
        w = torch.exp(-entropy) / torch.exp(-entropy).sum(0)
        close(model(inputs), (w[..., None] * z).sum(0), atol=1e-5)
    assert (w - 1 / len(modalities)).abs().max() > 0.1  # the weights are far from equal


def mla_steps(method, model, bundle, rounds: int):
    """`rounds` batches, each with a step on a then on b (no optimiser step, so the model is fixed);
    returns the normalised mean features each modality gave, and b's plain and projected head
    gradients on the last batch."""
    absorbed = {"a": [], "b": []}
    for r in range(rounds):
        inputs, labels = first(bundle, 32, start=32 * r)
        for substep, m in enumerate(("a", "b")):
            zero(model)
            method.backward(model, method.loss(model, inputs, labels, StepInfo(0, substep)))
            with torch.no_grad():
                mean = model.encoders[m](inputs[m]).mean(0).double()
            absorbed[m].append(mean / mean.norm())
    projected = model.head.weight.grad.clone()
    zero(model)
    F.cross_entropy(model.head(model.encoders["b"](inputs["b"])), labels).backward()
    return absorbed, model.head.weight.grad.clone(), projected


def test_mla_projector_without_forgetting_is_the_owm_closed_form():
    """OWM (the official GSPlugin's recursion) with P_0 = I absorbs r_1 .. r_t into
    P = alpha (alpha I + sum_t r_t r_t^T)^-1 (Sherman-Morrison, computed here in float64 with a
    matrix inverse); b's projector holds a's features, a's b's; b's head gradient is grad P_b."""
    bundle = make_bundle({"a": 2.0, "b": 2.0}, {"a": 8, "b": 8})
    method, model = built("mla", bundle, "model.feature_dim=12", "method.options.projection_forget=0", "method.options.projection_alpha=0.3")
    model.train()
    absorbed, plain, projected = mla_steps(method, model, bundle, rounds=5)
    eye = torch.eye(12, dtype=torch.float64)
    closed = {m: 0.3 * torch.linalg.inv(0.3 * eye + sum(torch.outer(r, r) for r in absorbed[m])) for m in ("a", "b")}
    close(method.projector[1].double(), closed["a"], atol=1e-5)  # b's projector: a's features
    close(method.projector[0].double(), closed["b"], atol=1e-5)  # a's projector: b's features
    # The last b step came after the last a step's features were absorbed: all five shape it.
    close(projected, (plain.double() @ closed["a"]).float(), atol=1e-6)


def test_mla_projector_with_forgetting_follows_the_documented_recursion():
    """P <- P - (P r)(P r)^T / (alpha + r^T P r), then P <- (1 - forget) P + forget I, in float64."""
    bundle = make_bundle({"a": 2.0, "b": 2.0}, {"a": 8, "b": 8})
    method, model = built("mla", bundle, "model.feature_dim=12", "method.options.projection_forget=0.05")
    model.train()
    absorbed, plain, projected = mla_steps(method, model, bundle, rounds=6)
    alpha, forget = method.options.projection_alpha, 0.05
    expected = {}
    for m in ("a", "b"):
        P = torch.eye(12, dtype=torch.float64)
        for r in absorbed[m]:
            P = P - torch.outer(P @ r, P @ r) / (alpha + r @ P @ r)
            P = (1 - forget) * P + forget * torch.eye(12, dtype=torch.float64)
        expected[m] = P
    close(method.projector[1].double(), expected["a"], atol=1e-5)
    close(method.projector[0].double(), expected["b"], atol=1e-5)
    close(projected, (plain.double() @ expected["a"]).float(), atol=1e-6)


# ---------------------------------------------------------------- PMR


def test_pmr_prototypes_and_loss_follow_the_equations():
    """Fan et al. (CVPR 2023) as the module docstring gives them: c_k = class mean of the encoder's
    features over train, then (1 - momentum) * new + momentum * old; p = softmax(-|z - c|) (Euclidean,
    not squared); S_m = sum of p[y] over the batch; rho = S_a / S_b; beta = clip(1/rho - 1, 0, 1),
    gamma = clip(rho - 1, 0, 1) per modality; L = CE + alpha sum_m beta_m PCE_m - mu sum_m gamma_m PER_m."""
    bundle = make_bundle({"a": 3.0, "b": 1.0}, {"a": 8, "b": 8}, n_train=160)
    method, model = built("pmr", bundle, "method.options.alpha=0.7", "method.options.mu=0.3", "model.feature_dim=16")
    cfg = method.config
    context = TrainingContext(cfg, bundle, None, torch.device("cpu"))
    method.prepare(model, context)
    with torch.no_grad():  # a's features spread wider than b's, so that a leads clearly
        model.encoders["a"].net[3].weight.mul_(6)
    x, y = bundle.splits["train"].inputs, bundle.splits["train"].labels

    def class_means():
        with torch.no_grad():
            return torch.stack([torch.stack([model.encoders[m](x[m])[y == k].mean(0) for k in range(4)]) for m in ("a", "b")])

    method.on_epoch_start(0, model, context)
    old = class_means()
    close(method.prototypes, old, atol=1e-5)
    g = torch.Generator().manual_seed(11)
    with torch.no_grad():  # the encoders move; the next estimate keeps momentum 0.2 of the old prototypes
        for p in model.encoders.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    method.on_epoch_start(1, model, context)
    close(method.prototypes, 0.8 * class_means() + 0.2 * old, atol=1e-5)

    inputs, labels = first(bundle, 64)
    model.train()
    zero(model)
    features = {m: model.encoders[m](inputs[m]) for m in ("a", "b")}
    p = {m: (-(features[m][:, None, :] - method.prototypes[i][None]).pow(2).sum(-1).sqrt()).softmax(1) for i, m in enumerate(("a", "b"))}
    rows = torch.arange(64)
    S = {m: p[m][rows, labels].sum().item() for m in p}
    rho = {"a": S["a"] / S["b"], "b": S["b"] / S["a"]}
    beta = {m: min(max(1 / r - 1, 0.0), 1.0) for m, r in rho.items()}
    gamma = {m: min(max(r - 1, 0.0), 1.0) for m, r in rho.items()}
    assert max(gamma.values()) > 0.1 and max(beta.values()) > 0.1  # a leads clearly: both terms act
    pce = {m: -p[m][rows, labels].log().mean() for m in p}
    per = {m: -(p[m] * p[m].log()).sum(1).mean() for m in p}
    ce = F.cross_entropy(model.head.linear(torch.cat([features["a"], features["b"]], 1)), labels)
    expected_loss = ce + 0.7 * sum(beta[m] * pce[m] for m in p) - 0.3 * sum(gamma[m] * per[m] for m in p)
    expected_loss.backward()
    expected = grads(model)

    zero(model)
    output = method.loss(model, inputs, labels, StepInfo(1))
    method.backward(model, output)
    close(output.loss, expected_loss.detach())
    for m in ("a", "b"):
        assert output.logs[f"beta_{m}"].item() == pytest.approx(beta[m], rel=RTOL, abs=ATOL)
        assert output.logs[f"gamma_{m}"].item() == pytest.approx(gamma[m], rel=RTOL, abs=ATOL)
    assert_same_gradients(grads(model), expected)


# ---------------------------------------------------------------- AGM


def test_agm_steps_follow_the_equations_and_keep_the_running_means():
    """Li et al. (ICCV 2023), official code for two modalities: o_a = (f(a,b) - f(0,b) + f(a,0)) / 2;
    s_m = mean of -log max(softmax(o_m)[y], 1e-8); r_m = exp(s_other - s_m); rbar_m the same from the
    running means sbar (the mean of all earlier steps' scores; 0 before the first step); k_m =
    exp(alpha min(rbar_m - r_m, clip)); the gradient through o_m is multiplied by k_m; then sbar
    takes this step's scores. Five steps on different batches."""
    bundle = make_bundle({"a": 3.0, "b": 1.0}, {"a": 8, "b": 8})
    alpha = 0.8
    method, model = built("agm", bundle, f"method.options.alpha={alpha}", "model.feature_dim=16")
    model.train()
    history = []
    for step in range(5):
        inputs, labels = first(bundle, 32, start=32 * step)
        zero(model)
        features = {m: model.encoders[m](inputs[m]) for m in ("a", "b")}
        zeros = {m: model.encoders[m](torch.zeros_like(inputs[m][:1])).expand(32, -1) for m in ("a", "b")}
        f = lambda a, b: model.head.linear(torch.cat([a, b], 1))
        both = f(features["a"], features["b"])
        o = {"a": (both - f(zeros["a"], features["b"]) + f(features["a"], zeros["b"])) / 2,
             "b": (both - f(features["a"], zeros["b"]) + f(zeros["a"], features["b"])) / 2}
        s = {m: -o[m].detach().softmax(1)[torch.arange(32), labels].clamp_min(1e-8).log().mean().item() for m in o}
        sbar = {m: sum(h[m] for h in history) / len(history) if history else 0.0 for m in o}
        r = {"a": math.exp(s["b"] - s["a"]), "b": math.exp(s["a"] - s["b"])}
        rbar = {"a": math.exp(sbar["b"] - sbar["a"]), "b": math.exp(sbar["a"] - sbar["b"])}
        k = {m: math.exp(alpha * min(rbar[m] - r[m], 10.0)) for m in o}
        fused = o["a"] + o["b"]
        g = torch.autograd.grad(F.cross_entropy(fused, labels), fused, retain_graph=True)[0]
        (k["a"] * (o["a"] * g).sum() + k["b"] * (o["b"] * g).sum()).backward()
        expected = grads(model)

        zero(model)
        output = method.loss(model, inputs, labels, StepInfo(0))
        close(output.loss, F.cross_entropy(fused, labels).detach())  # forward: the plain fused model
        for m in ("a", "b"):
            assert output.logs[f"score_{m}"].item() == pytest.approx(s[m], rel=RTOL)
            assert output.logs[f"coeff_{m}"].item() == pytest.approx(k[m], rel=RTOL)
        method.backward(model, output)
        assert_same_gradients(grads(model), expected)
        history.append(s)
        close(method.running_scores, torch.tensor([sum(h[m] for h in history) / len(history) for m in ("a", "b")]))
        assert method.steps.item() == step + 1
    assert abs(k["a"] - 1) > 0.01  # the last step was modulated
