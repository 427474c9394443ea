"""Diagnosing and Re-learning: the diagnosis and the soft re-initialisation against the paper's
equations written out independently on fixed features, the official code's schedule, and its state
carried by checkpoints."""

import math
from collections import Counter

import pytest
import torch

from latefusion.data import DataBundle, Modality, TensorSplit
from latefusion.methods import TrainingContext, build_method

DIM = 4  # each modality's input size = the feature size, so an identity encoder passes inputs through
CENTRES = 10.0 * torch.eye(3, DIM) + 1.0  # three blobs far apart, every coordinate positive


def blobs(members: list[int], generator: torch.Generator) -> torch.Tensor:
    return CENTRES[members] + 0.01 * torch.rand(len(members), DIM, generator=generator)


def paper_purity(members: list[int], labels: list[int]) -> float:
    """Purity as the paper defines it: each cluster counts its most frequent label."""
    by_cluster: dict[int, Counter] = {}
    for c, y in zip(members, labels):
        by_cluster.setdefault(c, Counter())[y] += 1
    return sum(max(counts.values()) for counts in by_cluster.values()) / len(labels)


def blob_bundle() -> tuple[DataBundle, dict]:
    """Each modality's samples fall in three well-separated blobs whose labels are mixed by design:
    a separates train perfectly and validation less; b the other way round."""
    g = torch.Generator().manual_seed(3)
    labels = {"train": [0] * 10 + [1] * 10 + [2] * 10, "val": [0] * 10 + [1] * 10 + [2] * 10}
    members = {
        ("a", "train"): [0] * 10 + [1] * 10 + [2] * 10,                       # purity 1
        ("a", "val"): [0] * 6 + [1] * 4 + [1] * 10 + [2] * 5 + [0] * 5,        # 0.7
        ("b", "train"): [0] * 8 + [1] * 2 + [1] * 8 + [2] * 2 + [2] * 8 + [0] * 2,  # 0.8
        ("b", "val"): [0] * 10 + [1] * 10 + [2] * 10,                         # 1
    }
    splits = {s: TensorSplit({m: blobs(members[m, s], g) for m in "ab"}, torch.tensor(labels[s])) for s in ("train", "val")}
    splits["test"] = splits["val"]
    bundle = DataBundle("blobs", [Modality(m, "vector", (DIM,)) for m in "ab"], 3, splits=splits)
    return bundle, {key: paper_purity(members[key], labels[key[1]]) for key in members}


def identity_encoders(model) -> None:
    """One Linear + ReLU per encoder, set to the identity: features are the (positive) inputs."""
    with torch.no_grad():
        for encoder in model.encoders.values():
            linear = encoder.net[1]
            linear.weight.copy_(torch.eye(DIM))
            linear.bias.zero_()


def relearn_setup(tiny_config, *overrides):
    bundle, purities = blob_bundle()
    config = tiny_config("method.name=relearn", f"model.feature_dim={DIM}", "model.encoders.a.name=mlp", "model.encoders.a.options.depth=1",
                         "model.encoders.b.name=mlp", "model.encoders.b.options.depth=1", *overrides)
    method = build_method(config, bundle.spec)
    model = method.build_model()
    context = TrainingContext(config, bundle, None, torch.device("cpu"))
    return method, model, context, purities


def test_relearn_reinitialises_each_encoder_by_tanh_of_its_purity_gap(tiny_config):
    method, model, context, purities = relearn_setup(tiny_config, "method.options.strength=2.5")
    initial = {name: p.detach().clone() for name, p in model.encoders.named_parameters()}
    method.prepare(model, context)  # theta_init: the encoders as training starts
    identity_encoders(model)  # "trained" encoders whose features are the blobs
    trained = {name: p.detach().clone() for name, p in model.encoders.named_parameters()}
    rng = torch.get_rng_state()

    method.on_epoch_start(21, model, context)  # after the training of epoch 20

    assert torch.equal(torch.get_rng_state(), rng)  # the diagnosis draws from its own generators only
    for i, m in enumerate("ab"):
        # Purities are kept as float32 (logged on the device): relative 1e-6.
        assert method.purities[:, i].tolist() == pytest.approx([purities[m, "train"], purities[m, "val"]], rel=1e-6)
    # alpha = tanh(lambda |P_train - P_val|): a pulled back by tanh(2.5 * 0.3), b by tanh(2.5 * 0.2).
    alpha = {m: math.tanh(2.5 * abs(purities[m, "train"] - purities[m, "val"])) for m in "ab"}
    assert alpha["a"] > alpha["b"] > 0.4
    for name, p in model.encoders.named_parameters():
        expected = alpha[name[0]] * initial[name] + (1 - alpha[name[0]]) * trained[name]
        # float32 mixing of two float32 tensors in another order: relative 1e-6 of values about 1.
        assert torch.allclose(p, expected, rtol=1e-6, atol=1e-6), name
    assert torch.allclose(method.alphas, torch.tensor([alpha["a"], alpha["b"]]), rtol=1e-6)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    method.on_epoch_start(22, model, context)  # no diagnosis before epoch 22: nothing moves
    assert all(torch.equal(p, before[name]) for name, p in model.named_parameters())


def test_relearn_leaves_the_head_alone(tiny_config):
    method, model, context, _ = relearn_setup(tiny_config)
    method.prepare(model, context)
    identity_encoders(model)
    head = {name: p.detach().clone() for name, p in model.head.named_parameters()}
    method.on_epoch_start(21, model, context)
    assert all(torch.equal(p, head[name]) for name, p in model.head.named_parameters())


def test_relearn_diagnoses_on_the_official_schedule(tiny_config):
    method, *_ = relearn_setup(tiny_config)  # every 20, at most 3 times
    official = []  # ours.py: after training epoch e, reinit when e % 20 == 0 and e > 0, up to 3 times
    flag = 0
    for e in range(100):
        if e % 20 == 0 and e > 0:
            flag += 1
            if flag <= 3:
                official.append(e + 1)  # our hook runs before the next epoch
    assert [e for e in range(101) if method.diagnoses_before(e)] == official == [21, 41, 61]


def test_relearn_checkpoint_carries_the_initial_weights(tiny_config):
    method, model, context, _ = relearn_setup(tiny_config)
    method.prepare(model, context)
    other, other_model, _, _ = relearn_setup(tiny_config)
    with torch.no_grad():
        for p in other_model.parameters():
            p.add_(1.0)
    other.prepare(other_model, context)  # a resumed run's fresh model is not the one training started from
    other.load_state_dict(method.state_dict())
    for p, q in zip(other.initial.parameters(), model.encoders.parameters()):
        assert torch.equal(p, q)
    assert not any(p.requires_grad for p in method.initial.parameters())  # never trained by the optimiser


def test_building_relearn_draws_nothing_from_the_runs_random_stream(tiny_config):
    """Its copy of the encoders is built apart from the run's generator, so the model built next
    starts from the same weights as every other method's with the same seed."""
    bundle, _ = blob_bundle()
    rng = torch.get_rng_state()
    build_method(tiny_config("method.name=relearn"), bundle.spec)
    assert torch.equal(torch.get_rng_state(), rng)
