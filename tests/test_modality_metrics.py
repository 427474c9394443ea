"""The joint model's per-modality accuracy (each modality's share of its scores), every epoch and at
test, and the imbalance between modalities: computed as defined, recorded, and drawn."""

from __future__ import annotations

import json

import pytest
import torch

from latefusion.data import build_dataset
from latefusion.engine import evaluate
from latefusion.methods import build_method, load_model
from latefusion.pipeline import method_config, run_pipeline
from latefusion.runs import RunDir
from latefusion.train import train


def test_each_modality_share_is_scored_as_its_logits_alone(tmp_path, tiny_config):
    config = tiny_config("method.name=naive", "model.fusion=concat")
    bundle = build_dataset(config.data)
    method = build_method(config, bundle.spec)
    model = method.build_model()
    with torch.no_grad():  # modality b's columns of the fused head set to zero: its share says nothing
        model.head.linear.weight[:, config.model.feature_dim:] = 0
    result = evaluate(method, model, bundle.splits["test"], config, torch.device("cpu"), bundle.num_classes)
    inputs, labels = bundle.splits["test"].__getitems__(list(range(len(bundle.splits["test"]))))
    with torch.no_grad():
        features = model.features(inputs)
        w_a = model.head.linear.weight[:, : config.model.feature_dim]
        by_hand = ((features["a"] @ w_a.T + model.head.linear.bias / 2).argmax(1) == labels).float().mean().item()
        constant = (model.head.linear.bias.argmax().expand_as(labels) == labels).float().mean().item()
    assert result["acc_by_modality"]["a"] == pytest.approx(by_hand)
    assert result["acc_by_modality"]["b"] == pytest.approx(constant)  # b's share is the bias alone


def test_runs_record_the_shares_every_epoch_and_the_imbalance_at_test(tmp_path, tiny_config):
    result = train(tiny_config("method.name=naive"), tmp_path / "naive")
    rows = [json.loads(line) for line in (tmp_path / "naive" / "metrics.jsonl").read_text().splitlines()]
    assert all(set(row["val_acc_by_modality"]) == {"a", "b"} for row in rows)
    shares = result["test_acc_by_modality"]
    assert result["test_modality_imbalance"] == pytest.approx(max(shares.values()) - min(shares.values()))
    unimodal = train(tiny_config("method.name=unimodal", "method.options.modality=a"), tmp_path / "uni")
    assert "test_acc_by_modality" not in unimodal  # one modality: nothing to compare


def test_ume_scores_each_modality_with_its_own_member_alone(tmp_path, tiny_config):
    """Checked against the uni-modal runs UME copies its members from, loaded from their own folders:
    each modality's share is that run's logits, and its accuracy is that run's own test accuracy."""
    config = tiny_config("train.epochs=1")
    bundle = build_dataset(config.data)
    members = {}
    for m in ("a", "b"):
        members[m] = tmp_path / f"unimodal-{m}"
        train(method_config(config, "unimodal", {"modality": m}), members[m], bundle=bundle)
    ume_config = method_config(config, "ume", {"members": {m: str(folder) for m, folder in members.items()}})
    result = train(ume_config, tmp_path / "ume", bundle=bundle)
    for m, folder in members.items():
        # exact counts of 200 test samples on both sides; abs 1e-6 only for float32 rounding (one sample is 5e-3)
        assert result["test_acc_by_modality"][m] == pytest.approx(RunDir(folder).result()["test_acc"], abs=1e-6), m

    ume, model = build_method(ume_config, bundle.spec), load_model(tmp_path / "ume")
    inputs, _ = bundle.splits["val"].__getitems__(list(range(8)))
    with torch.no_grad():
        scores = ume.modality_scores(model, inputs)
        own = {m: load_model(folder)(inputs) for m, folder in members.items()}
    assert not torch.allclose(own["a"], own["b"], atol=1e-3)  # the members disagree: a share taken from the wrong one shows
    for m in ("a", "b"):
        torch.testing.assert_close(scores[m], own[m], rtol=0, atol=0)  # the same weights on the same inputs


def test_mla_scores_each_modality_with_the_shared_head_on_that_modality_alone(tmp_path, tiny_config):
    """Checked against MLA's own fusion: with fixed weights (1, 0) the fused model is modality a alone,
    with (0, 1) it is b alone, so each share's accuracy must be the fused accuracy at those weights."""
    config = tiny_config("method.name=mla", "method.options.fusion=fixed", "train.epochs=2")
    bundle = build_dataset(config.data)
    train(config, tmp_path / "mla", bundle=bundle)
    mla, model = build_method(config, bundle.spec), load_model(tmp_path / "mla")
    test = bundle.splits["test"]
    shares = evaluate(mla, model, test, config, torch.device("cpu"), bundle.num_classes)["acc_by_modality"]
    inputs, _ = bundle.splits["val"].__getitems__(list(range(8)))
    for m, weights in (("a", [1.0, 0.0]), ("b", [0.0, 1.0])):
        model.fixed_weights.copy_(torch.tensor(weights))
        alone = evaluate(mla, model, test, config, torch.device("cpu"), bundle.num_classes)
        assert shares[m] == pytest.approx(alone["acc"], abs=1e-6), m  # counts of the same 200 samples; float32 rounding only
        with torch.no_grad():
            torch.testing.assert_close(mla.modality_scores(model, inputs)[m], model(inputs), rtol=1e-4, atol=1e-6)  # float32
    assert shares["a"] != shares["b"]  # the encoders differ: a share taken from the wrong modality shows


@pytest.mark.slow
def test_the_demo_summary_and_report_carry_the_shares(tmp_path, tiny_config):
    summary = run_pipeline(tiny_config("train.epochs=2"), tmp_path / "demo", log=lambda *_: None)
    assert set(summary["methods"]["naive"]["test_acc_by_modality"]) == {"a", "b"}
    assert "test_acc_by_modality" not in summary["methods"]["unimodal:a"]
    from latefusion.report import write_report

    written = write_report([tmp_path / "demo"])
    text = written.markdown.read_text()
    assert "Share of a, test (%)" in text and "modalities-" in text
