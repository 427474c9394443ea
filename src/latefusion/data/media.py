"""Decoding raw media into fixed-shape numpy arrays, for `latefusion prepare` (and images for the
bring-your-own folder data).

Video and audio go through PyAV (FFmpeg, bundled in its wheel), images through Pillow: the optional
extra `latefusion[video]`. Every failure is raised as `MediaError` naming the file and the reason, so
the prepare report can say which sample was left out and why.
"""

from __future__ import annotations

import importlib
import itertools
import re
import warnings
from pathlib import Path

import numpy as np

from ..config import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE
from ..errors import DataError
from .files import rate_problem


class MediaError(DataError):
    """A file that is missing, unreadable or too short; the message names it."""


class MediaTooLarge(MediaError):
    """An image whose header declares more pixels than the limit: refused before decoding."""


def _import(module: str):
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MediaError(f"decoding media needs the optional `video` extra ({module} is not installed): pip install 'latefusion[video]'") from None


def require_pyav() -> None:
    """MediaError naming the `video` extra when PyAV is not installed."""
    _import("av")


def require_file(path: Path) -> Path:
    if not path.is_file():
        raise MediaError(f"missing file: {path}")
    return path


def open_container(path: Path):
    av = _import("av")
    try:
        return av.open(str(require_file(path)))
    except av.FFmpegError as error:
        raise MediaError(f"{path}: not a readable media file ({error})") from None


def decode_video(path: Path) -> list:
    """Every frame of the first video stream, as PyAV frames (converted to arrays only where used)."""
    av = _import("av")
    with open_container(path) as container:
        if not container.streams.video:
            raise MediaError(f"{path}: no video stream")
        try:
            frames = [frame for frame in container.decode(video=0)]
        except av.FFmpegError as error:
            raise MediaError(f"{path}: video stream is damaged ({error})") from None
    if not frames:
        raise MediaError(f"{path}: the video stream holds no frames")
    return frames


def spread_frames(frames: list, count: int, size: int) -> np.ndarray:
    """`count` of the decoded `frames` spread evenly over the video (frame i at time (i + 0.5) / count
    of its length), resized to `size` x `size` RGB: (count, size, size, 3) uint8."""
    picks = [int((i + 0.5) * len(frames) / count) for i in range(count)]
    return np.stack([frames[i].to_ndarray(width=size, height=size, format="rgb24") for i in picks])


def read_video_frames(path: Path, count: int, size: int) -> np.ndarray:
    return spread_frames(decode_video(path), count, size)


class ClipTooShort(MediaError):
    """A video with fewer frames than were asked of it."""


class NoAudioTrack(MediaError):
    """A video without the audio track that was asked of it."""


VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".webm")


def read_clip_frames(path: Path, count: int, size: int) -> np.ndarray:
    """`count` distinct frames spread evenly over a clip (see spread_frames): (count, size, size, 3)
    uint8. A clip of fewer frames is ClipTooShort rather than a clip of repeated frames."""
    frames = decode_video(path)
    if len(frames) < count:
        raise ClipTooShort(f"{path}: {len(frames)} frame(s), fewer than the {count} asked (data.options.video_frames)")
    return spread_frames(frames, count, size)


def audio_length(path: Path) -> tuple[int, int]:
    """(samples, rate) of the first audio stream of an audio or video file, from its container's
    duration without decoding (decoded when the container records none); NoAudioTrack without one."""
    av = _import("av")
    with open_container(path) as container:
        if not container.streams.audio:
            raise NoAudioTrack(f"{path}: no audio track")
        stream = container.streams.audio[0]
        rate = stream.rate
        if stream.duration is not None and stream.time_base is not None:
            seconds = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            seconds = container.duration / av.time_base
        else:
            seconds = None
    if seconds is None or not rate:
        samples, rate = decode_audio(path)
        return len(samples), rate
    return round(seconds * rate), rate


def image_header(path: Path) -> tuple[int, int, int]:
    """(height, width, channels) of an image file as read_image_scaled would read it, from its header."""
    def header(image) -> tuple[int, int, int]:
        grey = image.mode in GREY_MODES or sixteen_bit_mode(image)
        return image.height, image.width, 1 if grey else 3
    return decoded(path, header)


def sixteen_bit_mode(image) -> bool:
    return image.mode in SIXTEEN_BIT_MODES or (image.mode == "I" and image.format == "PNG")


def read_clip_audio(path: Path) -> tuple[np.ndarray, int]:
    """A video's audio track as decode_audio reads any audio file; NoAudioTrack for a silent clip."""
    with open_container(path) as container:
        if not container.streams.audio:
            raise NoAudioTrack(f"{path}: the clip has no audio track")
    return decode_audio(path)


def gray_frames(frames: list, short_side: int) -> np.ndarray:
    """Decoded `frames` as grayscale (N, h, w) uint8 at their own size, or scaled down (aspect kept)
    so that the shorter side is `short_side` when it is longer."""
    height, width = frames[0].height, frames[0].width
    scale = min(1.0, short_side / min(height, width))
    size = {"width": max(1, round(width * scale)), "height": max(1, round(height * scale))}
    return np.stack([frame.to_ndarray(format="gray", **size) for frame in frames])


def read_frame_folder(folder: Path, count: int, size: int) -> np.ndarray:
    """`count` frames spread evenly over a folder of extracted JPEG frames (sorted by name)."""
    files = sorted(folder.glob("*.jpg")) if folder.is_dir() else []
    if not files:
        raise MediaError(f"no *.jpg frames in {folder}")
    return np.stack([read_image(files[int((i + 0.5) * len(files) / count)], size) for i in range(count)])


def read_audio(path: Path, rate: int) -> np.ndarray | None:
    """The first audio stream, downmixed to mono and resampled to `rate`: (samples,) int16.
    None when the file has no audio stream (a clip without sound); MediaError when it cannot be read,
    declares a sample rate outside the limits (see audio_stream) or holds fewer samples than it declares."""
    av = _import("av")
    with open_container(path) as container:
        if not container.streams.audio:
            return None
        stream = audio_stream(container, path)
        resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
        chunks = []
        try:
            for frame in container.decode(stream):
                chunks += [f.to_ndarray() for f in resampler.resample(frame)]
            chunks += [f.to_ndarray() for f in resampler.resample(None)]
        except av.FFmpegError as error:
            raise MediaError(f"{path}: audio stream is damaged ({error})") from None
    wave = np.concatenate(chunks, axis=1)[0] if chunks else np.zeros(0, np.int16)
    return check_complete(wave, rate, stream, path)


def fit_length(wave: np.ndarray, length: int) -> np.ndarray:
    """Tile a short waveform (as OGM-GE does for VGG-Sound) or cut a long one to `length` samples."""
    if len(wave) == 0:
        raise MediaError("empty waveform")
    return np.tile(wave, -(-length // len(wave)))[:length]


def audio_stream(container, path: Path):
    """The first audio stream, its sample rate checked before anything is decoded: a rate outside
    [MIN_SAMPLE_RATE, MAX_SAMPLE_RATE] is a damaged header or no audio (a clip at 1 Hz resampled to
    16 kHz would hold 16,000 samples for each one stored)."""
    stream = container.streams.audio[0]
    rate = stream.codec_context.sample_rate
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise MediaError(f"{path}: {rate_problem(rate)}")
    return stream


def check_complete(wave: np.ndarray, rate: int, stream, path: Path) -> np.ndarray:
    """`wave` (at `rate`), decoded from `stream`, unless it holds no samples or falls short of the
    duration the file's header declares by more than two of the codec's frames (a lossy codec's delay
    and padding), or by more than FRAMELESS_SLACK_SECONDS where the codec names no frame size (FLAC,
    Opus): a file cut short (an MP3 cut in half decodes without an error)."""
    if not len(wave):
        raise MediaError(f"{path}: the audio stream holds no samples")
    if stream.duration and stream.time_base:
        declared, decoded = float(stream.duration * stream.time_base), len(wave) / rate
        frame = stream.codec_context.frame_size
        if declared - decoded > (2 * frame / stream.codec_context.sample_rate if frame else FRAMELESS_SLACK_SECONDS):
            raise MediaError(f"{path}: truncated or damaged: {decoded:.3f} s of audio decoded, its header declares {declared:.3f} s")
    return wave


# An Opus stream counts its 6.5 ms pre-skip in its declared duration; a FLAC frame of the usual 4096
# samples (FFmpeg's and libFLAC's default) lasts 85 ms at 48 kHz, so losing one is still found.
FRAMELESS_SLACK_SECONDS = 0.05


def decode_audio(path: Path) -> tuple[np.ndarray, int]:
    """Every sample of the first audio stream (FLAC, MP3, Ogg Vorbis/Opus, AAC... whatever FFmpeg reads)
    at its own rate, channels averaged to mono: (float32 samples, rate). MediaError for a rate outside
    the limits (audio_stream), a file with no samples or fewer than it declares (check_complete)."""
    av = _import("av")
    with open_container(path) as container:
        if not container.streams.audio:
            raise MediaError(f"{path}: no audio stream")
        stream = audio_stream(container, path)
        # Packed (interleaved) float at the stream's own layout and rate: one plane whatever the channel
        # count (PyAV's to_ndarray crashes the process on planar frames of 8 planes or more).
        resampler = av.AudioResampler(format="flt")
        chunks, rate = [], stream.codec_context.sample_rate
        try:
            for frame in itertools.chain(container.decode(stream), [None]):  # None: what the resampler still holds
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1, out.layout.nb_channels).mean(axis=1))
                    rate = out.sample_rate
        except av.FFmpegError as error:
            raise MediaError(f"{path}: audio stream is damaged ({error})") from None
    wave = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    return check_complete(wave, rate, stream, path), int(rate)


def fit_image(image, size: int | tuple[int, int], fit: str = "resize"):
    """`image` (PIL) at `size` (an int: square; else (height, width)), bilinear with antialiasing (Pillow
    filters over the whole source footprint when shrinking). `resize` stretches the whole image to the
    size; `center-crop` keeps the aspect ratio, scaling the image to cover the size and cutting the
    overhang evenly from both sides."""
    Image = _import("PIL.Image")
    height, width = (size, size) if isinstance(size, int) else size
    if fit == "resize":
        return image.resize((width, height), Image.BILINEAR)
    if fit != "center-crop":
        raise ValueError(f"unknown image fit {fit!r}; expected resize or center-crop")
    scale = min(image.width / width, image.height / height)  # source pixels per target pixel, covering
    crop_w, crop_h = width * scale, height * scale
    left, top = (image.width - crop_w) / 2, (image.height - crop_h) / 2
    return image.resize((width, height), Image.BILINEAR, box=(left, top, left + crop_w, top + crop_h))


# Pillow's image modes by what they hold (its handbook, "Concepts: Modes"). A file named .png is opened
# by its content, so a TIFF or any other format Pillow reads can hand the reader any of these.
GREY_MODES = ("1", "L", "LA", "La")  # one channel (alpha dropped)
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")  # 16-bit greyscale: what a 16-bit PNG opens as
UNSCALED_MODES = {"I": "32-bit integer", "F": "32-bit float"}  # no fixed range to scale to [0, 1]: refused
CONVERTED_VIA = {"La": "LA", "RGBa": "RGBA"}  # premultiplied alpha: Pillow converts these in two steps


def sixteen_bit(image) -> np.ndarray | None:
    """A 16-bit greyscale image's pixels as uint16; None for other modes. Older Pillow releases opened
    16-bit PNGs as mode I (values 0 to 65535), so a PNG of mode I is 16-bit too."""
    if sixteen_bit_mode(image):
        return np.asarray(image).astype(np.uint16)
    return None


def converted(image, mode: str, path: Path):
    """`image` in `mode` (L or RGB); MediaError naming a mode that cannot be read as such."""
    if image.mode in UNSCALED_MODES:
        raise MediaError(f"{path}: a {UNSCALED_MODES[image.mode]} image (Pillow mode {image.mode}): its pixels have no fixed range to "
                         "scale to [0, 1]; save it as an 8- or 16-bit PNG, or its array as a .npy file")
    try:
        # A palette with transparency goes through RGBA too: the same colours, without Pillow's warning.
        via = CONVERTED_VIA.get(image.mode) or ("RGBA" if image.mode == "P" and "transparency" in image.info else None)
        return image.convert(via).convert(mode) if via else image.convert(mode)
    except ValueError as error:  # a mode Pillow cannot convert
        raise MediaError(f"{path}: an image of Pillow mode {image.mode}, which cannot be read as {mode} ({error}); save it as an 8- or "
                         "16-bit PNG") from None


def scaled_pixels(image, path: Path, size: int | tuple[int, int] | None = None, fit: str = "resize") -> np.ndarray:
    """An opened image (PIL) as float32 in [0, 1] at its bit depth, at `size` when given (see fit_image):
    (H, W) for greyscale (modes 1, L, LA and 16-bit), else (H, W, 3) RGB (palette, RGBA, CMYK, YCbCr, LAB,
    HSV...), alpha dropped. 16-bit pixels are divided by 65535 (and resized as floats), 8-bit ones by 255;
    32-bit integer or float images (modes I, F) are refused: MediaError naming the mode."""
    Image = _import("PIL.Image")
    deep = sixteen_bit(image)
    if deep is not None:
        image, scale = Image.fromarray(deep.astype(np.float32) / np.float32(65535)), np.float32(1)
    else:
        image, scale = converted(image, "L" if image.mode in GREY_MODES else "RGB", path), np.float32(255)
    return np.asarray(image if size is None else fit_image(image, size, fit), dtype=np.float32) / scale


def eight_bit(image, mode: str | None, path: Path):
    """An opened image (PIL) in `mode` (RGB or L; None: L for greyscale images, else RGB), 16-bit pixels
    rounded to the nearest of 256 levels; 32-bit integer or float images are refused (see converted)."""
    Image = _import("PIL.Image")
    deep = sixteen_bit(image)
    if deep is not None:
        image = Image.fromarray(np.round(deep / 257).astype(np.uint8))
    return converted(image, mode or ("L" if image.mode in GREY_MODES else "RGB"), path)


def decoded(path: Path, read):
    """`read(image)` of the opened image at `path`, or MediaError: an image whose header declares more
    than PIL.Image.MAX_IMAGE_PIXELS pixels (Pillow's decompression-bomb limit, 89,478,485 unless raised)
    is refused before it is decoded (MediaTooLarge); a file Pillow cannot read is named."""
    Image = _import("PIL.Image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # refused below, by name
            opened = Image.open(require_file(path))
        with opened as image:
            limit = Image.MAX_IMAGE_PIXELS
            if limit is not None and image.width * image.height > limit:
                raise MediaTooLarge(f"{path}: declares {image.width} x {image.height} = {image.width * image.height:,} pixels, over the limit "
                                    f"of {limit:,} (PIL.Image.MAX_IMAGE_PIXELS, against decompression bombs); it was not decoded")
            return read(image)
    except Image.DecompressionBombError as error:  # Pillow's own check in open(), at twice the limit: no size at hand
        count = re.search(r"\((\d+) pixels\)", str(error))
        declared = f"{int(count[1]):,} pixels" if count else "more pixels"
        raise MediaTooLarge(f"{path}: declares {declared}, over the limit of {Image.MAX_IMAGE_PIXELS:,} (PIL.Image.MAX_IMAGE_PIXELS, "
                            f"against decompression bombs); it was not decoded") from None
    except (OSError, SyntaxError) as error:  # Pillow raises these for truncated or foreign files
        raise MediaError(f"{path}: not a readable image ({error})") from None


def read_image(path: Path, size: int | tuple[int, int] | None = None, mode: str | None = "RGB", fit: str = "resize") -> np.ndarray:
    """A JPEG/PNG as uint8, (H, W, 3) in RGB mode or (H, W) in L mode, resized to `size` (an int:
    `size` x `size`; else (height, width)) when given, by `fit` (see fit_image). `mode=None` keeps
    greyscale images greyscale and makes the others RGB. 16-bit images are rounded to 8 bits; 32-bit
    integer or float ones are refused by name (see eight_bit), as are decompression bombs (see decoded)."""
    return decoded(path, lambda image: np.asarray(fitted(eight_bit(image, mode, path), size, fit)))


def read_image_scaled(path: Path, size: int | tuple[int, int] | None = None, fit: str = "resize") -> np.ndarray:
    """An image file as float32 in [0, 1] at its bit depth (see scaled_pixels and decoded)."""
    return decoded(path, lambda image: scaled_pixels(image, path, size, fit))


def fitted(image, size: int | tuple[int, int] | None, fit: str):
    return image if size is None else fit_image(image, size, fit)
