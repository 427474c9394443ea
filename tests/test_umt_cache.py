import logging

import torch

from latefusion.data import build_dataset
from latefusion.methods import StepInfo, TrainingContext, build_method
from latefusion.pipeline import method_config
from latefusion.runs import RunDir
from latefusion.storage import load_checkpoint, save_checkpoint
from latefusion.train import train


def teachers_and_umt(tmp_path, tiny_config, **options):
    base = tiny_config()
    bundle = build_dataset(base.data)
    teachers = {}
    for m in bundle.modality_names:
        teachers[m] = str(tmp_path / f"unimodal-{m}")
        train(method_config(base, "unimodal", {"modality": m}), teachers[m], bundle=bundle)
    config = method_config(base, "umt", {"teachers": teachers, **options})
    return bundle, config, teachers


def prepared(config, bundle, folder):
    umt = build_method(config, bundle.spec)
    model = umt.build_model()
    split = umt.prepare(model, TrainingContext(config, bundle, RunDir(folder), torch.device("cpu")))
    return umt, model, split


def test_cached_teacher_features_give_the_live_loss_and_are_read_back(tmp_path, tiny_config):
    bundle, config, teachers = teachers_and_umt(tmp_path, tiny_config)
    umt, model, split = prepared(config, bundle, tmp_path / "umt")
    cache_files = sorted((tmp_path / "umt" / "cache").glob("teacher-*.pt"))
    assert len(cache_files) == 2 and not any((tmp_path / f"unimodal-{m}" / "cache").exists() for m in teachers)
    batch = [3, 17, 42, 99]
    cached_inputs, labels = split.__getitems__(batch)
    live_inputs, _ = bundle.splits["train"].__getitems__(batch)
    assert set(cached_inputs) == {"a", "b", "teacher:a", "teacher:b"}
    step = StepInfo(0)
    torch.testing.assert_close(umt.loss(model, cached_inputs, labels, step).loss, umt.loss(model, live_inputs, labels, step).loss)
    # A second set-up in the same folder reads the stored features: replaced by zeros, zeros come back.
    for path in cache_files:
        save_checkpoint(path, {"features": torch.zeros_like(load_checkpoint(path)["features"])})
    _, _, again = prepared(config, bundle, tmp_path / "umt")
    assert all(torch.count_nonzero(f) == 0 for f in again.features.values())


def test_the_cache_key_follows_the_teacher_weights(tmp_path, tiny_config):
    bundle, config, teachers = teachers_and_umt(tmp_path, tiny_config)
    prepared(config, bundle, tmp_path / "umt")
    retrained = tmp_path / "unimodal-a-retrained"
    seed5 = method_config(config, "unimodal", {"modality": "a"})
    seed5 = seed5.model_copy(update={"train": seed5.train.model_copy(update={"seed": 5})})
    train(seed5, retrained, bundle=bundle)
    other = method_config(config, "umt", {"teachers": {**teachers, "a": str(retrained)}})
    prepared(other, bundle, tmp_path / "umt-other")
    names = {folder: sorted(p.name for p in (tmp_path / folder / "cache").glob("teacher-*.pt")) for folder in ("umt", "umt-other")}
    assert names["umt"][0] != names["umt-other"][0]  # teacher a changed: another key
    assert names["umt"][1] == names["umt-other"][1]  # teacher b and the data did not: the same key


def test_augmenting_split_runs_teachers_live_and_says_so(tmp_path, tiny_config, caplog):
    bundle, config, _ = teachers_and_umt(tmp_path, tiny_config)
    train_split = bundle.splits["train"]
    train_split.transform = lambda inputs: {m: x + 0.01 * torch.randn_like(x) for m, x in inputs.items()}
    train_split.augments = True
    bundle.splits["train"] = train_split.subset(list(range(100)))  # what --skip-bad returns keeps the declaration
    with caplog.at_level(logging.INFO, logger="latefusion"):
        _, _, split = prepared(config, bundle, tmp_path / "umt")
    assert split is bundle.splits["train"]
    assert "running the teachers live" in caplog.text


def test_cache_off_runs_teachers_live(tmp_path, tiny_config):
    bundle, config, _ = teachers_and_umt(tmp_path, tiny_config, teacher_cache="off")
    _, _, split = prepared(config, bundle, tmp_path / "umt")
    assert split is bundle.splits["train"]
