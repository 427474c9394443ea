"""Each baseline as its source defines it: the behaviour each fix restored (G-Blending's weights
can recover, MLA's shared head keeps learning), and for every baseline an independent check that
recomputes the source's update from the paper's equations, written out here without the project's
code, on a fixed small batch, and compares it with what the project computes."""

import copy

import pytest
import torch
import torch.nn.functional as F

from latefusion.methods import StepInfo, StepOutput, TrainingContext, build_method
from latefusion.runs import RunDir

from test_methods_baselines import one_batch, prototype_bundle

SGD = ("optim.name=sgd", "optim.momentum=0", "optim.weight_decay=0", "optim.schedule=none")
# float32 gradients recomputed here in another order than the code's: relative 1e-4, with an absolute
# floor of 1e-6 for entries near zero (ten times the largest rounding difference these tests show).
FLOAT32 = {"rtol": 1e-4, "atol": 1e-6}


def prepared_gblend(tiny_config, bundle, tmp_path, *overrides):
    method = build_method(tiny_config("method.name=gblend", *overrides), bundle.spec)
    model = method.build_model()
    context = TrainingContext(method.config, bundle, RunDir(tmp_path / "run"), torch.device("cpu"))
    method.prepare(model, context)
    return method, model, context


def tensors(split):
    return split.__getitems__(list(range(len(split))))


# ---------------------------------------------------------------- G-Blending


def test_gblend_weight_driven_to_zero_recovers_when_the_modality_generalises(tmp_path, tiny_config):
    torch.manual_seed(0)
    options = ("method.options.every=2", "method.options.holdout=0.2", "data.batch_size=32", "optim.lr=0.01")
    # Stage 1: b is label-free noise in many dimensions: its copy only overfits, so it gets no weight.
    noise = prototype_bundle({"a": 2.0, "b": 0.0}, {"a": 8, "b": 64}, n_train=300)
    method, model, context = prepared_gblend(tiny_config, noise, tmp_path, *options)
    method.on_epoch_start(0, model, context)
    assert method.weights[1] < 0.02, method.weights
    method.weights.copy_(torch.tensor([0.0, 0.0, 1.0]))  # G-Blending at its naive-fusion corner
    # Stage 2: b starts to carry the label. The model trains a super-epoch with b's head weighted 0
    # (its head gets no gradient, which is what kept the old estimate at 0 for good) ...
    informative = prototype_bundle({"a": 2.0, "b": 3.0}, {"a": 8, "b": 64}, n_train=1000, seed=1)
    method.prepare(model, TrainingContext(method.config, informative, context.run, context.device))
    head_b = method.unimodal_heads["b"].weight.detach().clone()
    optimizer = torch.optim.AdamW([*model.parameters(), *method.parameters()], lr=0.003, weight_decay=0)
    for _ in range(2):
        for start in range(0, 200, 32):
            inputs, labels = method.training_part.__getitems__(list(range(start, start + 32)))
            optimizer.zero_grad()
            method.backward(model, method.loss(model, inputs, labels, StepInfo(2)))
            optimizer.step()
    assert torch.equal(method.unimodal_heads["b"].weight, head_b)  # b's head did not learn
    # ... and the next estimate, from copies each trained on its own loss, gives b weight again.
    method.on_epoch_start(2, model, context)
    assert method.weights[1] > 0.2, (method.weights, method.gain, method.overfitting)
    assert method.gain[1] > 0


def test_gblend_independent_check_of_the_paper_estimate(tmp_path, tiny_config):
    """G and O of throw-away copies trained for a super-epoch (full-batch SGD, so the batch order
    does not matter), w ~ G / O^2, computed here from the paper's definitions."""
    torch.manual_seed(0)
    bundle = prototype_bundle({"a": 2.0, "b": 0.5}, {"a": 8, "b": 8}, n_train=100)
    method, model, context = prepared_gblend(tiny_config, bundle, tmp_path, *SGD, "optim.lr=0.5", "data.batch_size=512",
                                             "method.options.every=3", "method.options.holdout=0.2")
    lr, epochs, eps = 0.5, 3, method.options.eps
    (x_t, y_t), (x_v, y_v) = (tensors(s) for s in method.measured)
    x_train, y_train = tensors(method.training_part)

    def run(parameters, logits):
        def losses():
            with torch.no_grad():
                return F.cross_entropy(logits(x_t), y_t).item(), F.cross_entropy(logits(x_v), y_v).item()
        (t0, v0) = losses()
        for _ in range(epochs):  # plain gradient descent on the copy's own loss
            grads = torch.autograd.grad(F.cross_entropy(logits(x_train), y_train), parameters)
            with torch.no_grad():
                for p, g in zip(parameters, grads):
                    p -= lr * g
        (t1, v1) = losses()
        gain = v0 - v1
        overfitting = (v1 - t1) - (v0 - t0)
        return max(gain, 0.0) / (overfitting**2 + eps)

    raw = []
    for m in ("a", "b"):
        encoder, head = copy.deepcopy(model.encoders[m]), copy.deepcopy(method.unimodal_heads[m])
        raw.append(run([*encoder.parameters(), *head.parameters()], lambda x, e=encoder, h=head, m=m: h(e(x[m]))))
    fused = copy.deepcopy(model)
    raw.append(run(list(fused.parameters()), fused))
    expected = torch.tensor(raw) / sum(raw)

    method.on_epoch_start(0, model, context)
    # weights in [0, 1] from losses of float32 copies trained in another order: absolute 1e-4
    assert torch.allclose(method.weights, expected, atol=1e-4), (method.weights, expected)
    assert expected.min() < 0.8 * expected.max()  # the heads do get different weights


# ---------------------------------------------------------------- MLA


def test_mla_shared_head_keeps_learning_over_20k_projection_updates(tiny_config):
    """The official projector (never forgetting) shrinks the head's update toward zero as training
    goes on; ours keeps it within 10x of its first epoch's."""
    bundle = prototype_bundle({"a": 1.0, "b": 1.0}, {"a": 4, "b": 4})
    method = build_method(tiny_config("method.name=mla", "model.feature_dim=8"), bundle.spec)
    head = torch.nn.Linear(8, 4)
    model = torch.nn.Module()
    model.head = head
    g = torch.Generator().manual_seed(0)
    centre = {m: torch.rand(8, generator=g) for m in range(2)}  # each modality's typical (ReLU-like) features
    epoch, sizes = 500, []
    for step in range(20_000):
        m = step % 2
        features = (centre[m] + 0.5 * torch.randn(16, 8, generator=g)).relu()
        gradient = torch.randn(4, 16, generator=g) @ features / 16  # (p - y)^T x, as a linear head's
        head.weight.grad = None
        loss = (head.weight * gradient).sum()
        method.backward(model, StepOutput(loss, {}, {"mean_feature": features.mean(0), "modality": m}))
        sizes.append(head.weight.grad.norm() / gradient.norm())
    sizes = torch.stack(sizes).view(-1, epoch).mean(1)
    assert sizes[-1] > sizes[0] / 10, (sizes[0], sizes[-1])
    eigenvalues = torch.linalg.eigvalsh(method.projector)
    assert eigenvalues.min() > 0.005 and eigenvalues.max() <= 1 + 1e-5


def test_mla_independent_check_of_the_projected_head_gradient(tiny_config):
    """Step on a, then on b: b's head gradient is its plain gradient times
    P = (1 - forget) alpha (alpha I + r r^T)^-1 + forget I, r = a's normalised mean feature (OWM's
    closed form, not the recursive update), and a's is its plain gradient."""
    bundle = prototype_bundle({"a": 2.0, "b": 2.0}, {"a": 16, "b": 16})
    inputs, labels = one_batch(bundle, 64)
    method = build_method(tiny_config("method.name=mla"), bundle.spec)
    model = method.build_model().train()
    reference = copy.deepcopy(model)
    alpha, forget = method.options.projection_alpha, method.options.projection_forget
    head_gradients = []
    for substep in range(2):
        model.zero_grad(set_to_none=True)
        method.backward(model, method.loss(model, inputs, labels, StepInfo(0, substep)))
        head_gradients.append(model.head.weight.grad.clone())

    def plain(m):
        return torch.autograd.grad(F.cross_entropy(reference.head(reference.encoders[m](inputs[m])), labels), reference.head.weight)[0]

    r = reference.encoders["a"](inputs["a"]).detach().mean(0)
    r = r / r.norm()
    eye = torch.eye(len(r))
    projector = (1 - forget) * alpha * torch.linalg.inv(alpha * eye + torch.outer(r, r)) + forget * eye
    assert torch.allclose(head_gradients[0], plain("a"), **FLOAT32)
    assert torch.allclose(head_gradients[1], plain("b") @ projector, rtol=1e-4, atol=1e-5)  # through a matrix inverse: a wider floor
    assert not torch.allclose(head_gradients[1], plain("b"), atol=1e-3)  # the projection did something


# ---------------------------------------------------------------- OGM-GE


def test_ogm_ge_modulates_what_the_official_code_modulates(tiny_config):
    from latefusion.methods.ogm_ge import modulated_parameters
    from latefusion.models.encoders import MLPEncoder, SmallCNN
    cnn = SmallCNN((3, 8, 8), 16)
    assert modulated_parameters(cnn) == [p for p in cnn.parameters() if p.dim() == 4]  # convolution weights only
    mlp = MLPEncoder((10,), 16)
    assert modulated_parameters(mlp) == [mlp.net[1].weight, mlp.net[3].weight]  # no convolutions: the weight matrices


def fitted_late_fusion(tiny_config, bundle, inputs, labels):
    """A naive late-fusion model after a few steps, so that modality a dominates."""
    torch.manual_seed(0)
    model = build_method(tiny_config("method.name=naive"), bundle.spec).build_model().train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(20):
        optimizer.zero_grad()
        F.cross_entropy(model(inputs), labels).backward()
        optimizer.step()
    return model


def shares_and_k(model, inputs, labels, alpha):
    """Each modality's share of the concat head's logits (its weight columns + half the bias), the
    summed true-class probabilities, and k = 1 - tanh(alpha * rho) for the one with rho > 1."""
    features = {m: model.encoders[m](inputs[m]) for m in ("a", "b")}
    weight, bias = model.head.linear.weight, model.head.linear.bias
    width = features["a"].shape[1]
    shares = {"a": features["a"] @ weight[:, :width].T + bias / 2, "b": features["b"] @ weight[:, width:].T + bias / 2}
    score = {m: z.softmax(1)[torch.arange(len(labels)), labels].sum().item() for m, z in shares.items()}
    rho = score["a"] / score["b"]
    if rho > 1:
        return {"a": 1 - torch.tanh(torch.tensor(alpha * rho)).item(), "b": 1.0}
    return {"a": 1.0, "b": 1 - torch.tanh(torch.tensor(alpha / rho)).item()}


def test_ogm_ge_independent_check_of_the_modulated_gradients(tiny_config):
    """Eq. 10 written out: each modality's share of the concat head's logits (its weight columns +
    half the bias), s = summed true-class probability, rho = s_a / s_b, k = 1 - tanh(alpha rho) for
    the modality with rho > 1; its encoder's weight matrices (MLP: no convolutions) get k times the
    plain gradient, the rest the plain gradient; with GE, noise of the plain gradient's std."""
    bundle = prototype_bundle({"a": 4.0, "b": 0.5}, {"a": 16, "b": 16})
    inputs, labels = one_batch(bundle)
    model = fitted_late_fusion(tiny_config, bundle, inputs, labels)
    alpha = 0.5
    k = shares_and_k(model, inputs, labels, alpha)
    assert k["a"] < 0.8  # a dominates
    names = [n for n, _ in model.named_parameters()]
    plain = dict(zip(names, torch.autograd.grad(F.cross_entropy(model(inputs), labels), list(model.parameters()))))

    def modulated(*overrides):
        method = build_method(tiny_config("method.name=ogm_ge", f"method.options.alpha={alpha}", *overrides), bundle.spec)
        model.zero_grad(set_to_none=True)
        method.backward(model, method.loss(model, inputs, labels, StepInfo(0)))
        return {n: p.grad.clone() for n, p in model.named_parameters()}

    got = modulated("method.options.noise=false")
    for name, g in plain.items():
        m = name.split(".")[1] if name.startswith("encoders.") else None
        factor = k[m] if m and name.endswith("weight") else 1.0
        assert torch.allclose(got[name], factor * g, **FLOAT32), name
    torch.manual_seed(0)
    noisy = modulated()
    big = "encoders.a.net.1.weight"
    residual = noisy[big] - k["a"] * plain[big]
    assert residual.std().item() == pytest.approx(plain[big].std().item(), rel=0.15)
    assert torch.allclose(noisy["encoders.a.net.1.bias"], plain["encoders.a.net.1.bias"], **FLOAT32)  # no noise on biases


# ---------------------------------------------------------------- MMPareto


def test_mmpareto_independent_check_of_the_integrated_gradients(tiny_config):
    """The official rule written out: cosine of the encoder's two gradients (all tensors together);
    > 0: 2 * (0.5 g_mm + 0.5 g_u); else the two-vector min-norm weights; then per tensor, scaled up
    to the norm of that tensor's summed gradient if smaller, times gamma = 1.5."""
    bundle = prototype_bundle({"a": 2.0, "b": 2.0}, {"a": 16, "b": 16})
    inputs, labels = one_batch(bundle)
    torch.manual_seed(0)
    method = build_method(tiny_config("method.name=mmpareto"), bundle.spec)
    model = method.build_model().train()
    with torch.no_grad():  # a conflict for a (its own head against its share of the fused head); none for b
        width = model.encoders["a"].out_dim
        method.unimodal_heads["a"].weight.copy_(-3 * model.head.linear.weight[:, :width])
        method.unimodal_heads["b"].weight.copy_(3 * model.head.linear.weight[:, width:])
    expected, scales = {}, []
    for m in ("a", "b"):
        params = list(model.encoders[m].parameters())
        features = model.features(inputs)
        g_mm = torch.autograd.grad(F.cross_entropy(model.head(features), labels), params, retain_graph=True)
        g_u = torch.autograd.grad(F.cross_entropy(method.unimodal_heads[m](features[m]), labels), params)
        flat_mm, flat_u = torch.cat([g.flatten() for g in g_mm]), torch.cat([g.flatten() for g in g_u])
        if F.cosine_similarity(flat_mm, flat_u, dim=0) > 0:
            w_mm = w_u = 0.5
        else:  # min over c of |c g_mm + (1 - c) g_u|^2, clipped to [0, 1]
            w_mm = ((flat_u - flat_mm) @ flat_u / (flat_mm - flat_u).pow(2).sum()).clamp(0, 1).item()
            w_u = 1 - w_mm
            assert 0 < w_mm < 1
        for a, b in zip(g_mm, g_u):
            new = 2 * w_mm * a + 2 * w_u * b
            ratio = (a + b).norm() / new.norm()
            scales.append((m, max(ratio.item(), 1.0)))
            expected.setdefault(m, []).append(1.5 * (ratio * new if ratio > 1 else new))
    output = method.loss(model, inputs, labels, StepInfo(0))
    conflict = F.cosine_similarity(*method.encoder_gradients(model, output)["a"], dim=0)
    assert conflict < 0
    method.backward(model, output)
    for m in ("a", "b"):
        for p, e in zip(model.encoders[m].parameters(), expected[m]):
            assert torch.allclose(p.grad, e, **FLOAT32)
    # Per tensor, not over the whole encoder: a's tensors were scaled by different factors.
    assert len({round(s, 4) for m, s in scales if m == "a"}) > 1, scales
