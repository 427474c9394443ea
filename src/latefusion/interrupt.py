"""Stopping a training run cleanly on SIGINT (Ctrl-C) or SIGTERM (what schedulers and `kill` send).

Inside `stop_on_signal()` (the command line wraps every command in it) the first such signal only
sets a flag: the training loop finishes its current step, saves a checkpoint and raises
`Interrupted`, and `latefusion train --resume` later continues from exactly there. A second signal
of the same kind acts at once, as it would without this module. Outside it, signals keep their
usual effect. The flag is process-wide, like signals themselves.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from typing import Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_received: int | None = None


class Interrupted(Exception):
    """The run stopped on a signal after saving its checkpoint."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum  # the shell's convention for "ended by signal N"


@contextlib.contextmanager
def stop_on_signal() -> Iterator[None]:
    global _received
    # Python lets only the main thread install handlers; elsewhere signals keep their usual effect.
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, frame) -> None:
        global _received
        _received = signum
        signal.signal(signum, previous[signum])
        print(f"\nlatefusion: {signal.Signals(signum).name} received: saving a checkpoint after this step "
              f"(send it again to stop at once)", file=sys.stderr, flush=True)

    previous = {s: signal.signal(s, handle) for s in STOP_SIGNALS}
    _received = None
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _received = None


def stop_requested() -> bool:
    return _received is not None


def raise_if_stop_requested(where: str, *, elsewhere: bool = False) -> None:
    """`elsewhere`: another process of the same distributed run received the signal; this one stops
    at the same step, so that none waits forever on the others."""
    if _received is not None:
        raise Interrupted(_received, f"stopped by {signal.Signals(_received).name} {where}")
    if elsewhere:
        raise Interrupted(signal.SIGTERM, f"stopped with another process of this run, which received a stop signal, {where}")
