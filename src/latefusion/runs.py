"""Run folders: what each file holds, one writer at a time, and references to other runs.

A run folder holds:
  config.yaml       the resolved configuration
  data.json         the data set's spec (modalities, shapes, classes), so a model can be rebuilt without data
  references.json   the runs this one learned from (UMT's teachers, UME's members): each one's path,
                    relative to this folder, and the sha256 of the checkpoint that was used
  metrics.jsonl     one line per epoch
  result.json       final validation and test metrics, with the fingerprints of the config and the data
  predictions.npz   each validation and test sample's predicted class and label, in the split's order
                    (the guide's paired tests and the benchmarks read them; nothing is evaluated twice)
  probe.json        linear-probe results, with the settings and fingerprints they were computed from
  checkpoints/      best.pt (weights at the best validation epoch) and last.pt (everything needed to
                    resume); both also carry the config and data fingerprint they were trained with
  cache/            what a run computes once and reuses (UMT's teacher features), keyed by its inputs
  .lock             held by the one process writing the folder
A finished run loads, probes and reports from its own folder alone: its checkpoints hold every weight
its model needs (a UMT model does not need its teachers, a UME model holds its members).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .config import RunConfig, read_yaml, validate
from .data import DataSpec
from .errors import RunFolderError, RunFolderMovedError
from .storage import atomic_write_text, file_sha256, pinned_folder, read_arrays, read_json, write_arrays, write_json


class RunDir:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    config_file = property(lambda self: self.path / "config.yaml")
    data_file = property(lambda self: self.path / "data.json")
    references_file = property(lambda self: self.path / "references.json")
    metrics_file = property(lambda self: self.path / "metrics.jsonl")
    result_file = property(lambda self: self.path / "result.json")
    predictions_file = property(lambda self: self.path / "predictions.npz")
    probe_file = property(lambda self: self.path / "probe.json")
    lock_file = property(lambda self: self.path / ".lock")
    cache = property(lambda self: self.path / "cache")
    best = property(lambda self: self.path / "checkpoints" / "best.pt")
    last = property(lambda self: self.path / "checkpoints" / "last.pt")

    def config(self) -> RunConfig:
        if not self.config_file.is_file():
            raise RunFolderError(f"{self.path} is not a run folder: {self.config_file.name} is missing")
        return validate(RunConfig, read_yaml(self.config_file), str(self.config_file))

    def spec(self) -> DataSpec:
        return DataSpec.from_json(read_json(self.data_file))

    def result(self) -> dict[str, Any]:
        """result.json, its fields checked (check_result): a hand-edited file is named, not a crash further on."""
        if not self.result_file.is_file():
            raise RunFolderError(f"{self.path} is not a finished run: {self.result_file.name} is missing")
        return check_result(self.result_file, read_json(self.result_file))

    def predictions(self) -> dict[str, SplitPredictions]:
        """{"val", "test"}: each sample's predicted class and label, as the finished run saved them."""
        if not self.predictions_file.is_file():
            raise RunFolderError(f"{self.path} has no {self.predictions_file.name}: it was trained by a latefusion older than "
                                 f"0.2, or has not finished; retrain it (or train into a new folder)")
        arrays = read_arrays(self.predictions_file)
        try:
            return {split: SplitPredictions(arrays[f"{split}_predicted"], arrays[f"{split}_labels"]) for split in SPLITS}
        except KeyError as missing:
            raise RunFolderError(f"{self.predictions_file} lacks the array {missing}; it was not written by latefusion") from None

    def write_predictions(self, predictions: dict[str, SplitPredictions]) -> None:
        write_arrays(self.predictions_file, {f"{split}_{key}": getattr(predictions[split], key).astype(np.int32)
                                             for split in SPLITS for key in ("predicted", "labels")})

    def run_result(self) -> RunResult:
        """The finished run's result.json and saved predictions, as `train` returned them."""
        return RunResult(self.path, self.result(), self.predictions())

    def references(self) -> dict[str, dict[str, RunReference]]:
        """option -> modality -> the run this one learned from, as references.json records it."""
        if not self.references_file.is_file():
            return {}
        raw = read_json(self.references_file)
        try:
            references = {option: {m: RunReference(str(r["path"]), str(r["sha256"])) for m, r in by_modality.items()}
                          for option, by_modality in raw.items()}
        except (AttributeError, KeyError, TypeError):
            raise RunFolderError(f"{self.references_file} is not a references file: expected "
                                 '{option: {modality: {"path": ..., "sha256": ...}}}') from None
        for option, by_modality in references.items():
            for modality, reference in by_modality.items():
                if Path(reference.path).is_absolute():  # never written so (RunReference.to): the file was edited
                    raise RunFolderError(f"{self.references_file}: {option}.{modality}: the path {reference.path} is absolute; latefusion "
                                         f"records paths relative to the run folder (e.g. ../unimodal-{modality}), so that a folder moved "
                                         f"with its references keeps working. Restore the relative path, or retrain this run")
        return references

    def is_finished(self) -> bool:
        return self.result_file.is_file()

    def write_metrics(self, history: list[dict[str, Any]]) -> None:
        atomic_write_text(self.metrics_file, "".join(json.dumps(row) + "\n" for row in history))

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the folder for one writing process. The kernel releases the lock when its process
        ends, however it ends, so a lock left by a killed run is simply taken over. A folder this
        creates is removed again if nothing but the lock was written in it (a run refused at start)."""
        created = not self.path.exists()
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 4096).decode(errors="replace").strip() or "holder unknown"
            os.close(fd)
            raise RunFolderError(f"{self.path} is in use by another latefusion process ({holder}); "
                                 f"wait for it to finish, or choose another folder") from None
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}: {' '.join(sys.argv)}".encode())
            self.remove_stale_temporaries()
            # Pinned: a folder moved while it trains stops the run by name (storage.PinnedFolder), not
            # rebuilt at its old path by the next write.
            with pinned_folder(self.path) as pinned:
                try:
                    yield
                except Exception as error:  # a read of the moved folder (last.pt, best.pt) fails too: named by the move
                    if isinstance(error, RunFolderMovedError) or pinned.in_place():
                        raise
                    raise pinned.moved_error() from error
        finally:
            if created and self.path.is_dir() and [p.name for p in self.path.iterdir()] == [self.lock_file.name]:
                self.lock_file.unlink()
                self.path.rmdir()
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def remove_stale_temporaries(self) -> None:
        """Temporary files an interrupted atomic write left behind; only safe while holding the lock."""
        for folder in (self.path, self.path / "checkpoints", self.cache):
            for stale in folder.glob(".*.tmp") if folder.is_dir() else ():
                stale.unlink(missing_ok=True)


SPLITS = ("val", "test")


@dataclass(frozen=True)
class SplitPredictions:
    """Each sample's predicted class and label on one split, in the split's order."""
    predicted: np.ndarray
    labels: np.ndarray

    @property
    def correct(self) -> np.ndarray:
        """One bool per sample: True where the model is right (what the guide's paired tests compare)."""
        return self.predicted == self.labels


@dataclass(frozen=True)
class RunResult(Mapping[str, Any]):
    """One finished run: its folder, its metrics (result.json: `result["test_acc"]`, ...; read-only) and
    the per-sample predictions on validation and test (`result.predictions["val"].correct`).
    `train` returns it; `RunDir(path).run_result()` reads it back from the folder alone."""
    path: Path
    metrics: Mapping[str, Any]
    predictions: Mapping[str, SplitPredictions]

    def __getitem__(self, key: str) -> Any:
        return self.metrics[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.metrics)

    def __len__(self) -> int:
        return len(self.metrics)


# The fields of result.json that readers compute with (compare, the guide, the report), by kind: a file
# edited by hand is refused by name where it is read. Fields not named here are not checked.
FRACTIONS = ("val_acc", "test_acc", "val_macro_f1", "test_macro_f1", "test_modality_imbalance")
COUNTS = ("n_train", "n_val", "n_test", "epochs_run", "batch_size", "steps_per_epoch", "optimizer_steps")


def check_result(path: Path, result: Any) -> dict[str, Any]:
    """`result` (read from `path`), or RunFolderError naming the first field that is not of its kind."""
    def refuse(what: str) -> RunFolderError:
        return RunFolderError(f"{path}: {what}; the file was written by latefusion: was it edited? Restore it, or retrain the run")

    def kind(value: Any) -> str:
        return f"{value!r} ({'text' if isinstance(value, str) else type(value).__name__})"

    def fraction(value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1

    def whole(value: Any, least: int) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= least

    if not isinstance(result, dict):
        raise refuse(f"it holds a {type(result).__name__}; expected an object of fields (val_acc, test_acc, ...)")
    for field in FRACTIONS:
        if field in result and not fraction(result[field]):
            raise refuse(f"{field!r} is {kind(result[field])}; expected a number from 0 to 1")
    for field, least in [*((f, 0) for f in COUNTS), ("best_epoch", -1)]:
        if field in result and not whole(result[field], least):
            raise refuse(f"{field!r} is {kind(result[field])}; expected a whole number of at least {least}")
    by_modality = result.get("test_acc_by_modality", {})
    if not (isinstance(by_modality, dict) and all(fraction(v) for v in by_modality.values())):
        raise refuse(f"'test_acc_by_modality' is {kind(by_modality)}; expected a mapping of modality to numbers from 0 to 1")
    fingerprints = result.get("fingerprints", {})
    if not (isinstance(fingerprints, dict) and all(isinstance(v, str) for v in fingerprints.values())):
        raise refuse(f"'fingerprints' is {kind(fingerprints)}; expected a mapping of config and data to text")
    return result


@dataclass(frozen=True)
class RunReference:
    """A run another run learned from (UMT's teacher, UME's member): its folder, relative to the
    learning run's folder, and the sha256 of the checkpoint that was used."""
    path: str
    sha256: str

    @classmethod
    def to(cls, run: RunDir, other: RunDir) -> "RunReference":
        return cls(os.path.relpath(other.path.resolve(), run.path.resolve()), checkpoint_sha256(other))


def resolve_references(run: RunDir, given: dict[str, str], option: str) -> dict[str, RunDir]:
    """The runs named by `option` (modality -> folder, as the user gave them) for `run`.

    A run that already recorded its references (a resumed one) finds them where its record says,
    relative to its own folder, so a folder moved with its references keeps working; the path given
    is the fallback. A reference whose checkpoint changed since it was recorded is refused by name."""
    recorded = run.references().get(option, {})
    resolved = {}
    for modality, path in given.items():
        record = recorded.get(modality)
        candidates = ([run.path / record.path] if record else []) + [Path(path)]
        found = next((RunDir(c) for c in candidates if (c / "config.yaml").is_file()), None)
        if found is None:
            raise RunFolderError(f"{option}.{modality}: no run folder at {' or '.join(str(c) for c in candidates)}")
        if record and checkpoint_sha256(found) != record.sha256:
            raise RunFolderError(f"{option}.{modality}: the checkpoint of {found.path} changed since {run.path} used it "
                                 f"(sha256 {record.sha256[:12]}... recorded); retrain this run, or restore that checkpoint")
        resolved[modality] = found
    return resolved


def record_references(run: RunDir, option: str, runs: dict[str, RunDir]) -> None:
    references = {**run.references(), option: {m: RunReference.to(run, other) for m, other in runs.items()}}
    write_json(run.references_file, {o: {m: dataclasses.asdict(r) for m, r in by_modality.items()} for o, by_modality in references.items()})


def checkpoint_sha256(run: RunDir) -> str:
    if not run.best.is_file():
        raise RunFolderError(f"{run.path} has no {run.best.relative_to(run.path)}: it has not finished training")
    stat = run.best.stat()
    # A checkpoint is only ever replaced whole (a new inode, by an atomic rename), so its identity
    # and size and mtime name its contents: each one is hashed once per process, not once per use.
    key = (str(run.best.resolve()), stat.st_ino, stat.st_size, stat.st_mtime_ns)
    if key not in _CHECKPOINT_HASHES:
        _CHECKPOINT_HASHES[key] = file_sha256(run.best)
    return _CHECKPOINT_HASHES[key]


_CHECKPOINT_HASHES: dict[tuple, str] = {}
