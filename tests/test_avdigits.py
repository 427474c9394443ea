import pytest
import torch

from latefusion.config import DataConfig
from latefusion.data import build_dataset
from latefusion.data.avdigits import AVDigitsOptions, degrade_audio, degrade_image, sample_generator


def test_embedded_data_loads_with_fixed_degradation():
    first, second = build_dataset(DataConfig(name="avdigits")), build_dataset(DataConfig(name="avdigits"))
    assert first.modality_names == ["image", "audio"] and first.num_classes == 10
    assert {s: len(first.splits[s]) for s in ("train", "val", "test")} == {"train": 1078, "val": 359, "test": 360}
    for split in ("train", "test"):
        a, b = first.splits[split], second.splits[split]
        assert torch.equal(a.inputs["audio"], b.inputs["audio"]) and torch.equal(a.inputs["image"], b.inputs["image"])
        assert set(a.labels.tolist()) == set(range(10))
    images = first.splits["train"].inputs["image"]
    assert images.shape[1:] == (1, 8, 8) and 0 <= images.min() and images.max() <= 1
    other = build_dataset(DataConfig(name="avdigits", options={"seed": 1}))
    assert not torch.equal(other.splits["train"].inputs["audio"], first.splits["train"].inputs["audio"])


def test_degradation_hits_its_targets():
    options = AVDigitsOptions()
    clean = torch.full((8, 8), 16, dtype=torch.uint8)
    image = degrade_image(clean, sample_generator(0, 7, 0), AVDigitsOptions(image_noise=0))
    assert (image == 0).sum() == options.occlusion**2  # exactly the occluded patch is dark
    tone = (8000 * torch.sin(torch.arange(8000) * 0.3)).to(torch.int16)
    snrs = []
    for index in range(200):
        noisy = degrade_audio(tone, sample_generator(0, index, 1), options)
        signal = tone.float() / 32768
        snrs.append(10 * torch.log10(signal.pow(2).mean() / (noisy - signal).pow(2).mean()).item())
    assert options.snr_db_min - 0.5 <= min(snrs) and max(snrs) <= options.snr_db_max + 0.5
    assert max(snrs) - min(snrs) > 5  # drawn across the range, not fixed


@pytest.mark.slow
def test_quick_demo_on_embedded_data_fuses_better_than_each_modality(tmp_path):
    from latefusion.resolve import resolve_config
    from latefusion.pipeline import run_pipeline

    summary = run_pipeline(resolve_config(None, ["data.name=avdigits", "train.progress=false"], quick=True), tmp_path, log=lambda *_: None)
    test = {name: r["test_acc"] for name, r in summary["methods"].items()}
    chance = 1 / 10
    for modality in ("image", "audio"):
        assert test[f"unimodal:{modality}"] > chance + 0.3
        for fused in ("naive", "ume", "umt"):
            assert test[fused] > test[f"unimodal:{modality}"] + 0.05
