"""The one root of the errors a user can cause and fix (a bad config, bad data, a run folder in use).

The command line prints these as one message without a traceback; anything else is a bug in
latefusion or its environment and keeps its traceback (`latefusion --debug` shows it for these too).
"""

from __future__ import annotations


class UserError(Exception):
    """Something the user can fix; the message names what is wrong, where, and what was expected."""


class ConfigError(UserError):
    """A configuration that cannot be used; the message names the key, what was found and what was expected."""


class DataError(UserError):
    """Data that cannot be used as it is: the message names the file, array or sample."""


class CheckpointError(UserError):
    """A checkpoint that is missing, damaged, or carries something other than tensors and plain values."""


class RunFolderError(UserError):
    """A run folder that cannot be used for what was asked: in use, not a run, or holding another run."""


class NonFiniteLossError(UserError):
    """The training loss became NaN or Inf; the last good checkpoint is kept."""


class OutputError(UserError):
    """A file latefusion writes (run folder, checkpoint, report) that the system refused: a full disk,
    a read-only file system, no permission, a file where a folder should be. The message names the
    path and the cause; the atomic writer replaced nothing, so the previous file, if any, is intact."""


class RunFolderMovedError(RunFolderError):
    """The run folder was moved or removed while a process was writing it; the message says where it is now, if known."""
