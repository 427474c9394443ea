#!/usr/bin/env python3
"""Build the embedded audio-visual digits data set ("avdigits").

Each of the 1,797 real handwritten 8x8 digits that scikit-learn ships (the
test part of UCI "Optical Recognition of Handwritten Digits") is paired with a
spoken digit word of the same class, synthesised in-process by the eSpeak NG
library bundled in the PyPI package ``espeakng-loader``.  The result is one
compressed ``.npz`` that the toolkit ships; neither scikit-learn nor eSpeak NG
is needed at run time.  Provenance, licences and every choice made here are
described in ``docs/avdigits.md``.

Build-time requirements (keep them out of the package's dependencies)::

    python3 -m venv /tmp/avbuild
    /tmp/avbuild/bin/pip install numpy scipy scikit-learn espeakng-loader==0.2.4
    /tmp/avbuild/bin/python scripts/build_avdigits.py \
        --out src/latefusion/data/assets/avdigits.npz --seed 0 --evaluate

``--evaluate`` (or ``--evaluate-only FILE``) runs the measurement section at
the end of this file: shallow classifiers (logistic regression) per modality
and fused, on clean data and with the recommended run-time degradation, whose
numpy reference implementation lives there too.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import hashlib
import json
import platform
import sys
import time
from importlib import metadata
from pathlib import Path

import numpy as np

# --------------------------------------------------------------------------
# Fixed choices (recorded in the file's meta; change them only with a new
# data-set version, because they change every clip).
# --------------------------------------------------------------------------

CLASS_NAMES = ("zero", "one", "two", "three", "four",
               "five", "six", "seven", "eight", "nine")

SAMPLE_RATE = 8000          # Hz; telephone band, plenty for ten words
CLIP_SAMPLES = 8000         # 1.0 s per clip
SPLIT_NAMES = ("train", "val", "test")
SPLIT_FRACTIONS = (0.6, 0.2, 0.2)

# eSpeak NG accents ("voices").  The library refuses "en-gb", so British
# English is the plain "en".  "en-shaw" is left out: it is the Shavian-script
# voice and speaks ordinary text exactly like "en".
ACCENTS = ("en", "en-us", "en-us-nyc", "en-gb-scotland", "en-gb-x-rp",
           "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029")
# Variants ("+m3", "+f2", "+klatt3", "+whisper", ...) change the voice's
# timbre (formants, pitch base, breathiness): they are our "speakers".  The
# variant "fast" only sets a speed, which we override, so it would duplicate
# the plain voice.
EXCLUDED_VARIANTS = ("fast",)

# Speaking rate in words per minute (eSpeak default 175) and base pitch on
# eSpeak's 0..100 scale (default 50), drawn uniformly per clip.  The rate
# range keeps nearly every word inside one second.
RATE_RANGE = (130, 250)
PITCH_RANGE = (20, 80)
# eSpeak's volume (0..200, default 100).  At 100 several variants saturate
# int16 inside the synthesiser (peaks at 32767); 50 avoids that for almost all.
VOLUME = 50

# Samples of the 22,050 Hz synthesiser output whose magnitude is at or below
# this fraction of the clip's peak count as silence when trimming (-54 dB):
# low enough to keep the weak fricatives at word edges ("f", "s", "th").
TRIM_RELATIVE = 0.002
FADE_SAMPLES = 80           # 10 ms fade-out where a word had to be cut

# Storage.  Plain int16 PCM of 1,797 one-second clips deflates to ~8.5 MB,
# over the ~6 MB budget for the package.  Each clip is therefore
# peak-normalised to STORE_PEAK (-12 dBFS) and rounded to a multiple of
# STORE_STEP: 513 levels (~9 bits), quantisation SNR ~45 dB (worst clip
# ~36 dB), far above the run-time noise, and the file drops to ~5.4 MB.
# The array stays plain int16 PCM, so readers need no decoder (8-bit mu-law
# would be smaller, ~4.5 MB, but would change the array's meaning).
STORE_PEAK = 8192
STORE_STEP = 32


# --------------------------------------------------------------------------
# eSpeak NG through its C API (ctypes)
# --------------------------------------------------------------------------

# Constants from espeak-ng's speak_lib.h / espeak_ng.h.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_PARAM_RATE, _PARAM_VOLUME, _PARAM_PITCH = 1, 2, 3
_SYNTH_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class ESpeak:
    """Minimal synchronous wrapper: text in, int16 samples out.

    eSpeak NG seeds its noise generator from the clock at initialisation
    (so two runs differ) and keeps other internal state between utterances
    (the same call, reseeded, differs when repeated).  A clip is therefore
    reproducible only if (a) the generator is reseeded before each utterance
    and (b) utterances are made in the same order.  ``synth`` does (a); the
    build loop does (b) by always going in index order.  Checked: two builds
    give byte-identical arrays (see the sha256 entries in the file's meta).
    """

    def __init__(self) -> None:
        import espeakng_loader  # build-time only

        self.data_path = Path(espeakng_loader.get_data_path())
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_Info.argtypes = [ctypes.c_void_p]
        lib.espeak_Info.restype = ctypes.c_char_p
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                     ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        self.lib = lib
        # The library also imports the C library's rand(); seed it as well so
        # that no draw can depend on what ran before (Linux/macOS: CDLL(None)).
        self._srand = ctypes.CDLL(None).srand
        self._srand.argtypes = [ctypes.c_uint]

        self.sample_rate = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, str(self.data_path).encode(), _INITIALIZE_DONT_EXIT)
        if self.sample_rate <= 0:
            raise RuntimeError("espeak_Initialize failed")
        self.version = lib.espeak_Info(None).decode()

        self._chunks: list[np.ndarray] = []
        # Keep a reference to the ctypes callback or it is garbage-collected.
        self._callback = _SYNTH_CALLBACK(self._collect)
        lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, wav, n_samples, _events) -> int:
        if n_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n_samples,)).copy())
        return 0  # 0 = keep synthesising

    def variants(self) -> list[str]:
        """Variant names available in the bundled voice data, sorted."""
        names = sorted(p.name for p in (self.data_path / "voices" / "!v").iterdir() if p.is_file())
        return [n for n in names if n not in EXCLUDED_VARIANTS]

    def synth(self, voice: str, text: str, rate: int, pitch: int, seed: int) -> np.ndarray:
        # An unknown "+variant" is silently ignored by the library, so the
        # caller only passes names from variants(); an unknown accent is an
        # error code.
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"eSpeak NG refused voice {voice!r}")
        # SetVoiceByName resets the parameters, so set them afterwards.
        self.lib.espeak_SetParameter(_PARAM_RATE, rate, 0)
        self.lib.espeak_SetParameter(_PARAM_PITCH, pitch, 0)
        self.lib.espeak_SetParameter(_PARAM_VOLUME, VOLUME, 0)
        self.lib.espeak_ng_SetRandSeed(seed)
        self._srand(seed)
        self._chunks = []
        buf = text.encode() + b"\0"
        if self.lib.espeak_Synth(buf, len(buf), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None) != 0:
            raise RuntimeError(f"espeak_Synth failed for {voice!r} {text!r}")
        self.lib.espeak_Synchronize()
        return np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)


# --------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------

def stratified_splits(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """0/1/2 = train/val/test, 60/20/20 within every class."""
    split = np.empty(len(labels), np.uint8)
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_train = int(round(SPLIT_FRACTIONS[0] * len(idx)))
        n_val = int(round(SPLIT_FRACTIONS[1] * len(idx)))
        split[idx[:n_train]] = 0
        split[idx[n_train:n_train + n_val]] = 1
        split[idx[n_train + n_val:]] = 2
    return split


def speaker_pools(variants: list[str], rng: np.random.Generator) -> list[list[str]]:
    """Disjoint sets of variants (speakers) for train / val / test.

    The clips of one variant share a timbre even across accents, pitches and
    rates; giving each split its own variants means val and test measure
    recognition of unseen speakers, not memorised voices.
    """
    order = [variants[i] for i in rng.permutation(len(variants))]
    n_train = int(round(SPLIT_FRACTIONS[0] * len(order)))
    n_val = int(round(SPLIT_FRACTIONS[1] * len(order)))
    return [sorted(order[:n_train]), sorted(order[n_train:n_train + n_val]),
            sorted(order[n_train + n_val:])]


def fit_clip(wav22k: np.ndarray, src_rate: int, rng: np.random.Generator) -> tuple[np.ndarray, int, bool]:
    """Trim silence, resample to SAMPLE_RATE, place in a CLIP_SAMPLES window,
    normalise and quantise for storage (see STORE_PEAK).

    Returns (int16 clip, onset sample, whether the word had to be cut).
    The word starts at a uniformly random offset so that position in the
    window carries no information about the class.
    """
    from math import gcd

    from scipy.signal import resample_poly

    x = wav22k.astype(np.float64)
    loud = np.flatnonzero(np.abs(x) > TRIM_RELATIVE * np.abs(x).max())
    x = x[loud[0]:loud[-1] + 1]
    g = gcd(SAMPLE_RATE, src_rate)
    y = resample_poly(x, SAMPLE_RATE // g, src_rate // g)  # 160/441 for 22,050 Hz

    cut = len(y) > CLIP_SAMPLES
    if cut:
        y = y[:CLIP_SAMPLES].copy()
        y[-FADE_SAMPLES:] *= np.linspace(1.0, 0.0, FADE_SAMPLES)
    onset = int(rng.integers(0, CLIP_SAMPLES - len(y) + 1))
    clip = np.zeros(CLIP_SAMPLES, np.float64)
    clip[onset:onset + len(y)] = y * (STORE_PEAK / np.abs(y).max())
    return (np.round(clip / STORE_STEP) * STORE_STEP).astype(np.int16), onset, cut


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"


def _sha256(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def build(seed: int) -> dict[str, np.ndarray]:
    from sklearn.datasets import load_digits  # build-time only

    digits = load_digits()
    # Pixel values are integer counts 0..16 stored as float64: exact in uint8.
    image = digits.images.astype(np.uint8)
    label = digits.target.astype(np.int64)
    n = len(label)

    # Independent generators per purpose so that, e.g., changing the audio
    # placement rule does not reshuffle the splits.
    ss = np.random.SeedSequence(seed)
    rng_split, rng_speaker, rng_clip, rng_place = (np.random.default_rng(s) for s in ss.spawn(4))

    split = stratified_splits(label, rng_split)

    tts = ESpeak()
    pools = speaker_pools(tts.variants(), rng_speaker)

    audio = np.zeros((n, CLIP_SAMPLES), np.int16)
    clips = []
    n_cut = 0
    t0 = time.perf_counter()
    for i in range(n):  # index order matters: see ESpeak's docstring
        accent = ACCENTS[rng_clip.integers(len(ACCENTS))]
        pool = pools[split[i]]
        variant = pool[rng_clip.integers(len(pool))]
        rate = int(rng_clip.integers(RATE_RANGE[0], RATE_RANGE[1] + 1))
        pitch = int(rng_clip.integers(PITCH_RANGE[0], PITCH_RANGE[1] + 1))
        synth_seed = int(rng_clip.integers(1, 2**31 - 1))
        voice = f"{accent}+{variant}"
        raw = tts.synth(voice, CLASS_NAMES[label[i]], rate, pitch, synth_seed)
        audio[i], onset, cut = fit_clip(raw, tts.sample_rate, rng_place)
        n_cut += cut
        clips.append([voice, rate, pitch, onset, int(cut)])
    synth_seconds = time.perf_counter() - t0

    meta = {
        "name": "avdigits",
        "format_version": 1,
        "seed": seed,
        "build_date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "build_command": "python scripts/build_avdigits.py --out <file> --seed %d" % seed,
        "versions": {
            "python": platform.python_version(),
            "espeakng-loader": _version("espeakng-loader"),
            "espeak-ng": tts.version,
            "numpy": np.__version__,
            "scipy": _version("scipy"),
            "scikit-learn": _version("scikit-learn"),
        },
        "image": {
            "source": "sklearn.datasets.load_digits: test part of UCI Optical Recognition of "
                      "Handwritten Digits (13 writers), CC BY 4.0",
            "order": "row i is sample i of load_digits()",
            "values": "integer counts 0..16 (on-pixels per 4x4 block of a 32x32 bitmap)",
        },
        "audio": {
            "synthesiser": "eSpeak NG %s via espeakng-loader %s (ctypes, synchronous C API)"
                           % (tts.version, _version("espeakng-loader")),
            "text": "the digit word, class_names[label]",
            "source_sample_rate": tts.sample_rate,
            "sample_rate": SAMPLE_RATE,
            "clip_samples": CLIP_SAMPLES,
            "encoding": "int16 PCM, clean (no noise added); each clip peak-normalised to %d "
                        "(-12 dBFS) and rounded to multiples of %d (~9-bit precision)"
                        % (STORE_PEAK, STORE_STEP),
            "accents": list(ACCENTS),
            "rate_wpm_range": list(RATE_RANGE),
            "pitch_range": list(PITCH_RANGE),
            "volume": VOLUME,
            "trim_relative_threshold": TRIM_RELATIVE,
            "placement": "trimmed word at a uniformly random onset in the 1 s window; "
                         "words longer than the window are cut with a 10 ms fade-out",
            "n_cut": n_cut,
            "speaker_pools": dict(zip(SPLIT_NAMES, pools)),
            "clip_fields": ["voice", "rate", "pitch", "onset", "cut"],
            "clips": clips,
        },
        "split": {
            "codes": {name: code for code, name in enumerate(SPLIT_NAMES)},
            "rule": "stratified by class: per class, a seeded permutation; first round(0.6 n) "
                    "train, next round(0.2 n) val, rest test. Each split draws its voice "
                    "variants from its own disjoint pool (speaker_pools); accents are shared.",
            "counts": {name: int((split == code).sum()) for code, name in enumerate(SPLIT_NAMES)},
        },
    }
    arrays = {"image": image, "audio": audio, "label": label, "split": split}
    meta["sha256"] = {k: _sha256(v) for k, v in arrays.items()}
    print(f"synthesised {n} clips in {synth_seconds:.1f} s with eSpeak NG {tts.version}; "
          f"{n_cut} cut to {CLIP_SAMPLES / SAMPLE_RATE:.1f} s", file=sys.stderr)
    return {
        **arrays,
        "sample_rate": np.array(SAMPLE_RATE, np.int64),
        "class_names": np.array(CLASS_NAMES),
        # A 0-d unicode array: loads without allow_pickle.
        "meta": np.array(json.dumps(meta, separators=(",", ":"))),
    }


# --------------------------------------------------------------------------
# Measurement: run-time degradation (reference) and shallow classifiers
# --------------------------------------------------------------------------
#
# The shipped arrays are clean: clean speech compresses well, and the loader
# can then choose how hard to make the task.  The functions below are the
# numpy reference of the degradation recommended in docs/avdigits.md, for the
# toolkit's torch loader to port.  Clean, each modality alone is too easy for
# the fusion experiments (images ~.98 with logistic regression); degraded,
# each alone lands in ~.55-.75 and the two fused are clearly higher.

IMAGE_NOISE_STD = 3.0        # Gaussian noise, in pixel units (clean range 0..16)
IMAGE_OCCLUDE = 3            # side of the square patch set to 0 (3x3 of 8x8)
AUDIO_SNR_DB = (0.0, 10.0)   # white-noise SNR in dB, uniform per clip

STREAM_IMAGE, STREAM_AUDIO = 0, 1


def sample_rng(seed: int, index: int, stream: int) -> np.random.Generator:
    """One generator per (seed, sample index, modality stream).

    A sample gets the same degradation every time it is read, whatever the
    batch order or number of workers, and the two modalities' noise is
    independent.
    """
    return np.random.default_rng([seed, index, stream])


def degrade_image(image: np.ndarray, rng: np.random.Generator,
                  noise_std: float = IMAGE_NOISE_STD, occlude: int = IMAGE_OCCLUDE) -> np.ndarray:
    """uint8 [8, 8] in 0..16 -> float32 [8, 8] in 0..16.

    1. Occlusion: set an occlude x occlude patch to 0; its top-left corner
       (row, col) is drawn uniformly from 0..8-occlude each (rows first).
    2. Add independent N(0, noise_std^2) to all 64 pixels.
    3. Clip to [0, 16].
    """
    x = image.astype(np.float32)
    if occlude > 0:
        row, col = rng.integers(0, 8 - occlude + 1, size=2)
        x[row:row + occlude, col:col + occlude] = 0.0
    x += rng.normal(0.0, noise_std, size=x.shape).astype(np.float32)
    return np.clip(x, 0.0, 16.0)


def degrade_audio(audio: np.ndarray, rng: np.random.Generator,
                  snr_db: tuple[float, float] = AUDIO_SNR_DB) -> np.ndarray:
    """int16 [T] -> float32 [T] on the [-1, 1) scale (int16 / 32768).

    Draw snr ~ U(snr_db); signal power P = mean square of the whole clean
    clip (its silence included); add white Gaussian noise of variance
    P / 10^(snr / 10).  No clipping, no renormalisation.
    """
    x = audio.astype(np.float32) / 32768.0
    snr = rng.uniform(*snr_db)
    power = float(np.mean(np.square(x, dtype=np.float64)))
    noise_std = np.sqrt(power / 10.0 ** (snr / 10.0))
    return x + rng.normal(0.0, noise_std, size=x.shape).astype(np.float32)


def mel_filterbank(n_mels: int = 40, n_fft: int = 256, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Triangular filters on the HTK mel scale, [n_mels, n_fft // 2 + 1]."""
    def hz_to_mel(f):
        return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)

    def mel_to_hz(m):
        return 700.0 * (10.0 ** (np.asarray(m) / 2595.0) - 1.0)

    edges = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(sr / 2), n_mels + 2))
    freqs = np.linspace(0.0, sr / 2, n_fft // 2 + 1)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs - lower) / (centre - lower)
    falling = (upper - freqs) / (upper - centre)
    return np.maximum(0.0, np.minimum(rising, falling))


def log_mel(audio: np.ndarray, n_fft: int = 256, hop: int = 80) -> np.ndarray:
    """[N, T] float waveforms -> [N, frames, 40] log-mel (32 ms Hann, 10 ms hop)."""
    window = np.hanning(n_fft + 1)[:-1]
    n_frames = 1 + (audio.shape[1] - n_fft) // hop
    idx = np.arange(n_fft)[None, :] + hop * np.arange(n_frames)[:, None]
    spec = np.abs(np.fft.rfft(audio[:, idx] * window, axis=-1)) ** 2
    return np.log(spec @ mel_filterbank(n_fft=n_fft).T + 1e-8)


def image_features(images: np.ndarray) -> np.ndarray:
    """The 64 raw pixels."""
    return images.reshape(len(images), -1).astype(np.float32)


def audio_features(audio: np.ndarray) -> np.ndarray:
    """Mean and standard deviation of each log-mel band over time (80)."""
    lm = log_mel(audio)
    return np.concatenate([lm.mean(axis=1), lm.std(axis=1)], axis=1)


def degraded_image_features(images: np.ndarray, seed: int, noise_std: float = IMAGE_NOISE_STD,
                            occlude: int = IMAGE_OCCLUDE) -> np.ndarray:
    return image_features(np.stack([
        degrade_image(im, sample_rng(seed, i, STREAM_IMAGE), noise_std, occlude)
        for i, im in enumerate(images)]))


def degraded_audio_features(audio: np.ndarray, seed: int,
                            snr_db: tuple[float, float] = AUDIO_SNR_DB) -> np.ndarray:
    return audio_features(np.stack([
        degrade_audio(au, sample_rng(seed, i, STREAM_AUDIO), snr_db)
        for i, au in enumerate(audio)]))


def evaluate(npz_path: Path, noise_seed: int = 0, sweep: bool = False) -> None:
    """Logistic regression per modality and fused (concatenated features),
    fitted on train, scored on test; clean, degraded, and with --sweep each
    modality's accuracy over a grid of degradation strengths."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    d = dict(np.load(npz_path))
    label, split = d["label"], d["split"]
    train, test = split == 0, split == 2

    def score(features: np.ndarray) -> float:
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
        model.fit(features[train], label[train])
        return float(model.score(features[test], label[test]))

    print(f"test accuracy of logistic regression fitted on train "
          f"(train n={train.sum()}, test n={test.sum()}, chance 0.10; noise seed {noise_seed})")
    print(f"{'condition':<50} {'image':>6} {'audio':>6} {'fused':>6}")
    conditions = {
        "clean": (image_features(d["image"]), audio_features(d["audio"].astype(np.float32) / 32768.0)),
        f"degraded: std {IMAGE_NOISE_STD:g}, occlude {IMAGE_OCCLUDE}, SNR U{AUDIO_SNR_DB} dB":
            (degraded_image_features(d["image"], noise_seed),
             degraded_audio_features(d["audio"], noise_seed)),
    }
    for name, (img_f, aud_f) in conditions.items():
        print(f"{name:<50} {score(img_f):6.3f} {score(aud_f):6.3f} "
              f"{score(np.concatenate([img_f, aud_f], axis=1)):6.3f}", flush=True)
    if not sweep:
        return

    print("\nimage alone: noise std x occlusion side")
    stds, sides = (0.0, 2.0, 3.0, 4.0, 5.0), (0, 2, 3, 4)
    print(f"{'std':>4} " + " ".join(f"occ{s:<3}" for s in sides))
    for std in stds:
        row = [score(degraded_image_features(d["image"], noise_seed, std, side)) for side in sides]
        print(f"{std:4g} " + " ".join(f"{a:6.3f}" for a in row), flush=True)
    print("\naudio alone: white-noise SNR (dB, whole clip)")
    for snr in ((20.0, 20.0), (10.0, 10.0), (5.0, 5.0), (0.0, 10.0), (0.0, 0.0), (-5.0, -5.0)):
        print(f"U{snr}: {score(degraded_audio_features(d['audio'], noise_seed, snr)):.3f}", flush=True)


# --------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("src/latefusion/data/assets/avdigits.npz"),
                        help="output .npz (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="build seed (default: %(default)s)")
    parser.add_argument("--evaluate", action="store_true",
                        help="after building, report shallow-classifier accuracies")
    parser.add_argument("--evaluate-only", type=Path, metavar="NPZ",
                        help="only report accuracies for an existing file")
    parser.add_argument("--noise-seed", type=int, default=0,
                        help="seed of the degradation used by the measurement (default: %(default)s)")
    parser.add_argument("--sweep", action="store_true",
                        help="with --evaluate(-only): also tabulate each modality over degradation strengths")
    args = parser.parse_args(argv)

    if args.evaluate_only:
        evaluate(args.evaluate_only, args.noise_seed, args.sweep)
        return
    arrays = build(args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)", file=sys.stderr)
    if args.evaluate:
        evaluate(args.out, args.noise_seed, args.sweep)


if __name__ == "__main__":
    main()
