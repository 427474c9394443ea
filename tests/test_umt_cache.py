import logging

import torch

from latefusion.data import build_dataset
from latefusion.methods import build_method
from latefusion.pipeline import method_config
from latefusion.train import train


def teachers_and_umt(tmp_path, tiny_config, **options):
    base = tiny_config()
    bundle = build_dataset(base.data)
    teachers = {}
    for m in bundle.modality_names:
        teachers[m] = str(tmp_path / f"unimodal-{m}")
        train(method_config(base, "unimodal", {"modality": m}), teachers[m], bundle=bundle)
    umt = build_method(method_config(base, "umt", {"teachers": teachers, **options}), bundle.spec)
    return bundle, umt, teachers


def test_cached_teacher_features_give_the_live_loss(tmp_path, tiny_config):
    bundle, umt, teachers = teachers_and_umt(tmp_path, tiny_config)
    split = umt.train_split(bundle.splits["train"])
    assert all(any((tmp_path / f"unimodal-{m}" / "features").glob("*.pt")) for m in teachers)
    model = umt.build_model()
    batch = [3, 17, 42, 99]
    cached_inputs, labels = split.__getitems__(batch)
    live_inputs, _ = bundle.splits["train"].__getitems__(batch)
    assert set(cached_inputs) == {"a", "b", "teacher:a", "teacher:b"}
    cached_loss, _ = umt.training_loss(model, cached_inputs, labels)
    live_loss, _ = umt.training_loss(model, live_inputs, labels)
    torch.testing.assert_close(cached_loss, live_loss)
    # A second UMT run reads the stored features instead of recomputing them.
    again = build_method(umt.config, bundle.spec).train_split(bundle.splits["train"])
    torch.testing.assert_close(again.features["a"], split.features["a"])


def test_augmenting_split_runs_teachers_live_and_says_so(tmp_path, tiny_config, caplog):
    bundle, umt, _ = teachers_and_umt(tmp_path, tiny_config)
    augmenting = bundle.splits["train"]
    augmenting.transform = lambda inputs: {m: x + 0.01 * torch.randn_like(x) for m, x in inputs.items()}
    with caplog.at_level(logging.INFO, logger="latefusion"):
        assert umt.train_split(augmenting) is augmenting
    assert "running the teachers live" in caplog.text


def test_cache_off_runs_teachers_live(tmp_path, tiny_config):
    bundle, umt, _ = teachers_and_umt(tmp_path, tiny_config, teacher_cache="off")
    assert umt.train_split(bundle.splits["train"]) is bundle.splits["train"]
