"""Data Remixing: the assignment, the re-assembled epoch and both losses against the official code's
formulas written out independently on a fixed batch, and its state carried by checkpoints."""

import math

import pytest
import torch
import torch.nn.functional as F

from latefusion.engine import make_loader
from latefusion.methods import StepInfo, TrainingContext, build_method

from test_methods_baselines import prototype_bundle
from test_methods_pmr_agm import assert_same_gradients, gradients

ASSIGNED = "remix:assigned"


def remix_setup(tiny_config, *overrides):
    bundle = prototype_bundle({"a": 2.0, "b": 1.0}, {"a": 6, "b": 5}, n_train=120, classes=3)
    config = tiny_config("method.name=remix", "model.feature_dim=8", "data.batch_size=16", *overrides)
    method = build_method(config, bundle.spec)
    model = method.build_model()
    context = TrainingContext(config, bundle, None, torch.device("cpu"))
    split = method.prepare(model, context)
    return method, model, context, split


def official_assignment(method, model, inputs) -> list[int]:
    """remix() of the official train.py, sample by sample: KL(p || uniform) in bits with p clipped to
    [1e-9, 1]; the sample goes to the modality whose divergence is the smaller."""
    assigned = []
    with torch.no_grad():
        p = {m: method.unimodal_heads[m](model.encoders[m](inputs[m])).double().softmax(1).clamp(1e-9, 1) for m in "ab"}
    for i in range(len(p["a"])):
        kl = {m: sum(q * math.log2(q / (1 / 3)) for q in p[m][i].tolist()) for m in "ab"}
        assigned.append(0 if kl["a"] <= kl["b"] else 1)
    return assigned


def test_remix_assigns_each_sample_to_its_least_confident_modality(tiny_config):
    method, model, context, split = remix_setup(tiny_config, "method.options.warmup=3")
    method.on_epoch_start(2, model, context)  # still warming up: nothing assigned
    assert (method.assignment == -1).all()
    method.on_epoch_start(3, model, context)
    train = context.bundle.splits["train"]
    expected = official_assignment(method, model.eval(), train.inputs)
    assert method.assignment.tolist() == expected
    assert 0 < sum(expected) < len(expected)  # both modalities hold samples: the checks below mean something


def test_remix_epoch_batches_one_modality_at_a_time(tiny_config):
    method, model, context, split = remix_setup(tiny_config, "method.options.warmup=0")
    method.on_epoch_start(0, model, context)
    assignment = method.assignment.tolist()
    batches = [(inputs[ASSIGNED].tolist(), labels) for inputs, labels in make_loader(split, context.config, train=True, epoch=0)]
    order = [a for assigned, _ in batches for a in assigned]
    # Every sample once; all of a's samples, then all of b's; at most one batch holds both.
    assert sorted(order) == sorted(assignment) and len(order) == len(assignment)
    first_b = order.index(1)
    assert set(order[:first_b]) == {0} and set(order[first_b:]) == {1}
    assert sum(len(set(assigned)) > 1 for assigned, _ in batches) <= 1
    # Another epoch, another shuffle within each modality; the same epoch again, the same batches.
    again = [inputs[ASSIGNED].tolist() for inputs, _ in make_loader(split, context.config, train=True, epoch=0)]
    assert again == [assigned for assigned, _ in batches]
    labels0 = torch.cat([labels for _, labels in batches])
    labels1 = torch.cat([labels for _, labels in make_loader(split, context.config, train=True, epoch=1)])
    assert not torch.equal(labels0, labels1)


def test_remix_losses_follow_the_official_code(tiny_config):
    method, model, context, split = remix_setup(tiny_config, "method.options.warmup=2", "method.options.alpha=0.3", "method.options.gamma=1.7")
    indices = list(range(12))
    inputs, labels = split.__getitems__(indices)
    assigned = torch.tensor([0, 1] * 6)  # a mixed batch: each sample's loss is its own modality's
    inputs[ASSIGNED] = assigned
    model.train()

    # Warm-up (train_epoch): loss_av + alpha * loss_a + beta * loss_v, alpha = beta.
    model.zero_grad(), method.zero_grad()
    z = {m: model.encoders[m](inputs[m]) for m in "ab"}
    expected = F.cross_entropy(model.head.linear(torch.cat([z["a"], z["b"]], 1)), labels) + 0.3 * sum(
        F.cross_entropy(method.unimodal_heads[m](z[m]), labels) for m in "ab")
    expected.backward()
    expected_grads = gradients(model) | gradients(method)
    model.zero_grad(), method.zero_grad()
    output = method.loss(model, inputs, labels, StepInfo(1))
    output.loss.backward()
    # float32 sums in another order: relative 1e-4 (as tests/test_methods_pmr_agm.py).
    assert output.loss.item() == pytest.approx(expected.item(), rel=1e-4)
    assert_same_gradients(gradients(model) | gradients(method), expected_grads)

    # Remixed (special_train_epoch): for a sample of modality m, the other's features zeroed after its
    # encoder, loss_fused + gamma * loss_m; the step's loss is the mean over the samples.
    model.zero_grad(), method.zero_grad()
    z = {m: model.encoders[m](inputs[m]) for m in "ab"}
    terms = []
    for i in indices:
        own = "ab"[assigned[i]]
        kept = {m: z[m][i:i + 1] if m == own else torch.zeros_like(z[m][i:i + 1]) for m in "ab"}
        fused = F.cross_entropy(model.head.linear(torch.cat([kept["a"], kept["b"]], 1)), labels[i:i + 1])
        terms.append(fused + 1.7 * F.cross_entropy(method.unimodal_heads[own](z[own][i:i + 1]), labels[i:i + 1]))
    expected = torch.stack(terms).mean()
    expected.backward()
    expected_grads = gradients(model) | gradients(method)
    model.zero_grad(), method.zero_grad()
    output = method.loss(model, inputs, labels, StepInfo(2))
    output.loss.backward()
    assert output.loss.item() == pytest.approx(expected.item(), rel=1e-4)
    assert_same_gradients(gradients(model) | gradients(method), expected_grads)
    assert output.logs["assigned_a"].item() == 0.5


def test_remix_checkpoint_carries_the_assignment_on_the_cpu(tiny_config):
    method, model, context, split = remix_setup(tiny_config, "method.options.warmup=0")
    method.on_epoch_start(0, model, context)
    other, other_model, _, other_split = remix_setup(tiny_config, "method.options.warmup=0")
    assert (other.assignment == -1).all()
    other.load_state_dict(method.state_dict())
    assert torch.equal(other.assignment, method.assignment) and other.assignment.device.type == "cpu"
    # The resumed split reads the restored assignment: the same order of the same epoch.
    order = torch.cat([inputs["a"] for inputs, _ in make_loader(split, context.config, train=True, epoch=4)])
    resumed = torch.cat([inputs["a"] for inputs, _ in make_loader(other_split, context.config, train=True, epoch=4)])
    assert torch.equal(order, resumed)
