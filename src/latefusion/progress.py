"""Training progress on the console: a tqdm bar on a terminal, one log line per epoch elsewhere.

A bar redraws itself with carriage returns, which is what a terminal wants and what a log file,
a pipe or a CI console does not (each redraw becomes one more fragment of text). So when stderr is
not a terminal (and not a notebook, where tqdm draws a widget), the bar is disabled and each epoch
ends with one line on the `latefusion.train` logger instead:

    unimodal-a epoch 3/30: loss 0.412 val_acc 0.873

Either way training opens with one line that says what an epoch is (the batch size actually used,
which `data.batch_size=auto` chose from the training split's size):

    unimodal-a: 510 training samples, batch size 32 (data.batch_size=auto), 16 steps per epoch, 30 epochs

The command line shows INFO messages on stderr; a Python caller sees them once it configures
logging (`logging.basicConfig(level=logging.INFO)`).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from tqdm.auto import tqdm as auto_tqdm
from tqdm.autonotebook import tqdm as notebook_or_std_tqdm
from tqdm.std import tqdm as std_tqdm

log = logging.getLogger("latefusion.train")


def interactive_console() -> bool:
    """Whether a redrawn bar is wanted: stderr is a terminal, or tqdm.auto picked a notebook widget."""
    stream = sys.stderr
    return notebook_or_std_tqdm is not std_tqdm or bool(getattr(stream, "isatty", lambda: False)())


class TrainProgress:
    """The training loop's progress: `update` per step, `postfix` now and then, `epoch_end` per epoch."""

    def __init__(self, name: str, epochs: int, steps_per_epoch: int, initial: int, *, enabled: bool,
                 interactive: bool | None = None) -> None:
        self.name, self.epochs, self.enabled, self.steps_per_epoch = name, epochs, enabled, steps_per_epoch
        self.bar_shown = enabled and (interactive_console() if interactive is None else interactive)
        self.bar = auto_tqdm(total=epochs * steps_per_epoch, initial=initial, desc=name, disable=not self.bar_shown,
                             leave=False, dynamic_ncols=True)

    def start(self, samples: int, batch_size: int, auto: bool) -> None:
        """The line that opens training (also above a bar): what an epoch is, e.g.
        `naive: 510 training samples, batch size 32 (data.batch_size=auto), 16 steps per epoch, 30 epochs`."""
        if self.enabled:
            chosen = " (data.batch_size=auto)" if auto else ""
            log.info("%s: %d training samples, batch size %d%s, %d steps per epoch, %d epochs",
                     self.name, samples, batch_size, chosen, self.steps_per_epoch, self.epochs)

    def update(self) -> None:
        self.bar.update()

    def postfix(self, **values: Any) -> None:
        if self.bar_shown:
            self.bar.set_postfix(**values)

    def epoch_end(self, epoch: int, loss: float, val_acc: float) -> None:
        """`epoch` counts from 0; the line counts from 1, out of `epochs`."""
        if self.bar_shown:
            self.bar.set_postfix(loss=f"{loss:.3f}", val_acc=f"{val_acc:.3f}")
        elif self.enabled:
            log.info("%s epoch %d/%d: loss %.3f val_acc %.3f", self.name, epoch + 1, self.epochs, loss, val_acc)

    def close(self) -> None:
        self.bar.close()
