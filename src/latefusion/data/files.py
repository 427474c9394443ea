"""Readers for the sample files of file-backed data sets (`.npy` arrays, `.wav` audio), telling a
missing file from an unreadable one from a truncated one from one too large to load, so the data
checks can name each.

WAV files are parsed here with the standard library (`struct`) and numpy, not the `wave` module,
which reads 16-bit PCM only: PCM of 8 (unsigned), 16, 24 and 32 bits, IEEE float of 32 and 64 bits
(WAVE_FORMAT_IEEE_FLOAT, what scipy, librosa and soundfile write) and either inside a
WAVE_FORMAT_EXTENSIBLE wrapper. numpy raises many exception types on damaged headers (ValueError,
SyntaxError, tokenize.TokenError, EOFError...): every one of them means "unreadable", and none escapes
as anything but a FileProblem.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np

from ..config import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE
from ..errors import DataError

# A .npy sample whose header declares more data than this is refused before it is read (a sparse or
# damaged file can declare terabytes); the folder data set's `max_array_mb` option overrides it.
MAX_ARRAY_BYTES = 2 * 1024**3

WAVE_FORMAT_PCM, WAVE_FORMAT_IEEE_FLOAT, WAVE_FORMAT_EXTENSIBLE = 0x0001, 0x0003, 0xFFFE
WAVE_FORMAT_NAMES = {0x0002: "MS ADPCM", 0x0006: "A-law", 0x0007: "mu-law", 0x0011: "IMA ADPCM", 0x0055: "MP3"}


class DataFormatError(DataError):
    """A user data set that does not follow the documented format; the message says where and how."""


class FileProblem(Exception):
    """`kind` is a data-check kind: missing-file, unreadable-file, truncated-file or too-large."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def read_npy(path: Path, max_bytes: int = MAX_ARRAY_BYTES) -> np.ndarray:
    """A .npy array; its header is checked against the file's size and `max_bytes` before any data is read."""
    if not path.is_file():
        raise FileProblem("missing-file", "does not exist")
    with open(path, "rb") as handle:
        shape, dtype = npy_header(handle)
        if dtype.hasobject:
            raise FileProblem("unreadable-file", "holds Python objects, not numbers")
        expected = math.prod(shape) * dtype.itemsize  # Python ints: a damaged header cannot overflow it
        present = path.stat().st_size - handle.tell()
    if present < expected:
        raise FileProblem("truncated-file", f"holds {present} of the {expected} data bytes its header declares")
    if expected > max_bytes:  # a file of that size, maybe sparse: refused before it is read
        raise FileProblem("too-large", f"declares shape {tuple(shape)} of {dtype}: {size_text(expected)} of data, over the limit of "
                                       f"{size_text(max_bytes)} (data.options.max_array_mb); it was not read")
    return np.load(path, allow_pickle=False)


def npy_header(handle) -> tuple[tuple[int, ...], np.dtype]:
    """The shape and dtype a .npy file's header declares (the file open for reading, at its start)."""
    try:
        version = np.lib.format.read_magic(handle)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(handle)
    except Exception as error:  # see the module docstring
        raise FileProblem("unreadable-file", f"is not a .npy array ({type(error).__name__}: {error})") from None
    return tuple(shape), dtype


def size_text(count: int) -> str:
    for unit, scale in (("GB", 1024**3), ("MB", 1024**2), ("kB", 1024)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} bytes"


def wav_chunks(data: bytes) -> dict[bytes, tuple[int, int]]:
    """The chunks of a RIFF/WAVE file: id -> (offset of its data, declared size); the first of each id."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError("no RIFF/WAVE header")
    chunks, offset = {}, 12
    while offset + 8 <= len(data):
        chunk_id, size = struct.unpack_from("<4sI", data, offset)
        chunks.setdefault(chunk_id, (offset + 8, size))
        if chunk_id == b"data":  # the samples run to the end of a truncated file: nothing after them counts
            break
        offset += 8 + size + (size & 1)  # chunks are padded to an even size
    return chunks


def wav_format(data: bytes, chunks: dict[bytes, tuple[int, int]]) -> tuple[int, int, int, int]:
    """(format tag, channels, sample rate, bits per sample) from the fmt chunk, an extensible wrapper unwrapped."""
    if b"fmt " not in chunks:
        raise ValueError("no fmt chunk")
    start, size = chunks[b"fmt "]
    if size < 16 or start + size > len(data):
        raise ValueError(f"fmt chunk of {size} bytes is too short or cut off")
    tag, channels, rate, _, block_align, bits = struct.unpack_from("<HHIIHH", data, start)
    if tag == WAVE_FORMAT_EXTENSIBLE:
        if size < 40:
            raise ValueError(f"WAVE_FORMAT_EXTENSIBLE fmt chunk of {size} bytes, expected 40")
        tag = struct.unpack_from("<H", data, start + 24)[0]  # the first two bytes of the sub-format GUID
    if channels < 1 or rate < 1 or bits < 1:
        raise ValueError(f"header declares {channels} channels of {bits}-bit samples at {rate} Hz")
    if block_align != channels * (-(-bits // 8)):
        raise ValueError(f"block align {block_align} does not match {channels} channels of {bits}-bit samples")
    return tag, channels, rate, bits


SUPPORTED_WAV = {(WAVE_FORMAT_PCM, 8), (WAVE_FORMAT_PCM, 16), (WAVE_FORMAT_PCM, 24), (WAVE_FORMAT_PCM, 32),
                 (WAVE_FORMAT_IEEE_FLOAT, 32), (WAVE_FORMAT_IEEE_FLOAT, 64)}


def wav_samples(raw: bytes, tag: int, bits: int) -> np.ndarray:
    """The interleaved samples as float32 in [-1, 1) (floats as stored)."""
    if tag == WAVE_FORMAT_PCM and bits == 8:
        return (np.frombuffer(raw, np.uint8).astype(np.float32) - 128) / 128  # 8-bit PCM is unsigned
    if tag == WAVE_FORMAT_PCM and bits == 16:
        return np.frombuffer(raw, "<i2").astype(np.float32) / 2**15
    if tag == WAVE_FORMAT_PCM and bits == 24:
        triples = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        values = triples[:, 0] | (triples[:, 1] << 8) | (triples[:, 2] << 16)
        return ((values << 8) >> 8).astype(np.float32) / 2**23  # sign-extend from 24 bits
    if tag == WAVE_FORMAT_PCM and bits == 32:
        return (np.frombuffer(raw, "<i4").astype(np.float64) / 2**31).astype(np.float32)
    if tag == WAVE_FORMAT_IEEE_FLOAT and bits in (32, 64):
        return np.frombuffer(raw, "<f4" if bits == 32 else "<f8").astype(np.float32)
    name = {WAVE_FORMAT_PCM: "PCM", WAVE_FORMAT_IEEE_FLOAT: "IEEE float"}.get(tag) or WAVE_FORMAT_NAMES.get(tag, f"format tag {tag:#06x}")
    raise FileProblem("unreadable-file", f"holds {bits}-bit {name} samples; expected PCM of 8, 16, 24 or 32 bits or 32/64-bit float "
                                         "(convert it, e.g. `ffmpeg -i IN -c:a pcm_s16le OUT.wav`)")


def rate_problem(rate: int) -> str:
    return (f"declares a sample rate of {rate:,} Hz, outside {MIN_SAMPLE_RATE:,} to {MAX_SAMPLE_RATE:,} Hz (the limits of "
            "latefusion.config.MIN_SAMPLE_RATE and MAX_SAMPLE_RATE): a damaged header, or not audio")


def read_wav(path: Path, max_bytes: int = MAX_ARRAY_BYTES) -> tuple[np.ndarray, int]:
    """Mono float32 samples in [-1, 1) (channels averaged) and the sample rate. FileProblem for a rate
    outside the limits (rate_problem) and for a file holding no samples."""
    if not path.is_file():
        raise FileProblem("missing-file", "does not exist")
    if path.stat().st_size > max_bytes:
        raise FileProblem("too-large", f"is {size_text(path.stat().st_size)}, over the limit of {size_text(max_bytes)} "
                                       "(data.options.max_array_mb); it was not read")
    data = path.read_bytes()
    try:
        chunks = wav_chunks(data)
        tag, channels, rate, bits = wav_format(data, chunks)
        if b"data" not in chunks:
            raise ValueError("no data chunk")
    except Exception as error:  # see the module docstring
        raise FileProblem("unreadable-file", f"is not a WAV file ({type(error).__name__}: {error})") from None
    if (tag, bits) not in SUPPORTED_WAV:
        wav_samples(b"", tag, bits)  # raises the message naming the format
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise FileProblem("unreadable-file", rate_problem(rate))
    start, declared = chunks[b"data"]
    frame_bytes = channels * (bits // 8)
    frames, present = declared // frame_bytes, len(data) - start
    if present < frames * frame_bytes:
        raise FileProblem("truncated-file", f"holds {present // frame_bytes} of the {frames} frames its header declares")
    if not frames:
        after = f", yet {present:,} bytes follow it (a recording never finished?)" if present else ""
        raise FileProblem("unreadable-file", f"holds no audio samples (its data chunk declares {declared} bytes{after})")
    samples = wav_samples(data[start : start + frames * frame_bytes], tag, bits)
    return samples.reshape(-1, channels).mean(axis=1, dtype=np.float32), rate


def wav_length(path: Path) -> tuple[int, int]:
    """(frames, sample rate) of a .wav file from its header (frames cut to what the file holds), without
    reading its samples; FileProblem when it is not a readable WAV file."""
    with open(path, "rb") as handle:
        head = handle.read(WAV_HEADER_BYTES)
    try:
        chunks = wav_chunks(head)
        _, channels, rate, bits = wav_format(head, chunks)
        start, declared = chunks[b"data"]
    except Exception as error:  # see the module docstring
        raise FileProblem("unreadable-file", f"is not a WAV file ({type(error).__name__}: {error})") from None
    frame_bytes = channels * (bits // 8) or 1
    return min(declared, path.stat().st_size - start) // frame_bytes, rate


WAV_HEADER_BYTES = 1 << 16  # the fmt chunk and the start of the data chunk lie well within this


def resample(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    """`samples` taken at `rate` Hz, resampled to `target` Hz in the frequency domain (band-limited:
    what lies above the lower of the two Nyquist frequencies is dropped, as an ideal low-pass would)."""
    if rate == target or len(samples) == 0:
        return samples
    length = max(1, round(len(samples) * target / rate))
    spectrum = np.fft.rfft(samples.astype(np.float64))
    kept = np.zeros(length // 2 + 1, complex)
    shared = min(len(spectrum), len(kept))
    kept[:shared] = spectrum[:shared]
    return (np.fft.irfft(kept, length) * (length / len(samples))).astype(np.float32)
