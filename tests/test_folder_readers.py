"""Bring-your-own data, the readers: number columns as a tabular modality, images of mixed sizes, WAV
of every common sample format and other audio through PyAV (resampled to one rate), and files whose
headers declare more than may be read."""

import struct
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

from latefusion.config import DataConfig
from latefusion.data import DATASETS, build_dataset
from latefusion.data.checks import check_bundle
from latefusion.data.files import FileProblem, read_npy, read_wav, resample
from latefusion.data.folder import DataFormatError, read_image_file


def manifest(folder, header, rows):
    folder.mkdir(exist_ok=True)
    (folder / "manifest.csv").write_text("\n".join([header, *rows]) + "\n")
    return folder


def bundle_of(folder, **options):
    return DATASETS.get("folder")(DataConfig(name="folder", path=str(folder), options=options))


def problems_of(folder, **options):
    return {(p.kind, p.where): p.message for p in check_bundle(bundle_of(folder, **options))}


# 1. number columns <modality>.<feature>

def test_number_columns_form_one_vector_modality_in_column_order(tmp_path):
    rows = [f"s{i},{'ab'[i % 2]},{'test' if i >= 8 else 'train'},{i},{10 * i},{-i},{i}.npy" for i in range(10)]
    folder = manifest(tmp_path / "d", "id,label,split,sensor.z,sensor.x,other.a,feats", rows)
    for i in range(10):
        np.save(folder / f"{i}.npy", np.full(2, i, np.float32))
    bundle = bundle_of(folder)
    assert [(m.name, m.kind, m.shape) for m in bundle.modalities] == [("sensor", "vector", (2,)), ("other", "vector", (1,)), ("feats", "vector", (2,))]
    assert bundle.encoders["sensor"] == {"name": "mlp", "options": {}}
    test = bundle.splits["test"]
    assert test.sample_ids() == ["s8", "s9"]
    np.testing.assert_array_equal(test.inputs["sensor"].numpy(), [[8, 80], [9, 90]])  # z then x: column order
    assert check_bundle(bundle) == []


def test_a_cell_that_is_not_a_number_is_a_problem_of_its_sample(tmp_path):
    rows = [f"s{i},{'ab'[i % 2]},{'test' if i >= 8 else 'train'},{i},{2 * i}" for i in range(10)]
    rows[3] = "s3,b,train,3,n/a"
    rows[4] = "s4,a,train,,8"
    folder = manifest(tmp_path / "d", "id,label,split,sensor.x,sensor.y", rows)
    problems = {kind: message for (kind, _), message in problems_of(folder).items()}  # where: after carving val out of train
    assert problems == {"non-numeric": "line 5 (id 's3'), modality 'sensor': column 'sensor.y' holds 'n/a', not a number",
                        "missing-modality": "line 6 (id 's4'), modality 'sensor': column 'sensor.x' is empty"}
    kept = build_dataset(DataConfig(name="folder", path=str(folder), skip_bad=True))
    assert "s3" not in kept.splits["train"].sample_ids() + kept.splits["val"].sample_ids()
    assert check_bundle(kept) == []
    with pytest.raises(DataFormatError, match=r"2 problem\(s\) with single samples:\n  line 5 \(id 's3'\), modality 'sensor': column 'sensor.y'"):
        build_dataset(DataConfig(name="folder", path=str(folder), check=False))


def test_number_columns_that_cannot_be_a_modality_are_refused(tmp_path):
    def expect(header, pattern, cells="1,2"):
        folder = manifest(tmp_path / "d", header, [f"s{i},{i % 2},train,{cells}" for i in range(4)])
        with pytest.raises(DataFormatError, match=pattern):
            bundle_of(folder)

    expect("id,label,split,sensor,sensor.x", r"modality 'sensor' is both a file column and number columns")
    expect("id,label,split,sensor.x,sensor", r"modality 'sensor' is both a file column and number columns")
    expect("id,label,split,sensor.,x.y", r"column 'sensor\.' names no feature")
    expect("id,label,split,training.x,x.y", r"'training' cannot name a modality")
    expect("id,label,split,notes.text,x.y", r"column 'notes\.text' holds no numbers \(first cell 'hello'\)", cells="hello,2")


# 2. images of mixed sizes

def save(folder, name, pixels):
    Image.fromarray(np.asarray(pixels, np.uint8)).save(folder / name)
    return name


def test_mixed_image_sizes_are_refused_unless_image_size_is_set(tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    rows = []
    for i in range(8):
        shape = (6, 10) if i == 2 else (8, 8)
        rows.append(f"s{i},{i % 2},{'test' if i >= 6 else 'train'},{save(folder, f'{i}.png', np.full(shape, 20 * i))}")
    manifest(folder, "id,label,split,image", rows)
    assert problems_of(folder) == {("wrong-shape", "train[2]"): "line 4 (id 's2'), modality 'image': 2.png has shape (1, 6, 10), the other samples "
                                   "(1, 8, 8); every sample of a modality needs the same shape; set data.options.image_size=[H, W] (and image_fit) "
                                   "to resize every image"}
    for size, fit, shape in (([4, 6], "resize", (1, 4, 6)), (5, "resize", (1, 5, 5)), ([3, 7], "center-crop", (1, 3, 7))):
        bundle = bundle_of(folder, image_size=size, image_fit=fit)
        assert bundle.modalities[0].shape == shape and check_bundle(bundle) == []
        np.testing.assert_allclose(bundle.splits["test"].inputs["image"][1].numpy(), 140 / 255, atol=1e-6)  # a flat image stays flat
    with pytest.raises(Exception, match="image_fit"):
        bundle_of(folder, image_size=4, image_fit="pad")


def test_resize_is_antialiased_and_center_crop_keeps_the_middle(tmp_path):
    checker = (np.indices((8, 8)).sum(axis=0) % 2) * 255
    save(tmp_path, "checker.png", checker)
    shrunk = read_image_file(tmp_path / "checker.png", 2)
    np.testing.assert_allclose(shrunk, 0.5, atol=0.02)  # sampling without a filter would give 0s or 1s
    band = np.zeros((4, 12))
    band[:, 4:8] = 255
    save(tmp_path, "band.png", band)
    np.testing.assert_array_equal(read_image_file(tmp_path / "band.png", [4, 4], "center-crop"), np.ones((1, 4, 4), np.float32))
    stretched = read_image_file(tmp_path / "band.png", (4, 4), "resize")
    assert stretched[0, :, 0].max() < 0.5 and stretched[0, :, 1:3].min() > 0.5  # the whole width, squeezed


def test_greyscale_images_join_rgb_ones(tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    rows = [f"s{i},{i % 2},{'test' if i > 5 else 'train'},{save(folder, f'{i}.png', np.full((4, 4, 3) if i else (4, 4), 50 + i))}" for i in range(8)]
    bundle = bundle_of(manifest(folder, "id,label,split,image", rows))
    assert bundle.modalities[0].shape == (3, 4, 4) and check_bundle(bundle) == []


# 3. audio

def wav_bytes(payload, rate, channels, tag, bits, extensible=False):
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", 0xFFFE if extensible else tag, channels, rate, rate * block, block, bits)
    if extensible:  # cbSize, valid bits, channel mask, sub-format GUID (the format tag, then the fixed tail)
        fmt += struct.pack("<HHI", 22, bits, 0b11 if channels == 2 else 0b1) + struct.pack("<H", tag) + b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt
    chunks += b"LIST" + struct.pack("<I", 3) + b"abc\x00"  # an odd-sized chunk before the data, padded
    chunks += b"data" + struct.pack("<I", len(payload)) + payload
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks


def int24(values):
    ints = np.round(values * 2**23).astype(np.int64).clip(-(2**23), 2**23 - 1) & 0xFFFFFF
    return np.stack([ints & 0xFF, (ints >> 8) & 0xFF, ints >> 16], axis=1).astype(np.uint8).tobytes()


TONE = (0.6 * np.sin(np.linspace(0, 20, 400))).astype(np.float32)


@pytest.mark.parametrize("tag,bits,encode,tolerance", [
    (3, 32, lambda x: x.astype("<f4").tobytes(), 0),
    (3, 64, lambda x: x.astype("<f8").tobytes(), 0),
    (1, 24, int24, 2**-23),
    (1, 32, lambda x: np.round(x * 2**31).astype("<i4").tobytes(), 2**-24),
    (1, 16, lambda x: np.round(x * 2**15).astype("<i2").tobytes(), 2**-15),
    (1, 8, lambda x: (np.round(x * 128) + 128).astype(np.uint8).tobytes(), 2**-7),
])
@pytest.mark.parametrize("extensible", [False, True])
def test_wav_sample_formats_read_back(tmp_path, tag, bits, encode, tolerance, extensible):
    path = tmp_path / "a.wav"
    path.write_bytes(wav_bytes(encode(TONE), 8000, 1, tag, bits, extensible))
    samples, rate = read_wav(path)
    assert rate == 8000 and samples.dtype == np.float32 and len(samples) == len(TONE)
    np.testing.assert_allclose(samples, TONE, atol=tolerance + 1e-7)
    stereo = np.stack([TONE, -0.5 * TONE], axis=1).reshape(-1)
    path.write_bytes(wav_bytes(encode(stereo), 8000, 2, tag, bits, extensible))
    np.testing.assert_allclose(read_wav(path)[0], 0.25 * TONE, atol=tolerance + 1e-7)  # channels averaged
    path.write_bytes(wav_bytes(encode(TONE), 8000, 1, tag, bits, extensible)[:-10])
    with pytest.raises(FileProblem, match=r"holds \d+ of the 400 frames its header declares") as caught:
        read_wav(path)
    assert caught.value.kind == "truncated-file"


def test_unsupported_wav_encodings_are_named(tmp_path):
    path = tmp_path / "a.wav"
    path.write_bytes(wav_bytes(bytes(400), 8000, 1, 7, 8))
    with pytest.raises(FileProblem, match=r"holds 8-bit mu-law samples; expected PCM of 8, 16, 24 or 32 bits or 32/64-bit float"):
        read_wav(path)


def write_flac(path, samples, rate):
    av = pytest.importorskip("av")
    with av.open(str(path), "w") as container:
        stream = container.add_stream("flac", rate=rate)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(np.round(samples * 32767).astype(np.int16)[None], format="s16", layout="mono")
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def test_audio_of_other_types_and_rates_is_resampled_to_one_rate(tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    t = {rate: np.arange(rate // 4) / rate for rate in (8000, 16000)}
    tone = {rate: (0.5 * np.sin(2 * np.pi * 440 * x)).astype(np.float32) for rate, x in t.items()}
    rows = []
    for i in range(6):
        rate = 16000 if i % 2 else 8000
        if i < 3:
            (folder / f"{i}.wav").write_bytes(wav_bytes((tone[rate] * (1 - i / 10)).astype("<f4").tobytes(), rate, 1, 3, 32))
        else:
            write_flac(folder / f"{i}.flac", tone[rate] * (1 - i / 10), rate)
        rows.append(f"s{i},{i % 2},{'test' if i == 0 else 'train'},{i}.{'wav' if i < 3 else 'flac'}")
    manifest(folder, "id,label,split,audio", rows)
    bundle = bundle_of(folder)
    assert bundle.encoders["audio"]["options"] == {"sample_rate": 16000}  # the first train clip's (s1), not the first row's
    assert bundle.modalities[0].shape == (4000,) and check_bundle(bundle) == []
    clips = dict(zip(bundle.splits["train"].sample_ids() + bundle.splits["val"].sample_ids(),
                     np.concatenate([bundle.splits["train"].inputs["audio"].numpy(), bundle.splits["val"].inputs["audio"].numpy()])))
    middle = slice(500, 3500)  # away from the edges, where band-limited resampling rings
    for sample_id, clip in clips.items():
        np.testing.assert_allclose(clip[middle], tone[16000][middle] * (1 - int(sample_id[1:]) / 10), atol=2e-3)
    bundle = bundle_of(folder, sample_rate=4000)
    assert bundle.encoders["audio"]["options"] == {"sample_rate": 4000} and bundle.modalities[0].shape == (1000,)
    low = (0.5 * np.sin(2 * np.pi * 440 * np.arange(1000) / 4000))[200:800]
    np.testing.assert_allclose(bundle.splits["test"].inputs["audio"][0].numpy()[200:800], low, atol=2e-3)


def test_other_audio_without_pyav_names_the_extra(tmp_path, monkeypatch):
    folder = manifest(tmp_path / "d", "id,label,split,audio", [f"s{i},{i % 2},train,{i}.mp3" for i in range(4)])
    monkeypatch.setitem(sys.modules, "av", None)  # import av raises ImportError
    with pytest.raises(DataFormatError, match=r"line 2 \(id 's0'\): modality 'audio': 0\.mp3 is \.mp3 audio, which is decoded by PyAV, "
                                              r"not installed: pip install 'latefusion\[video\]'"):
        bundle_of(folder)


def test_resample_keeps_a_tone():
    x = np.sin(2 * np.pi * 100 * np.arange(1000) / 1000).astype(np.float32)
    y = resample(x, 1000, 3000)
    assert len(y) == 3000
    np.testing.assert_allclose(y, np.sin(2 * np.pi * 100 * np.arange(3000) / 3000), atol=1e-4)  # a whole number of periods: exact
    assert resample(x, 1000, 1000) is x


# 4. headers that declare too much

def png_header_only(width, height):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def test_files_declaring_too_much_are_refused_from_their_header(tmp_path, monkeypatch):
    folder = tmp_path / "d"
    folder.mkdir()
    rows = []
    for i in range(8):
        save(folder, f"{i}.png", np.full((4, 4), 9 * i))
        np.save(folder / f"{i}.npy", np.full(3, i, np.float32))
        rows.append(f"s{i},{i % 2},{'test' if i > 5 else 'train'},{i}.png,{i}.npy")
    (folder / "1.png").write_bytes(png_header_only(100_000, 100_000))
    (folder / "2.png").write_bytes(png_header_only(10_000, 10_000))  # 1e8: between Pillow's warning and its own error
    with open(folder / "3.npy", "wb") as handle:  # a sparse file: 80 GB declared and "present", nothing written
        np.lib.format.write_array_header_1_0(handle, {"descr": "<f8", "fortran_order": False, "shape": (10**10,)})
        handle.truncate(handle.tell() + 8 * 10**10)
    manifest(folder, "id,label,split,image,feats", rows)
    problems = problems_of(folder)
    assert set(problems) == {("too-large", "train[1]"), ("too-large", "train[2]"), ("too-large", "train[3]")}
    assert problems["too-large", "train[1]"].startswith("line 3 (id 's1'), modality 'image': 1.png declares 10,000,000,000 pixels, "
                                                        "over the limit of 89,478,485 (PIL.Image.MAX_IMAGE_PIXELS")
    assert "2.png declares 10000 x 10000 = 100,000,000 pixels" in problems["too-large", "train[2]"]
    assert problems["too-large", "train[3]"] == ("line 5 (id 's3'), modality 'feats': 3.npy declares shape (10000000000,) of float64: 74.5 GB of data, "
                                                 "over the limit of 2.0 GB (data.options.max_array_mb); it was not read")
    limited = problems_of(folder, max_array_mb=1e-5)  # 12 bytes of data per .npy, over a 10-byte limit
    assert sum(kind == "too-large" and "modality 'feats'" in message for (kind, _), message in limited.items()) == 8
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)
    assert "0.png declares 4 x 4 = 16 pixels, over the limit of 10 " in problems_of(folder)["too-large", "train[0]"]


def test_a_short_file_declaring_too_much_is_truncated():
    import tempfile
    from pathlib import Path
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "a.npy"
        with open(path, "wb") as handle:
            np.lib.format.write_array_header_1_0(handle, {"descr": "<f8", "fortran_order": False, "shape": (2**62, 2**62)})  # overflows int64
        with pytest.raises(FileProblem, match=r"holds 0 of the 170141183460469231731687303715884105728 data bytes") as caught:
            read_npy(path)
        assert caught.value.kind == "truncated-file"
