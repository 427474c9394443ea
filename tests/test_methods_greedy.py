"""Greedy (ICML 2022) against its equations (methods/greedy.py, from the official code): the
branches recalibrated by the cross-modal gates and averaged; the conditional learning speeds
(summed squared gradient over summed squared weight norms of each modality's bypass and main
parameters), their sums over regular steps, the BDR, and the re-balancing steps they trigger
(a window of steps in which the branch with the largest BDR gets its running-mean gate), written out
here as a small state machine on a fixed sequence of batches; options checked when the config is
resolved; the state saved in checkpoints and a run crashed inside an epoch resumed exactly."""

from __future__ import annotations

import math

import pytest
import torch

from latefusion.errors import ConfigError
from latefusion.methods import StepInfo
from latefusion.methods.greedy import Greedy
from latefusion.resolve import resolve_config
from latefusion.runs import RunDir
from latefusion.storage import load_checkpoint
from latefusion.train import train

from method_resume import check_resumes_exactly, crashing
from test_methods_equations import built, close, first, make_bundle

crashing(Greedy)
MODALITIES = ("a", "b")


def branch_logits_by_hand(model, inputs, fixed=None):
    """The MMTM branches written out: z = relu(W_s [f_a, f_b] + b_s), gate_m = sigmoid(W_m z + b_m),
    logits_m = head_m(f_m * gate_m); `fixed` {m: gate} replaces a branch's gate."""
    f = {m: model.encoders[m](inputs[m]) for m in MODALITIES}
    s = model.gates.squeeze
    z = torch.relu(torch.cat([f["a"], f["b"]], 1) @ s.weight.T + s.bias)
    logits = {}
    for m in MODALITIES:
        e = model.gates.excite[m]
        gate = fixed[m] if fixed and m in fixed else torch.sigmoid(z @ e.weight.T + e.bias)
        logits[m] = f[m] * gate @ model.heads[m].weight.T + model.heads[m].bias
    return logits


def test_greedy_model_averages_the_branches_recalibrated_by_the_cross_modal_gates():
    bundle = make_bundle({"a": 2.0, "b": 1.0}, {"a": 6, "b": 5})
    method, model = built("greedy", bundle, "model.feature_dim=8")
    assert model.gates.squeeze.out_features == 2 * 16 // 4  # ratio 4 over the summed widths
    inputs, _ = first(bundle, 16)
    fused, shares = model.scores(inputs)
    expected = branch_logits_by_hand(model, inputs)
    for m in MODALITIES:
        close(shares[m], expected[m])
    close(fused, (expected["a"] + expected["b"]) / 2)


def speed_by_hand(params):
    return sum(float(p.grad.double().pow(2).sum()) for p in params) / sum(float(p.detach().double().pow(2).sum()) for p in params)


def test_greedy_speeds_trigger_windows_of_rebalancing_steps_for_the_largest_bdr():
    bundle = make_bundle({"a": 2.0, "b": 1.0}, {"a": 6, "b": 5})
    method, model = built("greedy", bundle, "model.feature_dim=8", "method.options.start_epoch=1",
                          "method.options.window=2", "method.options.epsilon=0.02")
    sums = {m: [0.0, 0.0] for m in MODALITIES}  # bypass, main
    gate_mean, steps = {m: torch.zeros(8) for m in MODALITIES}, 0
    rebalancing, caring, count = False, None, 0
    seen = {"rebalancing": 0, "triggers": 0, "cared": set()}
    for t in range(24):
        epoch = 0 if t < 3 else 1
        inputs, labels = first(bundle, 32, start=(32 * t) % 200)
        output = method.loss(model, inputs, labels, StepInfo(epoch))
        with torch.no_grad():  # the forward pass: the cared branch gated by its running mean
            logits = branch_logits_by_hand(model, inputs, {caring: gate_mean[caring]} if rebalancing else None)
            gates = {m: torch.sigmoid(torch.relu(torch.cat([model.encoders[n](inputs[n]) for n in MODALITIES], 1) @ model.gates.squeeze.weight.T
                                                 + model.gates.squeeze.bias) @ model.gates.excite[m].weight.T + model.gates.excite[m].bias) for m in MODALITIES}
        close(output.loss.detach(), torch.nn.functional.cross_entropy((logits["a"] + logits["b"]) / 2, labels))
        model.zero_grad(set_to_none=True)
        method.backward(model, output)
        # The running mean of each gate over the steps so far (batch means).
        steps += 1
        for m in MODALITIES:
            gate_mean[m] = gate_mean[m] + (gates[m].mean(0) - gate_mean[m]) / steps
        if not rebalancing:  # a regular step: its speeds count
            for m in MODALITIES:
                bypass = [*model.gates.squeeze.parameters(), *model.gates.excite[m].parameters()]
                main = [*model.encoders[m].parameters(), *model.heads[m].parameters()]
                sums[m][0] += speed_by_hand(bypass)
                sums[m][1] += speed_by_hand(main)
        bdr = {m: math.log10(sums[m][0] / sums[m][1]) for m in MODALITIES}
        if epoch >= 1:
            if rebalancing:
                count += 1
                rebalancing = count < 2
            elif abs(bdr["a"] - bdr["b"]) > 0.02:
                rebalancing, count, caring = True, 0, max(bdr, key=bdr.get)
                seen["triggers"] += 1
                seen["cared"].add(caring)
        seen["rebalancing"] += rebalancing
        close(method.speed_sums, torch.tensor([sums[m] for m in MODALITIES], dtype=torch.float64), rtol=1e-6, atol=0)
        assert bool(method.rebalancing) == rebalancing, t
        if rebalancing:
            assert method.modalities()[int(method.caring)] == caring
        close(method.gate_means, torch.stack([gate_mean[m] for m in MODALITIES]), atol=1e-6)
        with torch.no_grad():  # an SGD step, so that the speeds move from step to step
            for p in model.parameters():
                if p.grad is not None:
                    p.sub_(0.5 * p.grad)
    assert seen["triggers"] >= 2 and seen["rebalancing"] >= 4, seen  # the windows did open and close


def test_greedy_never_rebalances_before_its_start_epoch_nor_below_epsilon():
    bundle = make_bundle({"a": 2.0, "b": 1.0}, {"a": 6, "b": 5})
    for overrides, epoch in ((["method.options.start_epoch=5", "method.options.epsilon=0"], 4),
                             (["method.options.start_epoch=0", "method.options.epsilon=1000"], 0)):
        method, model = built("greedy", bundle, "model.feature_dim=8", *overrides)
        for t in range(4):
            inputs, labels = first(bundle, 32, start=32 * t)
            output = method.loss(model, inputs, labels, StepInfo(epoch))
            model.zero_grad(set_to_none=True)
            method.backward(model, output)
            assert not method.rebalancing
        assert (method.speed_sums > 0).all()  # measured all the same


def test_greedy_options_are_checked_when_the_config_is_resolved():
    for bad, field in (("window=0", "window"), ("epsilon=-1", "epsilon"), ("ratio=0", "ratio")):
        with pytest.raises(ConfigError, match=field):
            resolve_config(None, ["method.name=greedy", f"method.options.{bad}"])


def test_greedy_saves_its_state_and_resumes_a_run_crashed_inside_an_epoch(tmp_path, tiny_config, monkeypatch):
    # 300 samples in batches of 50: 6 steps an epoch, a step checkpoint every 2; the 9th call is epoch 1, step 3.
    config = tiny_config("method.name=greedy-crashing", "data.batch_size=50", "train.checkpoint_every_steps=2",
                         "method.options.start_epoch=0", "method.options.epsilon=0.001", "method.options.window=2")
    check_resumes_exactly(config, tmp_path, monkeypatch, at_call=9)
    saved = load_checkpoint(RunDir(tmp_path / "whole").last)["method"]
    assert {"speed_sums", "rebalancing", "caring", "rebalance_step", "gate_means", "gate_steps"} <= set(saved)
    rows = [row for row in (RunDir(tmp_path / "whole").metrics_file.read_text().splitlines())]
    assert any('"train_rebalancing": 0.0' not in row for row in rows)  # some steps re-balanced


def test_greedy_trains_in_the_loop(tmp_path, tiny_config):
    result = train(tiny_config("method.name=greedy", "train.epochs=2"), tmp_path / "run")
    assert 0 <= result["test_acc"] <= 1 and set(result["test_acc_by_modality"]) == {"a", "b"}
