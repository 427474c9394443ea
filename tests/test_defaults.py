"""Defaults that train on a user's small data: `data.batch_size=auto` (one rule, engine.train_batch_size,
used by the loader, the steps per epoch and the checks; recorded in result.json and on the console;
config.yaml keeps "auto", so a run resumes) and number columns standardised with the statistics of
the training split (data/standardize.py), switchable."""

import importlib
import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from latefusion import distributed
from latefusion.config import RunConfig
from latefusion.data import build_dataset
from latefusion.engine import make_loader, train_batch_size
from latefusion.errors import RunFolderError
from latefusion.resolve import resolve_config
from latefusion.runs import RunDir

training = importlib.import_module("latefusion.train")  # the module; `latefusion.train` is also the function
REPO = Path(__file__).resolve().parents[1]


def small(*overrides: str, train_size: int = 100) -> RunConfig:
    """Synthetic data of `train_size` training samples, data.batch_size left at its default."""
    return resolve_config(None, ["data.name=synthetic-unimodal", f"data.options.train_size={train_size}", "data.options.val_size=60",
                                 "data.options.test_size=60", "train.epochs=1", "train.progress=false", *overrides])


# --- data.batch_size=auto -------------------------------------------------------------------------

@pytest.mark.parametrize("n_train, expected", [
    (0, 8), (30, 8), (159, 8), (160, 16), (319, 16), (320, 32), (600, 32), (1279, 64), (1280, 128), (2000, 128), (10**6, 128),
])
def test_auto_batch_size_is_the_largest_power_of_two_within_a_tenth_of_train_clamped_to_8_and_128(n_train, expected):
    config = RunConfig()
    assert config.data.batch_size == "auto"
    assert train_batch_size(config, n_train) == expected


def test_a_number_is_used_as_given_and_registered_data_sets_keep_theirs():
    assert train_batch_size(resolve_config(None, ["data.batch_size=100"]), 600) == 100
    assert resolve_config(None, ["data.name=avdigits"]).data.batch_size == 64
    for base in sorted((REPO / "configs").rglob("base.yaml")):
        assert isinstance(resolve_config(base.parent / "naive.yaml").data.batch_size, int), base


@pytest.mark.parametrize("preset", ["synthetic-unimodal", "synthetic-paired"])
def test_the_synthetic_presets_still_train_with_128(preset):
    config = resolve_config(None, [f"data.name={preset}"])
    assert train_batch_size(config, len(build_dataset(config.data).splits["train"])) == 128  # 2,000 samples


@pytest.mark.parametrize("world, expected", [(2, 32), (3, 33), (8, 32), (48, 48), (200, 200)])
def test_auto_is_rounded_up_to_a_multiple_of_the_process_count(monkeypatch, world, expected):
    monkeypatch.setattr(distributed, "world_size", lambda: world)
    size = train_batch_size(RunConfig(), 600)
    assert size == expected and distributed.local_batch_size(size) == size // world


def test_the_loader_batches_by_the_auto_size_of_the_whole_training_split():
    config = small(train_size=600)
    train = build_dataset(config.data).splits["train"]
    sizes = [len(labels) for _, labels in make_loader(train, config, train=True)]
    assert sizes == [32] * 18 + [24] and len(sizes) == distributed.steps_per_epoch(600, 32)
    # Part of the split (G-Blending's training part) batched as the whole split is.
    part = train.subset(list(range(300)))
    assert [len(labels) for _, labels in make_loader(part, config, train=True, n_train=600)] == [32] * 9 + [12]
    assert len(next(iter(make_loader(part, config, train=True)))[1]) == 16  # 300 samples alone would give 16
    resumed = [len(labels) for _, labels in make_loader(train, config, train=True, start_step=10)]
    assert resumed == sizes[10:]


def test_the_loader_follows_the_training_splits_own_order_and_resumes_inside_it():
    """A method's training split may arrange its epochs (Split.training_order; Remix does): the loader
    batches that order, and a run resumed at a step skips the batches before it."""

    class Reversed(type(build_dataset(small().data).splits["train"])):
        def training_order(self, generator):
            return list(range(len(self)))[::-1]

    config = small("data.batch_size=8", train_size=40)
    train = build_dataset(config.data).splits["train"]
    backwards = Reversed(train.inputs, train.labels)
    labels = [y.tolist() for _, y in make_loader(backwards, config, train=True, epoch=3)]
    assert labels == [train.labels[i - 8:i].flip(0).tolist() for i in range(40, 0, -8)]
    assert [y.tolist() for _, y in make_loader(backwards, config, train=True, epoch=3, start_step=2)] == labels[2:]


def test_an_auto_run_records_the_batch_size_it_used_and_keeps_auto_in_its_config(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="latefusion.train"):
        result = training.train(small("train.progress=true", "train.epochs=2"), tmp_path / "run")
    run = RunDir(tmp_path / "run")
    assert run.config().data.batch_size == "auto" and "batch_size: auto" in run.config_file.read_text()
    assert result["batch_size"] == 8 and result["n_train"] == 100
    assert result["steps_per_epoch"] == math.ceil(100 / 8) == 13 and result["optimizer_steps"] == 2 * 13
    assert run.result()["batch_size"] == 8
    assert "run: 100 training samples, batch size 8 (data.batch_size=auto), 13 steps per epoch, 2 epochs" in caplog.text


def test_an_auto_run_stopped_mid_epoch_resumes_to_the_same_result(tmp_path, monkeypatch):
    config = small("train.epochs=2", "train.checkpoint_every_steps=5")
    training.train(config, tmp_path / "whole")
    save = training.save_checkpoint

    def killed_at_epoch_1_step_5(path, state):
        save(path, state)
        if Path(path).name == "last.pt" and (state["epoch"], state["step"]) == (1, 5):
            raise KeyboardInterrupt("killed inside epoch 1")
    monkeypatch.setattr(training, "save_checkpoint", killed_at_epoch_1_step_5)
    with pytest.raises(KeyboardInterrupt):
        training.train(config, tmp_path / "resumed")
    monkeypatch.setattr(training, "save_checkpoint", save)
    resumed = training.train(config, tmp_path / "resumed", resume=True)

    def comparable(result):
        return {k: v for k, v in result.items() if k not in ("wall_time_s", "environment")}
    assert comparable(resumed) == comparable(RunDir(tmp_path / "whole").result()) and resumed["batch_size"] == 8
    assert (RunDir(tmp_path / "resumed").metrics_file.read_text() == RunDir(tmp_path / "whole").metrics_file.read_text())


def test_resuming_where_auto_resolves_to_another_batch_size_is_refused(tmp_path):
    config = small()
    resumed = {"config": config.model_dump(mode="json"), "fingerprints": {"data": "d"}, "batch_size": 8}
    training.refuse_changed_inputs(RunDir(tmp_path), resumed, config, {"data": "d"}, 8)
    with pytest.raises(RunFolderError, match=r"training batch size: 8 -> 9 .*as many processes as before"):
        training.refuse_changed_inputs(RunDir(tmp_path), resumed, config, {"data": "d"}, 9)


# --- number columns standardised with the train split's statistics ---------------------------------

def write_numbers(folder: Path, rows: list[tuple[str, str, str, list[float]]]) -> Path:
    """A manifest of number columns w.f0, w.f1, w.f2 plus a file-free second modality `z.v`."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["id,label,split,w.f0,w.f1,w.f2,z.v"]
    lines += [f"{sid},{label},{split},{','.join(str(v) for v in values)},{i % 5}" for i, (sid, label, split, values) in enumerate(rows)]
    (folder / "manifest.csv").write_text("\n".join(lines) + "\n")
    return folder


def numbers_rows(seed: int = 0, n_train: int = 60):
    """Train rows around (1, -2, constant 5); val and test rows far away (around 1000, constant 7), so
    statistics that let them in differ grossly from the train ones."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_train):
        rows.append((f"t{i}", "ab"[i % 2], "train", [float(rng.normal(1, 2)), float(rng.normal(-2, 0.5)) + i % 2, 5.0]))
    for split in ("val", "test"):
        for i in range(20):
            rows.append((f"{split}{i}", "ab"[i % 2], split, [float(rng.normal(1000, 50)), float(rng.normal(900, 5)), 7.0]))
    return rows


def folder_config(path: Path, *overrides: str):
    return resolve_config(None, ["data.name=folder", f"data.path={path}", "train.epochs=1", "train.progress=false", *overrides])


def stage_of(bundle, name: str) -> dict:
    return bundle.modality(name).stage


def test_number_columns_are_standardised_with_the_train_split_only(tmp_path):
    rows = numbers_rows()
    bundle = build_dataset(folder_config(write_numbers(tmp_path / "d", rows)).data)
    train = np.array([values for _, _, split, values in rows if split == "train"], np.float64)
    stage = stage_of(bundle, "w")
    assert stage["name"] == "standardize"
    np.testing.assert_allclose(stage["mean"], [train[:, 0].mean(), train[:, 1].mean(), 5.0], rtol=1e-6)
    np.testing.assert_allclose(stage["std"], [train[:, 0].std(), train[:, 1].std(), 1.0], rtol=1e-6)  # constant: std 1
    # Through the model's input stage: the train split comes out centred and of unit spread, the
    # constant feature centred (0) and never divided by zero (test's 7 -> 2).
    from latefusion.models import build_late_fusion
    from latefusion.config import ModelConfig
    encoder = build_late_fusion(bundle, ModelConfig(), ["w"]).encoders["w"]
    seen = encoder.stage(bundle.splits["train"].inputs["w"]).double()
    np.testing.assert_allclose(seen.mean(0), [0, 0, 0], atol=1e-5)
    np.testing.assert_allclose(seen.std(0, unbiased=False), [1, 1, 0], atol=1e-5)
    assert torch.equal(encoder.stage(bundle.splits["test"].inputs["w"])[:, 2], torch.full((20,), 2.0))
    # Both number-column modalities are standardised; the folder carves no val split here (it has one).
    assert stage_of(bundle, "z")["name"] == "standardize" and len(bundle.splits["val"]) == 20


def test_the_switch_turns_standardisation_off(tmp_path):
    path = write_numbers(tmp_path / "d", numbers_rows())
    bundle = build_dataset(folder_config(path, "data.options.standardize_numbers=false").data)
    assert stage_of(bundle, "w") is None and stage_of(bundle, "z") is None
    from latefusion.models import build_late_fusion
    from latefusion.config import ModelConfig
    assert not hasattr(build_late_fusion(bundle, ModelConfig(), ["w"]).encoders["w"], "stage")
    on = build_dataset(folder_config(path).data)
    assert on.fingerprint != bundle.fingerprint and on.fingerprint == build_dataset(folder_config(path).data).fingerprint


def test_train_rows_that_skip_bad_drops_are_not_counted(tmp_path):
    """A train row holding inf and a train row whose id is also a test row's (leaked-id) are dropped by
    --skip-bad; the statistics are those of the train rows left."""
    rows = numbers_rows()
    rows.append(("bad-inf", "a", "train", [float("inf"), 1e6, 5.0]))
    rows.append(("test0", "b", "train", [1e6, 1e6, 5.0]))  # the id of a test row
    bundle = build_dataset(folder_config(write_numbers(tmp_path / "d", rows), "data.skip_bad=true").data)
    kept = np.array([values for _, _, split, values in rows[:60]], np.float64)
    assert len(bundle.splits["train"]) == 60
    np.testing.assert_allclose(stage_of(bundle, "w")["mean"][:2], kept[:, :2].mean(0), rtol=1e-6)
    np.testing.assert_allclose(stage_of(bundle, "w")["std"][:2], kept[:, :2].std(0), rtol=1e-6)


def test_npz_and_in_memory_vectors_are_standardised_too_and_can_be_left_as_they_are(tmp_path):
    from latefusion.data import from_arrays
    rng = np.random.default_rng(0)
    x = {split: rng.normal(10 if split == "train" else 500, 3, (40, 4)).astype(np.float32) for split in ("train", "val", "test")}
    y = {split: np.arange(40) % 2 for split in x}
    np.savez(tmp_path / "d.npz", v=np.concatenate(list(x.values())), label=np.concatenate(list(y.values())),
             split=np.repeat(["train", "val", "test"], 40), img=np.zeros((120, 1, 4, 4), np.float32))
    bundle = build_dataset(folder_config(tmp_path / "d.npz").data)
    np.testing.assert_allclose(stage_of(bundle, "v")["mean"], x["train"].astype(np.float64).mean(0), rtol=1e-5)
    assert stage_of(bundle, "img") is None  # images and audio are left to their encoders
    memory = from_arrays(**{split: {"v": x[split], "label": y[split]} for split in x})
    np.testing.assert_allclose(stage_of(memory, "v")["std"], x["train"].astype(np.float64).std(0), rtol=1e-5)
    assert stage_of(from_arrays(**{split: {"v": x[split], "label": y[split]} for split in x}, standardize_numbers=False), "v") is None


def test_a_finished_run_keeps_the_statistics_it_was_trained_with(tmp_path):
    """The statistics are stored in the run's data.json; the loaded model standardises new data with
    them (not with statistics of the data it is given)."""
    from latefusion.methods import load_model
    path = write_numbers(tmp_path / "d", numbers_rows())
    config = folder_config(path, "method.name=naive")
    bundle = build_dataset(config.data)
    training.train(config, tmp_path / "run", bundle=bundle)
    run = RunDir(tmp_path / "run")
    assert run.spec().modality("w").stage == stage_of(bundle, "w")
    model = load_model(run)
    assert torch.equal(model.encoders["w"].stage.mean, torch.tensor(stage_of(bundle, "w")["mean"]))
    write_numbers(tmp_path / "d", numbers_rows(seed=1))  # other data in the folder: the run's statistics stay
    assert torch.equal(load_model(run).encoders["w"].stage.mean, model.encoders["w"].stage.mean)
