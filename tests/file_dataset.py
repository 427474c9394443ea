"""A small file-backed data set for the data-check tests, registered as "test-files".

Layout of `data.path`: `manifest.csv` (id, split, label, image, audio) with an `.npy` vector per
image and a 16-bit PCM `.wav` per audio clip; an empty cell leaves that modality out of the sample.
Its splits implement latefusion's Split protocol, including the data-check hooks (`check()` and `sample_ids()`)
the way a real file-backed data set would: the readers tell a missing file from an unreadable one
from a truncated one, and `check()` reports each bad sample without loading it through the model path.
"""

from __future__ import annotations

import csv
import wave
from pathlib import Path

import numpy as np
import torch

from latefusion.data import DATASETS, SPLITS, DataBundle, Modality, Split, hash_parts
from latefusion.data.checks import Problem
from latefusion.data.files import FileProblem, read_npy, read_wav

IMAGE_DIM, AUDIO_LEN, NUM_CLASSES = 16, 32, 3
COLUMNS = ("id", "split", "label", "image", "audio")


def read_audio(path: Path) -> np.ndarray:
    return read_wav(path)[0]


READERS = {"image": read_npy, "audio": read_audio}


class FileSplit(Split):
    def __init__(self, root: Path, rows: list[dict[str, str]]) -> None:
        self.root, self.rows = root, rows

    def __len__(self) -> int:
        return len(self.rows)

    def sample_ids(self) -> list[str]:
        return [row["id"] for row in self.rows]

    def content_hash(self) -> str:
        files = [self.root / row[m] for row in self.rows for m in READERS if row[m]]
        return hash_parts(self.rows, *(f.read_bytes() if f.is_file() else "missing" for f in files))

    def __getitem__(self, index: int):
        row = self.rows[index]
        inputs = {m: torch.from_numpy(read(self.root / row[m]).astype(np.float32)) for m, read in READERS.items() if row[m]}
        return inputs, int(row["label"])

    def __getitems__(self, indices: list[int]):
        samples = [self[i] for i in indices]
        return {m: torch.stack([x[m] for x, _ in samples]) for m in samples[0][0]}, torch.tensor([y for _, y in samples])

    def check(self) -> list[Problem]:
        problems = []
        for index, row in enumerate(self.rows):
            for modality, read in READERS.items():
                try:
                    if row[modality]:
                        read(self.root / row[modality])
                except FileProblem as problem:
                    problems.append(Problem(problem.kind, f"{modality} file {row[modality]} {problem}", index=index))
                    break
        return problems


@DATASETS.register("test-files")
def build(config) -> DataBundle:
    root = Path(config.path)
    with open(root / "manifest.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return DataBundle(
        name="test-files",
        modalities=[Modality("image", "vector", (IMAGE_DIM,)), Modality("audio", "vector", (AUDIO_LEN,))],
        num_classes=NUM_CLASSES,
        encoders={"image": {"name": "mlp"}, "audio": {"name": "mlp"}},
        splits={split: FileSplit(root, [r for r in rows if r["split"] == split]) for split in SPLITS},
    )


def write_wav(path: Path, samples: np.ndarray) -> None:
    with wave.open(str(path), "wb") as clip:
        clip.setnchannels(1)
        clip.setsampwidth(2)
        clip.setframerate(8000)
        clip.writeframes((samples * 32767).astype("<i2").tobytes())


def write_fixture(root: Path, sizes=(12, 6, 6), seed: int = 0) -> list[dict[str, str]]:
    """A clean data set: the class shifts both modalities, so it is learnable. Returns the manifest rows."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for split, size in zip(SPLITS, sizes):
        for i in range(size):
            label, sample_id = i % NUM_CLASSES, f"{split}-{i:03d}"
            np.save(root / f"{sample_id}.npy", (rng.normal(size=IMAGE_DIM) + label).astype(np.float32))
            write_wav(root / f"{sample_id}.wav", np.clip(rng.normal(size=AUDIO_LEN) * 0.1 + 0.2 * label, -1, 1))
            rows.append({"id": sample_id, "split": split, "label": str(label), "image": f"{sample_id}.npy", "audio": f"{sample_id}.wav"})
    write_manifest(root, rows)
    return rows


def write_manifest(root: Path, rows: list[dict[str, str]]) -> None:
    with open(root / "manifest.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def row_index(rows: list[dict[str, str]], split: str, index: int) -> int:
    """Position in the manifest of sample `index` of `split`."""
    return [i for i, r in enumerate(rows) if r["split"] == split][index]
