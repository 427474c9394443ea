"""Files written atomically and read back safely: bytes, text, JSON and checkpoints.

Every file is written to a temporary file in the same folder, flushed, then renamed over the old one,
so a reader sees the old file or the new one, never a truncated one. A checkpoint ends with the
sha256 of its contents; a file that does not match is refused, not half-read, and it is loaded with
`weights_only=True`, so no pickled code can run.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import pickle
import re
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from .errors import CheckpointError, OutputError, RunFolderMovedError, UserError


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


UMASK = _read_umask()


# Errors of the system, not of latefusion, that a user fixes (free space, mount read-write, choose
# another folder): the writer turns them into an OutputError naming the path and the cause. Any other
# OSError keeps its traceback.
OUTPUT_ERRNOS = {
    errno.ENOSPC: "disk full",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EEXIST: "a part of the path is a file, not a folder",
    errno.EISDIR: "it is a folder, not a file",
    errno.ENAMETOOLONG: "the name is too long",
}


def describe_os_error(error: OSError) -> str | None:
    """`disk full (ENOSPC)` for the errnos in OUTPUT_ERRNOS, else None."""
    cause = OUTPUT_ERRNOS.get(error.errno) if isinstance(error.errno, int) else None
    return f"{cause} ({errno.errorcode[error.errno]})" if cause else None


def output_error(path: Path, error: OSError) -> OutputError | None:
    """The OutputError for `error`, met while writing `path`, or None for an errno not in OUTPUT_ERRNOS."""
    cause = describe_os_error(error)
    if cause is None:
        return None
    where = f" at {error.filename}" if error.filename and Path(error.filename) != path else ""
    return OutputError(f"could not write {path}: {cause}{where}; nothing was replaced: the previous file, if any, is intact")


class PinnedFolder:
    """A folder one process writes (a run folder, while its lock is held), pinned by an open
    descriptor: if the folder is moved or removed meanwhile, its path no longer leads to the pinned
    folder, and every write under that path is refused (RunFolderMovedError) instead of recreating
    the old path and scattering the run over two folders. The descriptor also says where the
    folder went (Linux's /proc/self/fd)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(os.path.abspath(path))
        self.fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
        stat = os.fstat(self.fd)
        self.identity = (stat.st_dev, stat.st_ino)

    def in_place(self) -> bool:
        try:
            stat = os.stat(self.path)
        except OSError:
            return False
        return (stat.st_dev, stat.st_ino) == self.identity

    def now_at(self) -> str | None:
        """Where the folder is now: its path, "" once it was removed, None where the system cannot tell."""
        try:
            where = os.readlink(f"/proc/self/fd/{self.fd}")
        except OSError:  # no /proc (macOS)
            return None
        return "" if where.endswith(" (deleted)") else where

    def moved_error(self) -> RunFolderMovedError:
        now = self.now_at()
        where = (f"Its files are whole up to its last checkpoint, and it is now at {now}; continue it there: "
                 f"latefusion train --out {now} --resume" if now else "It was removed." if now == "" else
                 "If it was moved, its files are whole up to its last checkpoint; continue it where it is now: "
                 "latefusion train --out NEW_PLACE --resume")
        return RunFolderMovedError(f"{self.path} was moved or removed while this process was writing it; stopped, so that nothing "
                                   f"is written to a new folder at the old path. {where}")

    def close(self) -> None:
        os.close(self.fd)


_PINNED: list[PinnedFolder] = []


@contextlib.contextmanager
def pinned_folder(path: str | Path) -> Iterator[PinnedFolder]:
    """While this is held, writes through this module under `path` check that `path` is still the
    folder it was when pinned (see PinnedFolder)."""
    pinned = PinnedFolder(Path(path))
    _PINNED.append(pinned)
    try:
        yield pinned
    finally:
        _PINNED.remove(pinned)
        pinned.close()


def refuse_moved_folder(path: Path) -> None:
    """RunFolderMovedError if `path` lies under a pinned folder that is no longer where it was pinned."""
    target = Path(os.path.abspath(path))
    for pinned in _PINNED:
        if target.is_relative_to(pinned.path) and not pinned.in_place():
            raise pinned.moved_error()


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, flush it to disk, then rename over `path`:
    a reader sees the old file or the new one, never a truncated one. A full disk, a read-only file
    system, no permission or a file where a folder should be raise OutputError (path and cause);
    the temporary file is removed and `path` is left as it was. Under a pinned folder that was moved
    or removed (pinned_folder), nothing is written: RunFolderMovedError."""
    path = Path(path)
    refuse_moved_folder(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:  # closes fd however the block ends
            os.fchmod(fd, 0o666 & ~UMASK)  # mkstemp makes the file private (0600); a plain open() would honour the umask
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        if tmp is not None:
            with contextlib.suppress(OSError):
                Path(tmp).unlink(missing_ok=True)
        refuse_moved_folder(path)  # moved between the check above and the rename: the rename found no folder
        refused = output_error(path, error) if isinstance(error, OSError) else None
        if refused is not None:
            raise refused from error
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def write_json(path: str | Path, value: Any) -> None:
    atomic_write_text(path, json.dumps(value, indent=2) + "\n")


def read_json(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} does not exist")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise UserError(f"{path} is not valid JSON: {error}") from None


# Files replaced as one set (report.html and report.md): each new file is first written whole beside
# its name (.NAME.staged), then the journal naming them is written (the commit), then each is renamed
# into place and the journal removed. A kill before the commit leaves the old set; after it, the
# journal lets complete_file_set finish the renames, which every write_file_set does first.
FILE_SET_JOURNAL = ".file-set.json"
STAGED_SUFFIX = ".staged"


def staged_path(folder: Path, name: str) -> Path:
    return folder / f".{name}{STAGED_SUFFIX}"


def write_file_set(folder: str | Path, files: dict[str, bytes]) -> None:
    """Replace the files `files` names (plain names in `folder`) as one set: a reader who finds no
    journal in `folder` sees the old set or the new one. A failure before the commit (a full disk,
    an interrupt) removes what was staged and leaves the old set as it was."""
    folder = Path(folder)
    complete_file_set(folder)
    try:
        for name, data in files.items():
            atomic_write_bytes(staged_path(folder, name), data)
    except BaseException:
        for name in files:
            staged_path(folder, name).unlink(missing_ok=True)
        raise
    write_json(folder / FILE_SET_JOURNAL, sorted(files))
    complete_file_set(folder)


def complete_file_set(folder: str | Path) -> None:
    """Finish a set whose journal was written (rename its staged files into place); remove the staged
    files of a set that never reached its journal."""
    folder = Path(folder)
    journal = folder / FILE_SET_JOURNAL
    if journal.is_file():
        names = read_json(journal)
        for name in names if isinstance(names, list) else []:
            if isinstance(name, str) and name == Path(name).name and staged_path(folder, name).is_file():
                os.replace(staged_path(folder, name), folder / name)
        journal.unlink()
    for stale in folder.glob(f".*{STAGED_SUFFIX}"):
        stale.unlink(missing_ok=True)


def pending_file_set(folder: str | Path) -> bool:
    """Whether a set committed in `folder` still waits for its renames (complete_file_set)."""
    return (Path(folder) / FILE_SET_JOURNAL).is_file()


def write_arrays(path: str | Path, arrays: dict[str, Any]) -> None:
    """Named numpy arrays as one .npz file, written atomically."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def read_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """The arrays of an .npz file written by `write_arrays`; object arrays (pickles) are refused."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except (ValueError, OSError, EOFError) as error:
        raise UserError(f"{path} is not a readable .npz file: {error}") from None


# A checkpoint is torch.save's bytes, then this marker and their sha256. Data and checksum live in one
# file, so a single atomic rename publishes both: no crash can leave them out of step. torch.load
# itself ignores bytes after the archive, so the file still loads with plain torch.load.
CHECKSUM_MARKER = b"\nlatefusion-sha256:"


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    atomic_write_bytes(path, data + CHECKSUM_MARKER + hashlib.sha256(data).hexdigest().encode() + b"\n")


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load with `weights_only=True` after checking the sha256 stored at the end of the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    raw = path.read_bytes()
    data, marker, checksum = raw.rpartition(CHECKSUM_MARKER)
    if not marker:
        raise CheckpointError(
            f"checkpoint {path} is damaged: it lacks the sha256 written at its end ({len(raw)} bytes read); "
            f"it was truncated, or it was not written by latefusion"
        )
    if hashlib.sha256(data).hexdigest() != checksum.strip().decode(errors="replace"):
        raise CheckpointError(
            f"checkpoint {path} is damaged: its contents do not match the sha256 written with them "
            f"({len(raw)} bytes read); it was truncated or changed after it was written"
        )
    try:
        return torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        # torch's message is long advice on loading unsafely; its one useful line names the object.
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
        raise CheckpointError(
            f"refusing to load {path}: it holds Python objects other than tensors and plain values "
            f"(a pickle payload{f' calling {found.group(1)}' if found else ''}), which could run code when unpickled"
        ) from None
    except (RuntimeError, EOFError, ValueError) as error:
        raise CheckpointError(f"checkpoint {path} could not be read ({error}); it is damaged or not a checkpoint") from None


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
