import importlib
import json

import pytest
import torch

from latefusion.config import ConfigError
from latefusion.resolve import resolve_config
from latefusion.data import build_dataset
from latefusion.models import build_late_fusion
from latefusion.pipeline import run_pipeline
from latefusion.probe import ProbeConfig, probe_run
from latefusion.errors import RunFolderError
from latefusion.runs import RunDir
from latefusion.methods import load_model
from latefusion.storage import load_checkpoint, save_checkpoint
from latefusion.train import train


def test_synthetic_is_reproducible_and_has_three_splits(tiny_config):
    config = tiny_config()
    first, second = build_dataset(config.data), build_dataset(config.data)
    for split in ("train", "val", "test"):
        a, b = first.splits[split], second.splits[split]
        assert torch.equal(a.labels, b.labels)
        assert all(torch.equal(a.inputs[m], b.inputs[m]) for m in first.modality_names)
    other = build_dataset(tiny_config("data.options.seed=1").data)
    assert not torch.equal(first.splits["train"].inputs["a"], other.splits["train"].inputs["a"])


@pytest.mark.parametrize("fusion", ["concat", "sum"])
def test_late_fusion_heads_split_into_modality_logits(tiny_config, fusion):
    bundle = build_dataset(tiny_config().data)
    model = build_late_fusion(bundle, tiny_config(f"model.fusion={fusion}").model, bundle.modality_names)
    inputs, _ = bundle.splits["val"].__getitems__(list(range(5)))
    features = model.features(inputs)
    parts = model.head.modality_logits(features)
    assert set(parts) == {"a", "b"}
    # The head's float32 sums split by modality, so added in another order: relative 1e-4.
    torch.testing.assert_close(sum(parts.values()), model(inputs), rtol=1e-4, atol=1e-6)


def test_train_writes_run_folder_and_selects_on_validation(tmp_path, tiny_config):
    result = train(tiny_config("method.name=naive"), tmp_path / "run")
    run = RunDir(tmp_path / "run")
    history = [json.loads(line) for line in run.metrics_file.read_text().splitlines()]
    assert len(history) == 3 and result["epochs_run"] == 3
    assert result["best_epoch"] == max(range(3), key=lambda e: (history[e]["val_acc"], -e))
    assert run.best.exists() and run.last.exists() and run.config().method.name == "naive"
    # The reloaded best model reproduces the reported validation accuracy.
    model = load_model(run)
    bundle = build_dataset(run.config().data)
    inputs, labels = bundle.splits["val"].__getitems__(list(range(len(bundle.splits["val"]))))
    acc = (model(inputs).argmax(1) == labels).float().mean().item()
    assert acc == pytest.approx(result["val_acc"], abs=1e-6)  # float32 rounding of a fraction; one sample of 200 is 5e-3


def test_the_kept_model_is_the_epoch_best_on_validation_not_the_last(tmp_path, tiny_config, monkeypatch):
    """Validation accuracies scripted to peak at epoch 1 of 3: best.pt must hold epoch 1's weights."""
    training = importlib.import_module("latefusion.train")  # the module; `latefusion.train` is also the function
    real_evaluate, scripted, weights = training.evaluate, iter([0.5, 0.9, 0.3]), []

    config = tiny_config("method.name=naive")
    bundle = build_dataset(config.data)

    def evaluate(method, model, dataset, config, device, num_classes, *, per_sample=False):
        result = real_evaluate(method, model, dataset, config, device, num_classes, per_sample=per_sample)
        if dataset is bundle.splits["val"] and len(weights) < 3:  # the validation after each of the 3 epochs
            weights.append({k: v.clone() for k, v in model.state_dict().items()})
            result["acc"] = next(scripted)
        return result

    monkeypatch.setattr(training, "evaluate", evaluate)
    result = training.train(config, tmp_path / "run", bundle=bundle)
    assert result["best_epoch"] == 1 and len(weights) == 3
    kept = load_model(tmp_path / "run").state_dict()
    assert all(torch.equal(kept[k], weights[1][k]) for k in kept)
    assert not all(torch.equal(kept[k], weights[2][k]) for k in kept)  # the last epoch's weights are others


def test_unknown_keys_and_values_get_specific_messages():
    with pytest.raises(ConfigError, match=r"train\.epocs: unknown key\. Did you mean 'epochs'"):
        resolve_config(None, ["train.epocs=3"])
    with pytest.raises(ConfigError, match=r"optim\.lr: .*greater than 0"):
        resolve_config(None, ["optim.lr=-1"])
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        resolve_config(None, ["train.epochs"])


def test_unimodal_rejects_unknown_modality(tmp_path, tiny_config):
    with pytest.raises(ConfigError, match="no modality 'c'"):
        train(tiny_config("method.name=unimodal", "method.options.modality=c"), tmp_path / "run")


def test_existing_run_is_not_overwritten_and_resume_needs_same_config(tmp_path, tiny_config):
    train(tiny_config(), tmp_path / "run")
    with pytest.raises(RunFolderError, match="--resume"):
        train(tiny_config(), tmp_path / "run")
    with pytest.raises(RunFolderError, match=r"optim\.lr: 0\.001 -> 0\.01"):
        train(tiny_config("optim.lr=0.01"), tmp_path / "run", resume=True)


def test_pipeline_summary_has_the_documented_shape(tmp_path, tiny_config):
    summary = run_pipeline(tiny_config(), tmp_path / "demo", log=lambda *_: None)
    assert set(summary["methods"]) == {"unimodal:a", "unimodal:b", "naive", "ume", "umt"}
    assert set(summary["probe"]) == {"unimodal", "naive", "umt"}
    assert all(set(row) == {"a", "b"} for row in summary["probe"].values())
    assert summary["guide"]["choice"] in ("ume", "umt") and summary["guide"]["reason"]
    on_disk = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert on_disk == json.loads(json.dumps(summary))
    # Probes are cached in each run folder, reused while their key holds, recomputed when any of its
    # parts (the probe settings, the run's checkpoint, the data) changed.
    naive = RunDir(tmp_path / "demo" / "naive")

    def mark_the_cache():  # a value no probe computes: seen only if the cache is read
        stored = json.loads(naive.probe_file.read_text())
        stored["results"]["a"]["test_acc"] = -1.0
        naive.probe_file.write_text(json.dumps(stored))

    mark_the_cache()
    assert probe_run(naive.path)["a"]["test_acc"] == -1.0
    assert probe_run(naive.path, config=ProbeConfig(steps=50))["a"]["test_acc"] >= 0
    mark_the_cache()
    checkpoint = load_checkpoint(naive.best)
    checkpoint["model"] = {k: v + 0.01 if v.is_floating_point() else v for k, v in checkpoint["model"].items()}
    save_checkpoint(naive.best, checkpoint)
    assert probe_run(naive.path, config=ProbeConfig(steps=50))["a"]["test_acc"] >= 0
    mark_the_cache()
    other_data = build_dataset(tiny_config("data.options.seed=1").data)
    assert probe_run(naive.path, config=ProbeConfig(steps=50), bundle=other_data)["a"]["test_acc"] >= 0


def test_cli_resume_alone_continues_the_run_as_configured(tmp_path, capsys):
    from latefusion.cli import main

    run = str(tmp_path / "run")
    assert main(["train", "--out", run, "--set", "train.epochs=2", "--set", "data.options.train_size=200", "--set", "train.progress=false"]) == 0
    result = RunDir(run).result()
    line = capsys.readouterr().out  # one line: the scores and where the rest is
    assert line.count("\n") == 1 and f"val {result['val_acc']:.3f}  test {result['test_acc']:.3f}" in line and "result.json" in line
    assert main(["train", "--out", run, "--resume", "--json"]) == 0  # no config repeated: the stored one is used
    assert json.loads(capsys.readouterr().out) == {k: v for k, v in result.items() if k != "environment"}


