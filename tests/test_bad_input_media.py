"""Bad input, third round (issue 20), the media readers: audio files that crashed the process, asked
for unbounded memory or lost samples without a word, size options without an upper bound, `prepare`
with an empty split or killed with its workers running, and fuzzed image and audio headers."""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from latefusion.config import (MAX_CHANNELS, MAX_CLIP_SECONDS, MAX_FRAMES, MAX_IMAGE_SIDE, MAX_LAYERS, MAX_MEL_BINS, MAX_SAMPLE_RATE, MAX_WINDOW,
                               MIN_SAMPLE_RATE, ConfigError, DataConfig, EncoderConfig)
from latefusion.data import DATASETS
from latefusion.data.checks import check_bundle
from latefusion.data.cremad import CremaDOptions, actor_split
from latefusion.data.files import DataFormatError, FileProblem, read_wav
from latefusion.data.media import MediaError, decode_audio, read_audio
from latefusion.data.prepared import prepare
from latefusion.resolve import resolve_config

av = pytest.importorskip("av")

ROOT = Path(__file__).resolve().parents[1]


def wav_bytes(samples: np.ndarray, rate: int, channels: int = 1, declared_frames: int | None = None) -> bytes:
    """16-bit PCM WAV; `declared_frames` writes another frame count into the data chunk's header."""
    data = np.asarray(samples, "<i2").tobytes()
    size = len(data) if declared_frames is None else declared_frames * 2 * channels
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * 2 * channels, 2 * channels, 16)
    return b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", size) + data


def tone(rate: int, seconds: float, channels: int = 1) -> np.ndarray:
    """A 440 Hz tone at half scale, int16, (samples, channels) or (samples,) for mono."""
    wave = np.round(16000 * np.sin(2 * np.pi * 440 * np.arange(round(rate * seconds)) / rate)).astype(np.int16)
    return wave if channels == 1 else np.repeat(wave[:, None], channels, axis=1)


LAYOUTS = {1: "mono", 2: "stereo", 6: "5.1", 8: "7.1"}


def write_audio(path: Path, samples: np.ndarray, rate: int, codec: str = "flac", container_format: str | None = None) -> Path:
    """int16 `samples` ((n,) or (n, channels)) encoded by PyAV, in frames of 1152 samples."""
    samples = samples.reshape(len(samples), -1)
    layout = LAYOUTS[samples.shape[1]]
    with av.open(str(path), "w", format=container_format) as container:
        stream = container.add_stream(codec, rate=rate, layout=layout)
        for start in range(0, len(samples), 1152):
            chunk = np.ascontiguousarray(samples[start : start + 1152])
            frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout=layout)  # packed: interleaved
            frame.sample_rate, frame.pts = rate, start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def audio_folder(folder: Path, cells: dict[int, str], n: int = 8) -> Path:
    """A manifest of `n` clips of one audio modality, `i.wav` of 0.25 s at 8 kHz unless `cells` names another file."""
    folder.mkdir(exist_ok=True)
    rows = []
    for i in range(n):
        cell = cells.get(i, f"{i}.wav")
        if i not in cells:
            (folder / cell).write_bytes(wav_bytes(tone(8000, 0.25) // (i + 1), 8000))  # clips that differ: no leaked-sample
        rows.append(f"s{i},{'ab'[i % 2]},{'test' if i >= n - 2 else 'train'},{cell}")
    (folder / "manifest.csv").write_text("\n".join(["id,label,split,audio", *rows]) + "\n")
    return folder


def bundle_of(folder: Path, **options):
    return DATASETS.get("folder")(DataConfig(name="folder", path=str(folder), options=options))


def problems_by_id(bundle) -> dict[str, tuple[str, str]]:
    """sample id -> (kind, message) of each problem the checks find."""
    found = {}
    for problem in check_bundle(bundle):
        split = bundle.splits[problem.split]
        found[split.sample_ids()[problem.index]] = (problem.kind, problem.message)
    return found


# 1. an 8-channel FLAC

def test_an_eight_channel_flac_is_read_averaged_to_mono_not_a_crash(tmp_path):
    """PyAV's to_ndarray on planar frames of 8 planes crashed the process (exit 139), so the test
    reads the file in a child process: a crash there fails the test instead of killing pytest."""
    path = write_audio(tmp_path / "eight.flac", tone(16000, 0.25, channels=8), 16000)
    script = textwrap.dedent(f"""
        from pathlib import Path
        import numpy as np
        from latefusion.data.media import decode_audio, read_audio
        wave, rate = decode_audio(Path({str(path)!r}))
        np.save({str(tmp_path / 'wave.npy')!r}, wave)
        print(rate, len(read_audio(Path({str(path)!r}), 8000)))  # prepare's reader: downmixed and resampled by FFmpeg
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert done.stdout.split() == ["16000", "2000"]
    wave = np.load(tmp_path / "wave.npy")
    np.testing.assert_allclose(wave, tone(16000, 0.25) / 32768, atol=1e-4)  # every channel the same tone: the mean is the tone


@pytest.mark.parametrize("channels", [1, 2, 6])
def test_clips_of_fewer_channels_are_averaged_as_before(tmp_path, channels):
    samples = tone(16000, 0.25, channels)
    if channels > 1:
        samples[:, 0] = 0  # the average of the channels, not the first one
    wave, rate = decode_audio(write_audio(tmp_path / "a.flac", samples, 16000))
    expected = samples.reshape(len(samples), -1).mean(axis=1) / 32768
    assert rate == 16000 and wave.dtype == np.float32
    np.testing.assert_allclose(wave, expected, atol=1e-4)


# 2. a sample rate outside the limits, a clip too long to pad every clip to

def test_a_wav_declaring_one_hertz_is_named_before_it_is_resampled(tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "slow.wav").write_bytes(wav_bytes(tone(8000, 0.025), 1))  # 200 samples "at 1 Hz": 1.6 M samples at 8 kHz
    bundle = bundle_of(audio_folder(folder, {3: "slow.wav"}))
    assert bundle.modalities[0].shape == (2000,)  # 0.25 s at 8 kHz: no clip was padded to the slow one's length
    assert problems_by_id(bundle) == {"s3": ("unreadable-file", f"line 5 (id 's3'), modality 'audio': slow.wav declares a sample rate of 1 Hz, "
                                                                f"outside {MIN_SAMPLE_RATE:,} to {MAX_SAMPLE_RATE:,} Hz (the limits of "
                                                                "latefusion.config.MIN_SAMPLE_RATE and MAX_SAMPLE_RATE): a damaged header, or not audio")}
    with pytest.raises(FileProblem, match=r"declares a sample rate of 4,000,000 Hz"):
        (folder / "fast.wav").write_bytes(wav_bytes(tone(8000, 0.025), 4_000_000))
        read_wav(folder / "fast.wav")
    with pytest.raises(MediaError, match=r"slow\.wav: declares a sample rate of 1 Hz"):  # prepare's reader: the clip is left out, named
        read_audio(folder / "slow.wav", 16000)


def test_a_clip_longer_than_the_limit_is_too_large_unless_clips_are_cut(tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "long.wav").write_bytes(wav_bytes(np.zeros(MIN_SAMPLE_RATE * (MAX_CLIP_SECONDS + 1), np.int16), MIN_SAMPLE_RATE))
    audio_folder(folder, {2: "long.wav"})
    bundle = bundle_of(folder)
    assert bundle.modalities[0].shape == (2000,)
    kind, message = problems_by_id(bundle)["s2"]
    assert kind == "too-large" and message.startswith(f"line 4 (id 's2'), modality 'audio': long.wav lasts {MAX_CLIP_SECONDS + 1:,.1f} s, over "
                                                      f"the limit of {MAX_CLIP_SECONDS} s for a clip read whole"), message
    assert "set data.options.audio_seconds" in message
    cut = bundle_of(folder, audio_seconds=0.5)
    assert cut.modalities[0].shape == (4000,) and problems_by_id(cut) == {}


@pytest.mark.parametrize("setting, expected", [
    ("data.options.sample_rate=1", "sample_rate: Input should be greater than or equal to 1000 (found 1)"),
    ("data.options.sample_rate=10000000", "sample_rate: Input should be less than or equal to 768000 (found 10000000)"),
    (f"data.options.audio_seconds={MAX_CLIP_SECONDS + 1}", f"audio_seconds: Input should be less than or equal to {MAX_CLIP_SECONDS} "
                                                            f"(found {MAX_CLIP_SECONDS + 1})"),
])
def test_folder_audio_options_are_bounded_when_the_config_is_resolved(setting, expected):
    with pytest.raises(ConfigError) as raised:
        resolve_config(None, ["data.name=folder", "data.path=nowhere", setting])
    assert str(raised.value) == f"invalid configuration in data.options of folder:\n  {expected}"


# 3. size options without an upper bound

@pytest.mark.parametrize("setting", ["data.options.image_size=20000", "data.options.image_size=[20000,10]", "data.options.image_size=[10,20000]"])
def test_image_size_is_bounded_when_the_config_is_resolved(setting):
    """`--set data.options.image_size=20000` was read image by image at 4.8 GB each, until killed."""
    with pytest.raises(ConfigError) as raised:
        resolve_config(None, ["data.name=folder", "data.path=nowhere", setting])
    message = str(raised.value)
    assert message.startswith("invalid configuration in data.options of folder:\n  image_size") and \
        f"Input should be less than or equal to {MAX_IMAGE_SIDE} (found 20000)" in message, message
    assert resolve_config(None, ["data.name=folder", "data.path=nowhere", f"data.options.image_size={MAX_IMAGE_SIDE}"])


@pytest.mark.parametrize("data, setting, key, bound", [
    ("vggsound", "data.options.visual.crop=20000", "visual.crop", MAX_IMAGE_SIDE),
    ("crema-d", f"data.options.audio.seconds={MAX_CLIP_SECONDS * 10}", "audio.seconds", MAX_CLIP_SECONDS),
    ("ucf101", "data.options.flow.crop=100000", "flow.crop", MAX_IMAGE_SIDE),
    ("modelnet40", "data.options.image.crop=99999", "image.crop", MAX_IMAGE_SIDE),
])
def test_training_options_of_prepared_data_sets_are_bounded_when_resolved(data, setting, key, bound):
    with pytest.raises(ConfigError) as raised:
        resolve_config(None, [f"data.name={data}", "data.path=nowhere", setting])
    assert key in str(raised.value) and f"less than or equal to {bound}" in str(raised.value), raised.value


@pytest.mark.parametrize("recipe, option, bound", [
    ("vggsound", {"size": 20000}, MAX_IMAGE_SIDE), ("vggsound", {"frames": 100000}, MAX_FRAMES),
    ("crema-d", {"rate": 1}, MIN_SAMPLE_RATE), ("ave", {"clip_seconds": 1e6}, MAX_CLIP_SECONDS),
    ("ucf101", {"flow_frames": 5000}, MAX_FRAMES), ("modelnet40", {"size": 50000}, MAX_IMAGE_SIDE),
])
def test_prepare_size_options_are_bounded_before_any_file_is_read(tmp_path, recipe, option, bound):
    with pytest.raises(ConfigError) as raised:
        prepare(recipe, tmp_path / "no-raw-folder", tmp_path / "out", option, workers=1, progress=False)
    assert next(iter(option)) in str(raised.value) and f"{bound}" in str(raised.value), raised.value
    assert not (tmp_path / "out").exists()



@pytest.mark.parametrize("encoder, option, value, bound", [
    ("audio-cnn", "n_mels", 10**6, MAX_MEL_BINS), ("audio-cnn", "n_fft", 10**7, MAX_WINDOW), ("audio-cnn", "hop", 10**7, MAX_WINDOW),
    ("audio-cnn", "sample_rate", 1, MIN_SAMPLE_RATE), ("audio-cnn", "width", 10**6, MAX_CHANNELS), ("mlp", "hidden", 10**7, MAX_CHANNELS),
    ("mlp", "depth", 10**5, MAX_LAYERS), ("cnn", "blocks", 1000, MAX_LAYERS), ("resnet18", "width", 10**4, MAX_CHANNELS // 8),
])
def test_encoder_size_options_are_bounded_when_the_config_is_resolved(encoder, option, value, bound):
    """`n_mels=1000000` asked for a filter bank of 129 x 10^6 floats per encoder; refused by name instead."""
    with pytest.raises(ConfigError) as raised:
        resolve_config(None, [f"model.encoders.a.name={encoder}", f"model.encoders.a.options.{option}={value}"])
    message = str(raised.value)
    assert message.startswith(f"model.encoders.a.options.{option}: Input should be ") and f" {bound} (found {value}); encoder {encoder!r}" in message
    assert resolve_config(None, [f"model.encoders.a.name={encoder}", f"model.encoders.a.options.{option}={bound}"])


def test_a_cnn_whose_last_block_is_too_wide_is_refused_before_it_is_built():
    from latefusion.models import build_encoder

    with pytest.raises(ConfigError, match=rf"cnn: width 1024 doubled over 8 blocks is 131,072 channels in the last block, over the limit of "
                                          rf"{MAX_CHANNELS} \(latefusion.config.MAX_CHANNELS\)"):
        build_encoder(EncoderConfig(name="cnn", options={"width": 1024, "blocks": 8}), (3, 8, 8), 16)
    assert build_encoder(EncoderConfig(name="cnn", options={"width": 4, "blocks": 4}), (3, 8, 8), 16).out_dim == 16


# 4. clips that lose samples without a word

def test_a_wav_of_no_samples_is_named(tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "empty.wav").write_bytes(wav_bytes(np.zeros(0, np.int16), 8000))
    bundle = bundle_of(audio_folder(folder, {1: "empty.wav"}))
    assert problems_by_id(bundle) == {"s1": ("unreadable-file", "line 3 (id 's1'), modality 'audio': empty.wav holds no audio samples "
                                                                "(its data chunk declares 0 bytes)")}
    with pytest.raises(FileProblem, match=r"holds no audio samples \(its data chunk declares 0 bytes, yet 400 bytes follow it"):
        (folder / "unfinished.wav").write_bytes(wav_bytes(tone(8000, 0.025), 8000, declared_frames=0))
        read_wav(folder / "unfinished.wav")


@pytest.mark.parametrize("codec, suffix", [("libmp3lame", "mp3"), ("flac", "flac")])
def test_an_audio_file_cut_short_is_named_not_padded(tmp_path, codec, suffix):
    """An MP3 cut in half decoded to half its samples without an error, and was zero-padded."""
    folder = tmp_path / "d"
    folder.mkdir()
    path = write_audio(folder / f"cut.{suffix}", tone(16000, 2.0), 16000, codec, suffix)
    whole, rate = decode_audio(path)
    assert rate == 16000 and len(whole) >= 32000
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(MediaError, match=rf"cut\.{suffix}: (truncated or damaged: \d\.\d+ s of audio decoded, its header declares 2\.\d+ s"
                                          r"|audio stream is damaged)"):
        decode_audio(path)
    bundle = bundle_of(audio_folder(folder, {4: f"cut.{suffix}"}), sample_rate=8000)
    kind, message = problems_by_id(bundle)["s4"]
    assert kind == "unreadable-file" and message.startswith(f"line 6 (id 's4'), modality 'audio': cut.{suffix} is not readable audio ("), message


# 5. prepare: an empty split, workers left running

def test_prepare_refuses_a_split_that_would_hold_no_sample(tmp_path):
    """CREMA-D of two actors: one in test, the other carved out as validation: train 0, and it exited 0."""
    from raw_layouts import make_cremad

    raw = tmp_path / "raw"
    make_cremad(raw, actors=2)
    with pytest.raises(DataFormatError, match=r"prepare crema-d: .*raw: the train split would hold no sample \(train 0, val \d+, test \d+\): "
                                              r"\d+ samples of 2 groups"):
        prepare("crema-d", raw, tmp_path / "out", {"size": 16}, workers=1, progress=False)
    assert not (tmp_path / "out" / "shards").exists()  # refused before any clip was decoded


def test_prepare_refuses_a_split_whose_every_sample_was_left_out(tmp_path):
    from raw_layouts import make_cremad

    raw = tmp_path / "raw"
    names = make_cremad(raw, actors=4)
    for name, split in actor_split(names, CremaDOptions().test_fraction, 0).items():
        if split == "test":  # every test clip unreadable
            (raw / "AudioWAV" / f"{name}.wav").write_bytes(b"RIFF")
    dst = tmp_path / "out"
    with pytest.raises(DataFormatError, match=r"prepare crema-d: .*: the test split holds no sample \(train \d+, val \d+, test 0\): \d+ samples "
                                              r"were left out; .*report\.json says why for each"):
        prepare("crema-d", raw, dst, {"size": 16}, workers=1, progress=False)
    assert (dst / "report.json").is_file() and not (dst / "index.json").exists()


SLOW_PREPARE = """
import os, sys, time
from pathlib import Path
from latefusion.data.prepared import RECIPES, Recipe, Sample, Scan, Stored, prepare

marks = Path(sys.argv[1])


@RECIPES.register("test-never-done")
class NeverDone(Recipe):
    name = "test-never-done"

    def scan(self, src, options):
        return Scan([Sample(f"s{i}", i % 2, "test" if i >= 6 else "train", f"g{i}") for i in range(8)], ["a", "b"])

    def stored(self, options):
        return [Stored("x", (1,), "float32")]

    def decode(self, sample, options):
        (marks / f"worker-{os.getpid()}").touch()
        while True:  # a decode that outlasts the test: only a kill ends it
            time.sleep(0.05)


prepare("test-never-done", marks, marks / "out", {"shard_size": 1}, workers=2, progress=False)
"""


def running(pid: int) -> bool:
    """Alive and not a zombie waiting to be reaped."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def wait_for(condition, deadline_seconds: float = 60.0) -> bool:
    deadline = time.monotonic() + deadline_seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")
def test_prepare_workers_die_with_a_killed_parent(tmp_path):
    """SIGKILL of `prepare --workers 2` left both decoding workers running, forever."""
    script = tmp_path / "slow_prepare.py"
    script.write_text(SLOW_PREPARE)
    parent = subprocess.Popen([sys.executable, str(script), str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    workers: list[int] = []
    try:
        assert wait_for(lambda: len(list(tmp_path.glob("worker-*"))) == 2 or parent.poll() is not None), "the workers never started"
        assert parent.poll() is None, parent.stderr.read().decode()[-2000:]
        workers = [int(p.name.removeprefix("worker-")) for p in tmp_path.glob("worker-*")]
        assert all(running(pid) for pid in workers)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        assert wait_for(lambda: not any(running(pid) for pid in workers)), f"workers {workers} outlived their killed parent"
    finally:
        for pid in workers:  # whatever happened, leave no process behind
            if running(pid):
                os.kill(pid, signal.SIGKILL)
        if parent.poll() is None:
            parent.kill()
        parent.stderr.close()


# 6. fuzzed image and audio headers: read as the file says, or refused by name

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from latefusion.data.folder import read_audio_file, read_image_file  # noqa: E402
from latefusion.data.media import read_image  # noqa: E402

FUZZ_IMAGES, FUZZ_WAVS, FUZZ_FLACS = 150, 300, 60
# What the header fields are set to: zero, one, off by one, the largest values their bytes hold.
ABSURD = [0, 1, 2, 3, 7, 255, 999, 1000, 65535, 2**24, 2**31 - 1, 2**32 - 1]
FUZZ_SETTINGS = dict(deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
IMAGE_MODES = {"PNG": ["1", "L", "LA", "P", "RGB", "RGBA", "I;16"], "JPEG": ["L", "RGB", "CMYK"]}
GREY = {"1", "L", "LA", "I;16"}


def image_bytes(image_format: str, mode: str, width: int, height: int, seed: int) -> bytes:
    import io

    from PIL import Image

    rng = np.random.default_rng(seed)
    if mode == "I;16":
        image = Image.fromarray(rng.integers(0, 65536, (height, width), dtype=np.uint16))
    else:
        image = Image.fromarray(rng.integers(0, 256, (height, width, 4), dtype=np.uint8), "RGBA").convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, image_format)
    return buffer.getvalue()


def png_with_header(data: bytes, width: int, height: int, fix_crc: bool) -> bytes:
    """`data` (a PNG) with IHDR's width and height replaced, its checksum recomputed or left stale."""
    import zlib

    ihdr = bytearray(data[12:29])  # b"IHDR" + 13 bytes
    ihdr[4:12] = struct.pack(">II", width, height)
    crc = struct.pack(">I", zlib.crc32(bytes(ihdr))) if fix_crc else data[29:33]
    return data[:12] + bytes(ihdr) + crc + data[33:]


def jpeg_with_header(data: bytes, width: int, height: int) -> bytes:
    """`data` (a JPEG) with the frame header's (SOF0) height and width replaced (16 bits each)."""
    start = data.index(b"\xff\xc0") + 5
    return data[:start] + struct.pack(">HH", height % 65536, width % 65536) + data[start + 4:]


@st.composite
def damaged_images(draw):
    image_format = draw(st.sampled_from(sorted(IMAGE_MODES)))
    mode = draw(st.sampled_from(IMAGE_MODES[image_format]))
    width, height = draw(st.integers(1, 24)), draw(st.integers(1, 24))
    data = image_bytes(image_format, mode, width, height, draw(st.integers(0, 2**32 - 1)))
    edit = draw(st.sampled_from(["none", "truncate", "header", "byte"]))
    if edit == "truncate":
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif edit == "header":
        new_width, new_height = draw(st.sampled_from(ABSURD + [width + 1])), draw(st.sampled_from(ABSURD + [height]))
        data = (png_with_header(data, new_width, new_height, draw(st.booleans())) if image_format == "PNG"
                else jpeg_with_header(data, new_width, new_height))
    elif edit == "byte":
        at = draw(st.integers(0, min(len(data) - 1, 40)))  # within the headers
        data = data[:at] + bytes([draw(st.integers(0, 255))]) + data[at + 1:]
    return image_format, mode, width, height, edit, data


@pytest.mark.filterwarnings("error")  # a reader that warns on a file it reads speaks to every user of check-data
def test_fuzzed_images_are_read_at_their_size_or_refused_by_name(tmp_path):
    """Truncated PNGs and JPEGs, every mode they are saved in, headers declaring absurd sizes (with and
    without a valid checksum), a byte of the headers changed: each image reader returns an image of the
    size asked for, or names the problem (MediaError, a UserError; for the folder reader a FileProblem,
    which check-data reports as a problem of its sample). Never another exception, nor a warning."""
    from latefusion.errors import UserError

    path = tmp_path / "x.png"
    seen = {"read": 0, "refused": 0}

    @settings(max_examples=FUZZ_IMAGES, **FUZZ_SETTINGS)
    @given(case=damaged_images(), size=st.sampled_from([None, 8]))
    def check(case, size):
        image_format, mode, width, height, edit, data = case
        path.write_bytes(data)
        try:
            scaled = read_image_file(path, size)
        except FileProblem as problem:
            assert problem.kind in ("unreadable-file", "too-large") and str(problem), problem
            assert edit != "none", (mode, problem)
            with pytest.raises(UserError, match=str(path)):  # the reader `prepare` uses refuses it as well
                read_image(path, size)
            seen["refused"] += 1
            return
        channels = 1 if mode in GREY else 3
        expected = (channels, size, size) if size else (channels, scaled.shape[1], scaled.shape[2])
        assert scaled.shape == expected and scaled.dtype == np.float32, (scaled.shape, expected)
        assert np.isfinite(scaled).all() and scaled.min() >= 0 and scaled.max() <= 1
        if edit == "none":
            assert scaled.shape[1:] == (size or height, size or width)
        eight = read_image(path, size, mode=None)
        assert eight.dtype == np.uint8 and eight.shape[:2] == scaled.shape[1:]
        seen["read"] += 1

    check()
    print(f"fuzzed images: {seen}")
    assert seen["read"] >= FUZZ_IMAGES // 10 and seen["refused"] >= FUZZ_IMAGES // 10, seen


# The fields of a canonical 44-byte WAV header: (offset, struct format).
WAV_FIELDS = {"riff size": (4, "<I"), "fmt size": (16, "<I"), "format tag": (20, "<H"), "channels": (22, "<H"), "rate": (24, "<I"),
              "byte rate": (28, "<I"), "block align": (32, "<H"), "bits": (34, "<H"), "data size": (40, "<I")}
WAV_ENCODINGS = [(1, 8, "u1"), (1, 16, "<i2"), (1, 24, None), (1, 32, "<i4"), (3, 32, "<f4"), (3, 64, "<f8")]


def wav_file(tag: int, bits: int, dtype: str | None, channels: int, rate: int, frames: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    if dtype is None:  # 24-bit: three bytes a sample
        data = rng.integers(0, 256, frames * channels * 3, dtype=np.uint8).tobytes()
    elif dtype[-2] == "f":
        data = rng.uniform(-1, 1, frames * channels).astype(dtype).tobytes()
    else:
        data = rng.integers(np.iinfo(dtype).min, np.iinfo(dtype).max, frames * channels, dtype=dtype, endpoint=True).tobytes()
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits)
    return b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", len(data)) + data


@st.composite
def damaged_wavs(draw):
    tag, bits, dtype = draw(st.sampled_from(WAV_ENCODINGS))
    channels, rate, frames = draw(st.integers(1, 8)), draw(st.sampled_from([8000, 16000, 44100])), draw(st.integers(0, 300))
    data = wav_file(tag, bits, dtype, channels, rate, frames, draw(st.integers(0, 2**32 - 1)))
    edit, expected = draw(st.sampled_from(["none", "truncate", *WAV_FIELDS])), frames
    if edit == "truncate":
        data = data[: draw(st.integers(0, len(data) - 1))]
        expected = None  # a header cut, or samples missing: refused either way
    elif edit != "none":
        offset, layout = WAV_FIELDS[edit]
        value = draw(st.sampled_from(ABSURD + [struct.unpack_from(layout, data, offset)[0] + 1])) % 2 ** (8 * struct.calcsize(layout))
        data = data[:offset] + struct.pack(layout, value) + data[offset + struct.calcsize(layout):]
        if edit == "data size":
            expected = value // (channels * bits // 8)  # what the header now says; fewer bytes than that: refused
    return edit, channels, frames, expected, data


def test_fuzzed_wav_headers_are_read_as_they_say_or_refused_by_name(tmp_path):
    """Truncated WAVs and headers with each field set to absurd values (zero channels, rates of 0 or
    4 GHz, wrong sizes and block alignments, other format tags): read_wav returns exactly the frames
    the header declares, at a rate within the limits, or a FileProblem names the problem."""
    path = tmp_path / "x.wav"
    seen = {"read": 0, "refused": 0}

    @settings(max_examples=FUZZ_WAVS, **FUZZ_SETTINGS)
    @given(case=damaged_wavs())
    def check(case):
        edit, channels, frames, expected, data = case
        path.write_bytes(data)
        try:
            samples, rate = read_audio_file(path, 2**30, whole=True)
        except FileProblem as problem:
            assert problem.kind in ("unreadable-file", "truncated-file", "too-large") and str(problem), problem
            assert edit != "none" or frames == 0, problem  # a whole file is refused only when it holds no samples
            seen["refused"] += 1
            return
        assert expected is not None and len(samples) == expected > 0, (edit, len(samples), expected)
        assert MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE and samples.dtype == np.float32
        if struct.unpack_from("<H", data, 20)[0] != 3:  # float samples are read as stored, NaN included (check-data names those)
            assert np.abs(samples).max() <= 1
        seen["read"] += 1

    check()
    print(f"fuzzed WAV headers: {seen}")
    assert seen["read"] >= FUZZ_WAVS // 10 and seen["refused"] >= FUZZ_WAVS // 10, seen


def flac_file(path: Path, channels: int, rate: int, frames: int, seed: int) -> bytes:
    samples = np.random.default_rng(seed).integers(-20000, 20000, (frames, channels), dtype=np.int16)
    return write_audio(path, samples, rate).read_bytes()


# STREAMINFO follows "fLaC" and its block header: bits 80-99 hold the rate, 100-102 channels - 1,
# 103-107 bits per sample - 1, 108-143 the total number of samples (big-endian, from its first byte).
STREAMINFO_BITS = {"rate": (80, 20), "channels": (100, 3), "bits": (103, 5), "total samples": (108, 36)}


def with_streaminfo_field(data: bytes, field: str, value: int) -> bytes:
    start, width = STREAMINFO_BITS[field]
    info = int.from_bytes(data[8:42], "big")
    shift = 34 * 8 - start - width
    info = info & ~(((1 << width) - 1) << shift) | (value % (1 << width)) << shift
    return data[:8] + info.to_bytes(34, "big") + data[42:]


@st.composite
def damaged_flacs(draw):
    channels, rate = draw(st.sampled_from([1, 2, 6, 8])), draw(st.sampled_from([8000, 16000, 44100]))
    frames = draw(st.integers(1, 6000))
    edit = draw(st.sampled_from(["none", "truncate", *STREAMINFO_BITS]))
    cut = draw(st.integers(0, 10**6)) if edit == "truncate" else None
    value = draw(st.sampled_from(ABSURD + [frames + 1, frames - 1])) if edit in STREAMINFO_BITS else None
    return channels, rate, frames, edit, cut, value, draw(st.integers(0, 2**32 - 1))


def test_fuzzed_flac_headers_are_read_whole_or_refused_by_name(tmp_path):
    """FLACs of 1 to 8 channels, cut anywhere or with a STREAMINFO field (rate, channels, bits, total
    samples) set to absurd values: decode_audio returns every sample written, or names the problem."""
    path = tmp_path / "x.flac"
    seen = {"read": 0, "refused": 0}

    @settings(max_examples=FUZZ_FLACS, **FUZZ_SETTINGS)
    @given(case=damaged_flacs())
    def check(case):
        channels, rate, frames, edit, cut, value, seed = case
        data = flac_file(path, channels, rate, frames, seed)
        assert data[:4] == b"fLaC" and data[4] & 0x7F == 0  # STREAMINFO first
        if edit == "truncate":
            data = data[: cut % len(data)]
        elif edit is not None and edit != "none":
            data = with_streaminfo_field(data, edit, value)
        path.write_bytes(data)
        try:
            samples, read_rate = read_audio_file(path, 2**30, whole=True)
        except FileProblem as problem:
            assert problem.kind in ("unreadable-file", "too-large") and str(problem), problem
            assert edit != "none", problem
            seen["refused"] += 1
            return
        assert len(samples) == frames, (edit, value, cut, len(samples), frames)
        assert MIN_SAMPLE_RATE <= read_rate <= MAX_SAMPLE_RATE and np.isfinite(samples).all()
        seen["read"] += 1

    check()
    print(f"fuzzed FLAC headers: {seen}")
    assert seen["read"] >= FUZZ_FLACS // 10 and seen["refused"] >= FUZZ_FLACS // 10, seen
