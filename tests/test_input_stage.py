"""The device-side input stage: compact loader batches + stage give the model inputs the loader used
to compute on the CPU (the reference formulas below are that former CPU path), with the same crops
and flips; the stage travels with the run's spec and adds nothing to a state dict."""

from __future__ import annotations

import torch

from latefusion.config import ModelConfig
from latefusion.data import DataBundle, DataSpec, Modality, TensorSplit
from latefusion.data.augment import AudioAugment, AudioTransform, FlowTransform, FrameTransform, ImageAugment, crop_clips
from latefusion.models import build_late_fusion
from latefusion.models.input_stage import IMAGENET_MEAN, IMAGENET_STD, Staged, build_input_stage


def former_frames(x, options, train):
    out, _ = crop_clips(x, options, train)
    return (out.float() - torch.tensor(IMAGENET_MEAN).view(3, 1, 1) * 255) / (torch.tensor(IMAGENET_STD).view(3, 1, 1) * 255)


def former_flow(x, options, train):
    out, flips = crop_clips(x, options, train)
    out = (out.float() - 128.0) / 128.0
    out[flips, :, 0] = -out[flips, :, 0]
    return out.flatten(1, 2), flips


def former_audio(x, window, n_fft, hop, train):
    starts = torch.randint(0, x.shape[1] - window + 1, (len(x), 1)) if train else torch.full((len(x), 1), (x.shape[1] - window) // 2)
    wave = torch.gather(x, 1, starts + torch.arange(window)).float() / 32768.0
    spec = torch.stft(wave, n_fft, hop, window=torch.hann_window(n_fft), return_complex=True)
    return torch.log(spec.abs() + 1e-7).unsqueeze(1)


def test_frames_views_flow_and_audio_match_the_former_cpu_path():
    g = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (16, 3, 40, 36, 3), dtype=torch.uint8, generator=g)
    flow = torch.randint(0, 256, (16, 2, 40, 36, 2), dtype=torch.uint8, generator=g)
    flow[:, :, :4] = 0  # the extremes, where a flip's negation must stay exact (-(0 - 128) = +128)
    flow[:, :, -4:] = 255
    wave = torch.randint(-32768, 32768, (16, 4000), dtype=torch.int16, generator=g)
    options = ImageAugment(crop=24)
    for train in (True, False):
        transform = FrameTransform(options, train)
        stage = build_input_stage(transform.stage)
        for stored in (frames, frames[:, 0]):  # clips of frames, single views
            torch.manual_seed(1)
            old = former_frames(stored if stored.dim() == 5 else stored.unsqueeze(1), options, train)
            torch.manual_seed(1)
            batch = transform(stored)
            assert batch.dtype == torch.uint8
            assert torch.equal(stage(batch), old if stored.dim() == 5 else old[:, 0])

        transform = FlowTransform(options, train)
        torch.manual_seed(2)
        old, flips = former_flow(flow, options, train)
        torch.manual_seed(2)
        batch = transform(flow)
        assert batch.dtype == torch.int16
        assert torch.equal(build_input_stage(transform.stage)(batch), old)
        assert flips.any() and (~flips).any() if train else not flips.any()

        transform = AudioTransform(AudioAugment(seconds=0.125, n_fft=64, hop=32), 16000, train)
        torch.manual_seed(3)
        old = former_audio(wave, 2000, 64, 32, train)
        torch.manual_seed(3)
        batch = transform(wave)
        assert batch.dtype == torch.int16 and batch.shape == (16, 2000)
        new = build_input_stage(transform.stage)(batch)
        assert new.shape == (16, *transform.shape((4000,)))
        torch.testing.assert_close(new, old, rtol=0, atol=0)


def test_flow_flip_negates_x_through_the_stage():
    flow = torch.zeros(8, 1, 6, 6, 2, dtype=torch.uint8)  # x = 0: the fastest motion to the left
    flow[..., 1] = torch.arange(6, dtype=torch.uint8) * 40  # y rises to the right: shows the mirror
    torch.manual_seed(0)
    transform = FlowTransform(ImageAugment(crop=6, scale_min=1.0), train=True)
    out = build_input_stage(transform.stage)(transform(flow))
    flipped = out[:, 0, 0, 0] > 0
    assert flipped.any() and (~flipped).any()
    assert torch.equal(out[flipped, 0], torch.ones_like(out[flipped, 0]))  # -(0 - 128) / 128, exactly
    assert torch.equal(out[~flipped, 0], -torch.ones_like(out[~flipped, 0]))
    y_falls_to_the_right = out[:, 1, :, 0].mean(1) > out[:, 1, :, -1].mean(1)
    assert torch.equal(y_falls_to_the_right, flipped)  # the flipped fields are mirrored too


def test_stage_is_built_from_the_spec_and_changes_no_state_dict():
    modalities = [Modality("visual", "frames", (2, 3, 16, 16), {"name": "imagenet"}),
                  Modality("audio", "audio", (1, 33, 26), {"name": "log-spectrogram", "n_fft": 64, "hop": 32})]
    inputs = {"visual": torch.randint(0, 256, (4, 2, 3, 16, 16), dtype=torch.uint8), "audio": torch.randint(-999, 999, (4, 800), dtype=torch.int16)}
    split = TensorSplit(inputs, torch.arange(4) % 2)
    bundle = DataBundle("staged", modalities, 2, encoders={m.name: {"name": "resnet18", "options": {"width": 4}} for m in modalities},
                        splits={"train": split, "val": split, "test": split})
    assert DataSpec.from_json(bundle.spec.to_json()).modalities == modalities
    model = build_late_fusion(bundle, ModelConfig(feature_dim=8), ["visual", "audio"]).eval()
    assert all(isinstance(model.encoders[m], Staged) for m in ("visual", "audio"))
    assert not any(key.split(".")[2] == "stage" for key in model.state_dict())
    assert model(inputs).shape == (4, 2)
    # As on a GPU: channels_last weights and bf16 autocast; the stage's output stays float32 and the
    # convolutions after it take it as usual.
    model = model.to(memory_format=torch.channels_last)
    full = model(inputs)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert model.encoders["audio"].stage(inputs["audio"]).dtype == torch.float32
        assert model.encoders["audio"].encoder.stem(model.encoders["audio"].stage(inputs["audio"])).dtype == torch.bfloat16
        torch.testing.assert_close(model(inputs).float(), full, rtol=0.05, atol=0.05)


def former_logmel(wave, sample_rate, n_fft, hop, n_mels):
    """The audio-cnn front-end as it was before it shared the input stage's STFT."""
    from latefusion.models.audio import mel_filterbank

    spec = torch.stft(wave.float(), n_fft, hop, window=torch.hann_window(n_fft), return_complex=True).abs() ** 2
    mel = torch.log(torch.einsum("bft,fm->bmt", spec, mel_filterbank(sample_rate, n_fft, n_mels)) + 1e-6)
    return ((mel - mel.mean(dim=(1, 2), keepdim=True)) / (mel.std(dim=(1, 2), keepdim=True) + 1e-5)).unsqueeze(1)


def test_log_mel_and_log_spectrogram_share_one_stft_with_the_former_outputs():
    from latefusion.models.audio import AudioCNN
    from latefusion.models.input_stage import Spectrogram

    wave = torch.randn(4, 1000, generator=torch.Generator().manual_seed(0))
    encoder = AudioCNN((1000,), 8, sample_rate=4000, n_fft=128, hop=32, n_mels=20)
    stage = build_input_stage({"name": "log-spectrogram", "n_fft": 128, "hop": 32})
    assert isinstance(encoder.logmel.spectrogram, Spectrogram) and isinstance(stage.spectrogram, Spectrogram)
    assert torch.equal(encoder.logmel(wave), former_logmel(wave, 4000, 128, 32, 20))
    assert not encoder.state_dict().keys() & {"logmel.spectrogram.window", "logmel.window"}


def test_clips_shorter_than_one_stft_window_are_padded():
    from latefusion.models.audio import AudioCNN

    for samples in (1, 60, 127):
        encoder = AudioCNN((samples,), 8, n_fft=128, hop=32).eval()
        assert encoder(torch.randn(2, samples)).shape == (2, 8)
    stage = build_input_stage({"name": "log-spectrogram", "n_fft": 128, "hop": 32})
    assert stage(torch.zeros(2, 10, dtype=torch.int16)).shape == (2, 1, 65, 5)
