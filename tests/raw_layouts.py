"""Tiny copies of the raw layouts of the paper's data sets, written with real encoders (PyAV for
mp4/avi, the stdlib `wave` module, Pillow for JPEG/PNG) so that `latefusion prepare` meets the
same files as on a real download. Each class gets its own colour, tone and motion, so a test can
check that what prepare stored is what was written (the UCF101 and Kinetics videos move a texture
at a class's own speed, so computed flow can be checked too)."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

av = __import__("pytest").importorskip("av")  # in the `test` extra: these tests run in CI
Image = __import__("pytest").importorskip("PIL.Image")

SIZE = 32
FPS = 8
RATE = 22050  # written at 22.05 kHz so that prepare's resampling to 16 kHz is exercised


def colour(label: int) -> tuple[int, int, int]:
    return (40 + 80 * label, 200 - 60 * label, 120)


def tone(label: int) -> float:
    return 500.0 + 1000.0 * label


def tone_wave(label: int, seconds: float, rate: int = RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.4 * np.sin(2 * np.pi * tone(label) * t)).astype(np.float32)


def motion(label: int) -> tuple[float, float]:
    """Pixels per frame (right, down) that a class's texture moves by in a `moving` video."""
    return 2.0 * (label - 1), 1.0


def flow_value(pixels: float) -> int:
    """A motion as the TV-L1 flow releases store it: [-20, 20] pixels onto 0..255."""
    return round((pixels + 20) * 255 / 40)


def frame_image(label: int, index: int, moving: bool) -> np.ndarray:
    """The class's colour; when `moving`, plus a texture shifted by `motion(label)` per frame whose
    periods divide SIZE, so every frame keeps the colour as its mean."""
    frame = np.zeros((SIZE, SIZE, 3), np.float64)
    frame[:] = colour(label)
    if moving:
        dx, dy = motion(label)
        y, x = np.mgrid[:SIZE, :SIZE] - np.array([index * dy, index * dx])[:, None, None]
        phase = 2 * np.pi / SIZE
        frame += (15 * np.sin(phase * x) + 15 * np.sin(phase * y) + 8 * np.sin(2 * phase * (x + y)))[..., None]
    return frame.round().astype(np.uint8)


def write_video(path: Path, label: int, seconds: float = 1.0, audio: bool = True, codec: str = "libx264", moving: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        video = container.add_stream(codec, rate=FPS)
        video.width = video.height = SIZE
        video.pix_fmt = "yuv420p"
        sound = container.add_stream("aac", rate=RATE, layout="mono") if audio else None
        for index in range(int(seconds * FPS)):
            frame = frame_image(label, index, moving)
            for packet in video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        if sound is not None:
            samples = tone_wave(label, seconds)
            for start in range(0, len(samples), 1024):
                chunk = av.AudioFrame.from_ndarray(samples[None, start : start + 1024], format="flt", layout="mono")
                chunk.sample_rate, chunk.pts = RATE, start
                for packet in sound.encode(chunk):
                    container.mux(packet)
            for packet in sound.encode():
                container.mux(packet)


def write_wav(path: Path, label: int, seconds: float = 1.0, rate: int = RATE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes((tone_wave(label, seconds, rate) * 32767).astype("<i2").tobytes())


def write_image(path: Path, value, mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (SIZE, SIZE, 3) if mode == "RGB" else (SIZE, SIZE)
    Image.fromarray(np.full(shape, value, np.uint8), mode).save(path)


def dominant_frequency(waveform: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(waveform.astype(np.float64)))
    return float(np.fft.rfftfreq(len(waveform), 1 / rate)[spectrum.argmax()])


UCF_CLASSES = ["ApplyEyeMakeup", "Basketball", "Drumming"]


def make_ucf101(root: Path, groups: int = 4, clips: int = 2, flow_frames: int = 6, precomputed_flow: bool = True) -> list[str]:
    """Split 1 with group 1 as test and the others as train; videos of each class's moving texture,
    and (`precomputed_flow`) that motion as flow JPEGs, in the u/v layout for odd groups and the
    flow_x/flow_y layout for even ones. Returns the clip names."""
    lists = root / "ucfTrainTestlist"
    lists.mkdir(parents=True)
    (lists / "classInd.txt").write_text("".join(f"{i + 1} {name}\n" for i, name in enumerate(UCF_CLASSES)))
    train, test, names = [], [], []
    for label, action in enumerate(UCF_CLASSES):
        for group in range(1, groups + 1):
            for clip in range(1, clips + 1):
                name = f"v_{action}_g{group:02d}_c{clip:02d}"
                names.append(name)
                write_video(root / "UCF-101" / action / f"{name}.avi", label, audio=False, codec="mpeg4", moving=True)
                for k in range(flow_frames if precomputed_flow else 0):
                    x, y = (flow_value(m) for m in motion(label))
                    if group % 2:
                        write_image(root / "tvl1_flow" / "u" / name / f"frame{k + 1:06d}.jpg", x, "L")
                        write_image(root / "tvl1_flow" / "v" / name / f"frame{k + 1:06d}.jpg", y, "L")
                    else:
                        write_image(root / "tvl1_flow" / name / f"flow_x_{k + 1:05d}.jpg", x, "L")
                        write_image(root / "tvl1_flow" / name / f"flow_y_{k + 1:05d}.jpg", y, "L")
                if group == 1:
                    test.append(f"{action}/{name}.avi\n")
                else:
                    train.append(f"{action}/{name}.avi {label + 1}\n")
    (lists / "trainlist01.txt").write_text("".join(train))
    (lists / "testlist01.txt").write_text("".join(test))
    return names


VGG_CLASSES = ["dog barking", "playing piano", "rain, on a roof"]


def make_vggsound(root: Path) -> None:
    """4 YouTube ids per class, the first one test; id 1 gives two clips (starts 0 and 30). Even ids
    as mp4, odd ids as pre-extracted wav + 1 fps JPEG frames."""
    rows = []
    for label, name in enumerate(VGG_CLASSES):
        for k in range(4):
            ytid = f"yt{label}x{k}-_A"
            for start in (0, 30) if k == 1 else (0,):
                clip = f"{ytid}_{start:06d}"
                rows.append(f'{ytid},{start},"{name}",{"test" if k == 0 else "train"}\n')
                if k % 2 == 0:
                    write_video(root / "video" / f"{clip}.mp4", label)
                else:
                    write_wav(root / "audio" / f"{clip}.wav", label)
                    for second in range(2):
                        write_image(root / "frames" / clip / f"frame_{second:05d}.jpg", colour(label))
    (root / "vggsound.csv").write_text("".join(rows))


K400_CLASSES = ["abseiling", "bowling", "juggling balls"]


def kinetics_clips() -> list[tuple[int, str, str, str]]:
    """(label, split, ytid, clip name) of the tiny Kinetics-400: 3 train ids and 1 validation id per class."""
    clips = []
    for label in range(len(K400_CLASSES)):
        for k in range(4):
            ytid, start = f"k{label}y{k}", 10 * k
            clips.append((label, "validate" if k == 0 else "train", ytid, f"{ytid}_{start:06d}_{start + 10:06d}"))
    return clips


def make_kinetics_annotations(root: Path) -> None:
    """The public annotation CSVs of the tiny Kinetics-400 (no clips)."""
    tables = {"train": ["label,youtube_id,time_start,time_end,split\n"], "validate": ["label,youtube_id,time_start,time_end,split,is_cc\n"]}
    for label, split, ytid, clip in kinetics_clips():
        start = int(clip.split("_")[-2])
        tables[split].append(f'"{K400_CLASSES[label]}",{ytid},{start},{start + 10},{split}' + (",0\n" if split == "validate" else "\n"))
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    for split, lines in tables.items():
        (root / "annotations" / f"{split}.csv").write_text("".join(lines))


def make_kinetics(root: Path) -> None:
    """Train clips under train/<label>/, validation clips flat under val/, as the common downloaders
    leave them; 3 train ids and 1 validation id per class."""
    for label, split, _, clip in kinetics_clips():
        folder = root / "val" if split == "validate" else root / "train" / K400_CLASSES[label]
        write_video(folder / f"{clip}.mp4", label, moving=True)
    make_kinetics_annotations(root)


MODELNET_CLASSES = ["airplane", "bed", "chair"]


def view_value(label: int, view: int) -> int:
    return 20 + 60 * label + 3 * view


def make_modelnet40(root: Path, train: int = 4, test: int = 1) -> None:
    for label, name in enumerate(MODELNET_CLASSES):
        for split, count in (("train", train), ("test", test)):
            for k in range(count):
                obj = f"{name}_{k + 1 + (100 if split == 'test' else 0):04d}"
                for view in range(12):
                    write_image(root / name / split / f"{obj}.obj.shaded_v{view + 1:03d}.png", view_value(label, view))


CREMAD_EMOTIONS = ["ANG", "DIS", "FEA", "HAP", "NEU", "SAD"]


def make_cremad(root: Path, actors: int = 6, sentences: tuple[str, ...] = ("DFA",), mp4: tuple[str, ...] = ()) -> list[str]:
    """The release's layout: AudioWAV/<actor>_<sentence>_<emotion>_<level>.wav at 16 kHz (as
    released) with the emotion's tone, and VideoFlash/<same>.flv, real FLV (Sorenson H.263 + AAC,
    as PyAV writes it) showing colour(label % 3); the clips named in `mp4` as .mp4 instead. Actors
    1001.., every emotion once per sentence. Returns the clip names."""
    names = []
    for a in range(actors):
        for sentence in sentences:
            for label, emotion in enumerate(CREMAD_EMOTIONS):
                name = f"{1001 + a}_{sentence}_{emotion}_{'XX' if sentence != 'IEO' else 'HI'}"
                names.append(name)
                write_wav(root / "AudioWAV" / f"{name}.wav", label, seconds=1.0, rate=16000)
                if name in mp4:
                    write_video(root / "VideoFlash" / f"{name}.mp4", label % 3, audio=False)
                else:
                    write_video(root / "VideoFlash" / f"{name}.flv", label % 3, seconds=1.5, codec="flv")
    return names


def make_ave(root: Path, categories: tuple[str, ...] = ("Church bell", "Male speech, man speaking", "Dog"),
             per_split: dict[str, int] | None = None) -> dict[str, list[str]]:
    """AVE_Dataset's layout: AVE/<VideoID>.mp4 (1 s, the category's colour and tone),
    Annotations.txt (with its header line) and trainSet/valSet/testSet.txt in the same
    `Category&VideoID&Quality&StartTime&EndTime` format. Returns split -> video ids."""
    per_split = per_split or {"train": 3, "val": 1, "test": 1}
    files = {"train": "trainSet.txt", "val": "valSet.txt", "test": "testSet.txt"}
    lines = {split: [] for split in files}
    videos: dict[str, list[str]] = {split: [] for split in files}
    for label, category in enumerate(categories):
        for split, count in per_split.items():
            for k in range(count):
                video = f"ave{label}{split[:2]}{k}-x"
                write_video(root / "AVE" / f"{video}.mp4", label)
                lines[split].append(f"{category}&{video}&good&{k}&{k + 1}\n")
                videos[split].append(video)
    header = "Category&VideoID&Quality&StartTime&EndTime\n"
    (root / "Annotations.txt").write_text(header + "".join(line for split in files for line in lines[split]))
    for split, name in files.items():
        (root / name).write_text("".join(lines[split]))
    return videos
