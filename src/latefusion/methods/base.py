"""The method protocol: what every training method declares and implements.

A method is the training objective; the model is what it trains. The model (`build_model`) follows
the fused-model protocol (models/protocol.py: `modalities`, `encoders`, `features`, `scores`, and
for late fusion the `head`) and is rebuilt from the run's config and data spec alone, so a finished
run loads from its own folder. Everything else a method needs to train is the method's own, saved in
last.pt to resume and never needed to predict:
  * what it trains or keeps (extra heads, projections, balancing state as buffers) is built in its
    constructor, so it exists before the optimiser is built over the model's and the method's
    parameters, and a resumed run loads into it whatever `prepare` does;
  * what it only reads (UMT's and G2D's frozen teachers, the slices of train G-Blending holds out)
    is set up in `prepare`, which may fill weights already built (UMT's teacher initialisation) but
    builds nothing trained or saved (tests/test_method_protocol.py checks every registered method).

A method class declares `name`, `group` (no default: refused when the class is defined without
one), `style`, and, if it has options, `Options` (a Section, checked when the config is resolved;
`EpochWindow` for a window of epochs).

The loop (train.py) calls, in this order:
  prepare(model, context) -> the dataset to train on      once, before the optimiser is built
  on_epoch_start(epoch, model, context)                    before each epoch
  loss(model, inputs, labels, step) -> StepOutput          `steps_per_batch` times per batch
  backward(model, output)                                  fills the gradients from that output
  predict(model, inputs)                                   evaluation
Per-step values travel in the StepOutput, not on `self`, so no call depends on another having run.
Logged values stay on the device; the loop reads them once per logging interval.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, get_args

import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import Tensor, nn

from ..config import RunConfig, Section, validate
from ..data import DataBundle, DataSpec, Inputs, Split
from ..errors import ConfigError
from ..models import build_late_fusion
from ..runs import RunDir
from ..style import METHOD_STYLES, Style


class NoOptions(Section):
    pass


class EpochWindow(Section):
    """Options of a method that acts during a window of epochs, `start_epoch <= epoch <= end_epoch`;
    a subclass sets its source's `end_epoch` (or None: to the end of training, unless its method
    resolves a default from the run's config before training). Checked when the config is resolved."""

    start_epoch: int = Field(0, ge=0, description="first epoch of the window")
    end_epoch: int = Field(..., ge=0, description="last epoch of the window (inclusive)")

    @model_validator(mode="after")
    def _ordered(self) -> EpochWindow:
        if self.end_epoch is not None and self.end_epoch < self.start_epoch:
            raise ValueError(f"end_epoch {self.end_epoch} is before start_epoch {self.start_epoch}")
        return self

    def in_window(self, epoch: int) -> bool:
        return self.start_epoch <= epoch and (self.end_epoch is None or epoch <= self.end_epoch)  # None: no end


Group = Literal["unimodal", "paper", "baseline", "other"]
GROUPS: tuple[str, ...] = get_args(Group)


def check_group(cls: type) -> None:
    """A method class (one that sets `name`) declares its own `group`, one of GROUPS: inheriting it
    would let a subclass join the runs of its parent's group unasked."""
    group = cls.__dict__.get("group")
    if group not in GROUPS:
        found = f"group = {group!r}" if "group" in cls.__dict__ else "no group"
        raise TypeError(f"method class {cls.__module__}.{cls.__qualname__} (name {cls.__dict__['name']!r}) declares {found}; "
                        f"declare `group = ...` in its class body, one of {', '.join(map(repr, GROUPS))} "
                        f"(\"baseline\" joins `demo --methods all`, \"other\" runs only when named)")


@dataclass(frozen=True)
class StepInfo:
    """Where the loop is: the epoch, and which of the method's optimiser steps on this batch."""

    epoch: int
    substep: int = 0


@dataclass
class StepOutput:
    """A training step's loss, its logged values (detached scalars, on the device), and whatever the
    method's `backward` needs from the forward pass (`saved`)."""

    loss: Tensor
    logs: dict[str, Tensor]
    saved: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainingContext:
    """What `prepare` and `on_epoch_start` may use: the run's config, data, folder and device, and the
    loop's engine (loaders, encode) through `latefusion.engine`."""

    config: RunConfig
    bundle: DataBundle
    run: RunDir
    device: Any
    writes: bool = True  # False on the processes of a distributed run other than the main one


class Method(nn.Module):
    name: ClassVar[str]
    Options: ClassVar[type[Section]] = NoOptions
    # How reports and figures show the method.
    style: ClassVar[Style]
    # Which runs include the method, declared by every method class (no default, so a new method never
    # joins `--methods all` by accident): "unimodal": trained once per modality; "paper": the paper's
    # set, always in the demo; "baseline": the field's methods (`demo --methods all`); "other": run
    # only when named.
    group: ClassVar[Group]
    # The option the pipeline fills with {modality: uni-modal run folder} (UMT's teachers, UME's members).
    unimodal_runs_option: ClassVar[str | None] = None
    # False for methods that only combine already-trained runs (UME): the loop then just evaluates.
    trains: ClassVar[bool] = True
    # Whether the pipeline linear-probes this method's encoders (UME's are the uni-modal ones).
    probed: ClassVar[bool] = True
    # True when a training step may leave some trained parameters without a gradient (MLA trains one
    # modality per step); distributed training must then look for them (distributed.wrap).
    leaves_parameters_unused: ClassVar[bool] = False
    # Optimiser steps the loop takes on each batch; MLA takes one per modality, in turn.
    steps_per_batch: int = 1

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:  # a helper base class, not a method of its own
            return
        check_group(cls)
        # The figures and the report draw a method by name from style.METHOD_STYLES, so that they
        # need not import the methods (nor the training stack behind them).
        if hasattr(cls, "style"):
            METHOD_STYLES[cls.name] = cls.style

    def __init__(self, config: RunConfig, spec: DataSpec) -> None:
        super().__init__()
        self.config = config
        self.spec = spec
        self.options = validate_options(type(self), config.method.options)

    def modalities(self) -> list[str]:
        return self.spec.modality_names

    def require_modalities(self, count: int) -> None:
        if len(self.modalities()) < count:
            raise ConfigError(f"method {self.name!r} needs at least {count} modalities; data set {self.spec.name!r} has {self.spec.modality_names}")

    def build_model(self) -> nn.Module:
        return build_late_fusion(self.spec, self.config.model, self.modalities())

    def prepare(self, model: nn.Module, context: TrainingContext) -> Split:
        """Set up what training needs besides the model; return the samples to train on."""
        return context.bundle.splits["train"]

    def on_epoch_start(self, epoch: int, model: nn.Module, context: TrainingContext) -> None:
        """Called before each training epoch (e.g. to re-estimate blend weights)."""

    def loss(self, model: nn.Module, inputs: Inputs, labels: Tensor, step: StepInfo) -> StepOutput:
        loss = F.cross_entropy(model(inputs), labels)
        return StepOutput(loss, {"loss": loss.detach()})

    def backward(self, model: nn.Module, output: StepOutput) -> None:
        """Fill the gradients; methods that reshape gradients (OGM-GE, MMPareto, MLA) override this."""
        output.loss.backward()

    def predict(self, model: nn.Module, inputs: Inputs) -> Tensor:
        """Scores whose argmax is the predicted class."""
        return model(inputs)

    def scores(self, model: nn.Module, inputs: Inputs) -> tuple[Tensor, dict[str, Tensor]]:
        """`predict`'s scores and each modality's own scores (for late fusion, its share of the fused
        logits: the head's weight columns of that modality, or its own linear layer), from one pass of
        the encoders: the fused-model protocol's `scores(inputs)` (models/protocol.py)."""
        return model.scores(inputs)

    def modality_scores(self, model: nn.Module, inputs: Inputs) -> dict[str, Tensor]:
        return self.scores(model, inputs)[1]


def validate_options(method: type[Method], options: dict[str, Any]) -> Section:
    return validate(method.Options, options, f"method.options of method {method.name!r}")


def unimodal_heads(spec: DataSpec, config: RunConfig, modalities: list[str]) -> nn.ModuleDict:
    """A linear classifier per modality on its encoder's features, beside the fused head: the
    uni-modal losses of G-Blending and MMPareto."""
    return nn.ModuleDict({m: nn.Linear(config.model.feature_dim, spec.num_classes) for m in modalities})
