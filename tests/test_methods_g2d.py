"""G2D (methods/g2d.py) recomputed from its equations (the module docstring, from the official code
rAIson-Lab/G2D): the loss CE + feature MSE + T^2 KL from each teacher's logits, and the sequential
modality prioritisation that switches off the encoder of the most confident teacher's modality,
written out here in a few lines on a fixed small batch, not by calling the method's helpers.

Tolerances as in tests/test_methods_equations.py: float32 computed in another order, relative 1e-4.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from latefusion.data import DataBundle, Modality, TensorSplit
from latefusion.errors import ConfigError
from latefusion.methods import StepInfo, TrainingContext, build_method, load_model
from latefusion.methods.g2d import prioritised
from latefusion.pipeline import method_config
from latefusion.resolve import resolve_config
from latefusion.runs import RunDir
from latefusion.train import train

RTOL, ATOL = 1e-4, 1e-6


def close(got, expected):
    torch.testing.assert_close(got, expected, rtol=RTOL, atol=ATOL)


def bundle_of(strengths: dict[str, float], dim: int = 8, classes: int = 4, n_train: int = 160) -> DataBundle:
    """Modality m = strengths[m] * (a unit class prototype) + unit Gaussian noise, one seeded generator."""
    g = torch.Generator().manual_seed(0)
    prototypes = {m: F.normalize(torch.randn(classes, dim, generator=g), dim=1) for m in strengths}
    splits = {}
    for split, n in (("train", n_train), ("val", 80), ("test", 80)):
        labels = torch.randint(classes, (n,), generator=g)
        splits[split] = TensorSplit({m: s * prototypes[m][labels] + torch.randn(n, dim, generator=g) for m, s in strengths.items()}, labels)
    return DataBundle("g2d-equations", [Modality(m, "vector", (dim,)) for m in strengths], classes, splits=splits)


@pytest.fixture(scope="module")
def teachers(tmp_path_factory):
    """A confident teacher on a (a carries a strong label signal) and a hesitant one on b, two epochs each."""
    folder = tmp_path_factory.mktemp("g2d")
    bundle = bundle_of({"a": 3.0, "b": 0.7})
    base = resolve_config(None, ["data.name=synthetic-unimodal", "train.epochs=2", "train.progress=false", "data.batch_size=32",
                                 "model.feature_dim=16"])
    runs = {}
    for m in ("a", "b"):
        runs[m] = str(folder / f"unimodal-{m}")
        train(method_config(base, "unimodal", {"modality": m}), runs[m], bundle=bundle)
    return folder, bundle, base, runs


def prepared(teachers, **options):
    """G2D with `options` on the teachers' data, prepared (teacher features cached), and a batch of 48."""
    folder, bundle, base, runs = teachers
    config = method_config(base, "g2d", {"teachers": runs, **options})
    torch.manual_seed(1)
    method = build_method(config, bundle.spec)
    model = method.build_model().train()
    split = method.prepare(model, TrainingContext(config, bundle, RunDir(folder / f"g2d-{len(list(folder.iterdir()))}"), torch.device("cpu")))
    return method, model, split.__getitems__(list(range(48)))


def encoder_matrices(encoder) -> list[torch.nn.Parameter]:
    """The weights G2D switches off in an MLP encoder (no convolutions): its weight matrices."""
    return [p for name, p in encoder.named_parameters() if name.endswith("weight") and p.dim() == 2]


def recomputed(model, runs, inputs, labels, weight, logit_weight, temperature):
    """The paper's loss and the teachers' batch confidences, written out."""
    features = {m: model.encoders[m](inputs[m]) for m in ("a", "b")}
    z = model.head.linear(torch.cat([features["a"], features["b"]], 1))
    loss = F.cross_entropy(z, labels)
    confidences = []
    for m in ("a", "b"):
        teacher = load_model(RunDir(runs[m]))
        with torch.no_grad():
            t = teacher.encoders[m](inputs[m])
            logits = teacher.head.linear(t)
        p_teacher = (logits / temperature).softmax(1)
        p_student = (z / temperature).softmax(1)
        kl = (p_teacher * (p_teacher.log() - p_student.log())).sum(1).mean()
        loss = loss + weight * ((features[m] - t) ** 2).mean() + logit_weight * temperature**2 * kl
        confidences.append(logits.softmax(1)[torch.arange(len(labels)), labels].sum())
    return loss, torch.stack(confidences)


def gradients(model) -> dict[str, torch.Tensor]:
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("epoch, switched_off", [(0, True), (3, True), (4, False)], ids=["first-epoch", "last-of-window", "after-window"])
def test_g2d_loss_and_prioritised_gradients_follow_the_equations(teachers, epoch, switched_off):
    """L = CE(z, y) + w sum_m MSE(f_m, t_m) + w_l sum_m T^2 KL(softmax(l_m/T) || softmax(z/T)); within the
    window the encoder of the modality whose teacher is more confident on the batch gets no gradient."""
    _, _, _, runs = teachers
    options = {"weight": 0.7, "logit_weight": 1.3, "temperature": 2.0}
    method, model, (inputs, labels) = prepared(teachers, end_epoch=3, **options)
    loss, confidences = recomputed(model, runs, inputs, labels, **options)
    assert confidences[0] > confidences[1]  # the strong modality's teacher is the more confident: a is switched off
    model.zero_grad(set_to_none=True)
    loss.backward()
    expected = gradients(model)
    if switched_off:
        for p in encoder_matrices(model.encoders["a"]):
            name = next(n for n, q in model.named_parameters() if q is p)
            expected[name] = torch.zeros_like(expected[name])

    model.zero_grad(set_to_none=True)
    output = method.loss(model, inputs, labels, StepInfo(epoch))
    method.backward(model, output)
    close(output.loss, loss.detach())
    got = gradients(model)
    assert got.keys() == expected.keys()
    for name in got:
        close(got[name], expected[name])
    assert output.saved["coefficients"].tolist() == ([0.0, 1.0] if switched_off else [1.0, 1.0])
    # What is kept moves: b's encoder, a's biases, the fused head.
    assert all(got[n].abs().sum() > 0 for n in got if n.startswith("encoders.b.") or n.endswith("bias") or n.startswith("head."))


def test_g2d_without_prioritisation_is_the_plain_distillation_gradient(teachers):
    _, _, _, runs = teachers
    method, model, (inputs, labels) = prepared(teachers, prioritise=False)
    loss, _ = recomputed(model, runs, inputs, labels, weight=1.0, logit_weight=1.0, temperature=1.0)  # the official weights
    model.zero_grad(set_to_none=True)
    loss.backward()
    expected = gradients(model)
    model.zero_grad(set_to_none=True)
    method.backward(model, method.loss(model, inputs, labels, StepInfo(0)))
    for name, grad in gradients(model).items():
        close(grad, expected[name])


def test_g2d_switches_off_only_the_single_most_confident_modality():
    assert prioritised(torch.tensor([30.0, 10.0, 20.0])).tolist() == [0.0, 1.0, 1.0]
    assert prioritised(torch.tensor([5.0, 9.0])).tolist() == [1.0, 0.0]
    assert prioritised(torch.tensor([20.0, 20.0, 3.0])).tolist() == [1.0, 1.0, 1.0]  # a tie switches nothing off


@pytest.mark.parametrize("option, message", [
    ("method.options.end_epoch=2", "end_epoch 2 is before start_epoch 5"),
    ("method.options.temperature=0", "temperature: Input should be greater than 0"),
    ("method.options.prioritize=true", "prioritize: unknown key. Did you mean 'prioritise'"),
])
def test_g2d_options_are_checked_when_the_config_is_resolved(option, message):
    with pytest.raises(ConfigError, match=message):
        resolve_config(None, ["method.name=g2d", "method.options.teachers.a=x", "method.options.teachers.b=y",
                              "method.options.start_epoch=5", option])


def test_g2d_prioritises_the_first_half_of_the_run_by_default(teachers):
    """The official window is epochs 0..150 of 300; by default here 0..train.epochs // 2."""
    _, bundle, base, runs = teachers
    for epochs, given, end in ((9, [], 4), (300, [], 150), (9, ["method.options.end_epoch=7"], 7)):
        config = resolve_config(None, [f"data.name={base.data.name}", f"train.epochs={epochs}", "method.name=g2d",
                                       *[f"method.options.teachers.{m}={path}" for m, path in runs.items()], *given])
        options = build_method(config, bundle.spec).options
        assert options.end_epoch == end and options.in_window(end) and not options.in_window(end + 1)
