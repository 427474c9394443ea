"""Readers for the sample files of file-backed data sets (`.npy` arrays, 16-bit PCM `.wav`), telling a
missing file from an unreadable one from a truncated one, so the data checks can name each.

numpy and the wave module raise many exception types on damaged headers (ValueError, SyntaxError,
tokenize.TokenError, wave.Error, EOFError, a bare RuntimeError for a bad chunk size): every one of
them means "unreadable", and none escapes as anything but a FileProblem.
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

from ..errors import DataError


class DataFormatError(DataError):
    """A user data set that does not follow the documented format; the message says where and how."""


class FileProblem(Exception):
    """`kind` is a data-check kind: missing-file, unreadable-file or truncated-file."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def read_npy(path: Path) -> np.ndarray:
    if not path.is_file():
        raise FileProblem("missing-file", "does not exist")
    with open(path, "rb") as handle:
        try:
            version = np.lib.format.read_magic(handle)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read_header(handle)
        except Exception as error:  # see the module docstring
            raise FileProblem("unreadable-file", f"is not a .npy array ({type(error).__name__}: {error})") from None
        if dtype.hasobject:
            raise FileProblem("unreadable-file", "holds Python objects, not numbers")
        expected = int(np.prod(shape)) * dtype.itemsize
        present = path.stat().st_size - handle.tell()
    if present < expected:
        raise FileProblem("truncated-file", f"holds {present} of the {expected} data bytes its header declares")
    return np.load(path, allow_pickle=False)


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """Mono float32 samples in [-1, 1) (channels averaged) and the sample rate."""
    if not path.is_file():
        raise FileProblem("missing-file", "does not exist")
    try:
        with wave.open(str(path)) as clip:
            width, channels, frames, rate = clip.getsampwidth(), clip.getnchannels(), clip.getnframes(), clip.getframerate()
            data = clip.readframes(frames)
    except Exception as error:  # see the module docstring
        raise FileProblem("unreadable-file", f"is not a WAV file ({type(error).__name__}: {error})") from None
    if width != 2:
        raise FileProblem("unreadable-file", f"has {8 * width}-bit samples, expected 16-bit PCM")
    if len(data) < frames * width * channels:
        raise FileProblem("truncated-file", f"holds {len(data) // (width * channels)} of the {frames} frames its header declares")
    samples = np.frombuffer(data, "<i2").astype(np.float32) / 32768
    return samples.reshape(-1, channels).mean(axis=1), rate
