"""The joint model's per-modality accuracy (each modality's share of its scores), every epoch and at
test, and the imbalance between modalities: computed as defined, recorded, and drawn."""

from __future__ import annotations

import json

import pytest
import torch

from latefusion.data import build_dataset
from latefusion.engine import evaluate
from latefusion.methods import build_method, load_model
from latefusion.pipeline import run_pipeline
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


def test_ume_and_mla_answer_with_their_own_modality_scores(tmp_path, tiny_config):
    bundle = build_dataset(tiny_config().data)
    train(tiny_config("method.name=mla"), tmp_path / "mla", bundle=bundle)
    mla = build_method(tiny_config("method.name=mla"), bundle.spec)
    model = load_model(tmp_path / "mla")
    inputs, _ = bundle.splits["val"].__getitems__([0, 1, 2])
    with torch.no_grad():
        scores = mla.modality_scores(model, inputs)
        torch.testing.assert_close(scores["b"], model.head(model.encoders["b"](inputs["b"])))


@pytest.mark.slow
def test_the_demo_summary_and_report_carry_the_shares(tmp_path, tiny_config):
    summary = run_pipeline(tiny_config("train.epochs=2"), tmp_path / "demo", log=lambda *_: None)
    assert set(summary["methods"]["naive"]["test_acc_by_modality"]) == {"a", "b"}
    assert "test_acc_by_modality" not in summary["methods"]["unimodal:a"]
    from latefusion.report import write_report

    written = write_report([tmp_path / "demo"])
    text = written.markdown.read_text()
    assert "Share of a, test (%)" in text and "modalities-" in text
