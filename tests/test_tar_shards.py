"""Tar shards in the WebDataset layout: each sample once per epoch across processes and loader workers,
each file read as the folder reader reads it."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import wave
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from torch.utils.data import DataLoader

from latefusion.data.folder import ContentOptions, read_cell
from latefusion.data.tar_shards import TarShards, assigned_shards

TORCHRUN = Path(sys.executable).parent / "torchrun"
CLASSES = ["cat", "dog"]


def wav_bytes(samples: np.ndarray, rate: int = 8000) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1), out.setsampwidth(2), out.setframerate(rate)
        out.writeframes((samples * 32767).astype("<i2").tobytes())
    return buffer.getvalue()


def add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_shards(root: Path, shards: int = 4, per_shard: int = 3, broken: str | None = None) -> list[Path]:
    """Shards of samples with an image, a vector, a sound and a label; `broken`: the key whose image is cut short."""
    rng = np.random.default_rng(0)
    root.mkdir()
    paths = []
    for s in range(shards):
        path = root / f"train-{s:04d}.tar"
        with tarfile.open(path, "w") as tar:
            for k in range(per_shard):
                key = f"s{s}-{k}"
                image = io.BytesIO()
                Image.fromarray(rng.integers(0, 255, (6, 6, 3), dtype=np.uint8)).save(image, format="PNG")
                vector = io.BytesIO()
                np.save(vector, rng.standard_normal(4).astype(np.float32))
                add(tar, f"{key}.image.png", image.getvalue()[:20] if key == broken else image.getvalue())
                add(tar, f"{key}.label.txt", CLASSES[k % 2].encode())
                add(tar, f"{key}.sound.wav", wav_bytes(0.1 * rng.standard_normal(400)))
                add(tar, f"{key}.vector.npy", vector.getvalue())
        paths.append(path)
    return paths


def test_loader_workers_read_each_sample_once_as_the_folder_reader_reads_it(tmp_path, capfd):
    shards = write_shards(tmp_path / "shards", broken="s2-1")
    samples = list(DataLoader(TarShards(shards, CLASSES, rank=0, world=1), batch_size=None, num_workers=2))
    keys = [s["key"] for s in samples]
    assert sorted(keys) == sorted(f"s{s}-{k}" for s in range(4) for k in range(3) if (s, k) != (2, 1))
    assert "sample 's2-1' left out: unreadable-file: image.png is not a readable image" in capfd.readouterr().err  # from a worker process

    with tarfile.open(shards[0]) as tar:
        tar.extractall(tmp_path / "files", filter="data")
    first = next(s for s in samples if s["key"] == "s0-0")
    for field, modality in (("s0-0.image.png", "image"), ("s0-0.vector.npy", "vector"), ("s0-0.sound.wav", "sound")):
        kind = {"image": "image", "vector": "array", "sound": "audio"}[modality]
        value, _ = read_cell(tmp_path / "files", field, kind, ContentOptions())
        assert np.array_equal(first["inputs"][modality].numpy(), value), modality
    assert first["label"] == 0 and [s["label"] for s in samples if s["key"] == "s0-1"] == [1]


def test_every_epoch_shares_out_every_shard_once_in_its_own_order():
    shards = [f"{k}.tar" for k in range(10)]
    for epoch in range(3):
        parts = [assigned_shards(shards, epoch, seed=5, part=p, parts=4) for p in range(4)]
        assert sorted(s for part in parts for s in part) == shards
    assert assigned_shards(shards, 0, 5, 0, 1) != assigned_shards(shards, 1, 5, 0, 1)


SCRIPT = """
import json, sys
from pathlib import Path
import torch
from torch.utils.data import DataLoader
from latefusion import distributed
from latefusion.data.tar_shards import TarShards

distributed.setup(torch.device("cpu"))
*shards, out = sys.argv[1:]
for epoch in (0, 1):
    stream = TarShards(shards, ["cat", "dog"], epoch=epoch)
    keys = [sample["key"] for sample in DataLoader(stream, batch_size=None, num_workers=2)]
    Path(out, f"epoch-{epoch}-rank-{distributed.rank()}.json").write_text(json.dumps(keys))
"""


@pytest.mark.slow
def test_two_processes_with_two_workers_each_read_each_sample_once_per_epoch(tmp_path):
    shards = write_shards(tmp_path / "shards", shards=6, per_shard=2)
    script = tmp_path / "read.py"
    script.write_text(SCRIPT)
    done = subprocess.run([str(TORCHRUN), "--standalone", "--nproc_per_node=2", str(script), *map(str, shards), str(tmp_path)],
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    expected = sorted(f"s{s}-{k}" for s in range(6) for k in range(2))
    for epoch in (0, 1):
        ranks = [json.loads((tmp_path / f"epoch-{epoch}-rank-{r}.json").read_text()) for r in (0, 1)]
        assert all(ranks) and sorted(ranks[0] + ranks[1]) == expected, epoch  # each sample once, both processes busy


def test_shards_listed_by_url_are_read_as_local_ones(tmp_path):
    import functools
    import http.server
    import threading

    shards = write_shards(tmp_path / "shards", shards=2, per_shard=2)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "shards"))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        urls = [f"http://127.0.0.1:{server.server_port}/{path.name}" for path in shards]
        remote = {s["key"]: s for s in TarShards(urls, CLASSES, rank=0, world=1)}
    finally:
        server.shutdown()
    local = {s["key"]: s for s in TarShards(shards, CLASSES, rank=0, world=1)}
    assert sorted(remote) == sorted(local) == ["s0-0", "s0-1", "s1-0", "s1-1"]
    assert all(np.array_equal(remote[k]["inputs"]["image"], local[k]["inputs"]["image"]) for k in local)
