"""Uni-Modal Teacher (UMT): late fusion trained with the fused cross-entropy plus, for each
modality, a distillation loss pulling its encoder's features toward those of a frozen encoder
trained on that modality alone:

    L = CE(fused logits, y) + weight * sum_m MSE(g_m(f_m(x_m)), t_m(x_m))

`t_m` is the teacher encoder (frozen, eval mode, no gradients). Two forms, both measured
(docs/methods.md has the table over five seeds and four data sets, `bench/umt_forms.py`):

  * **the paper's form** (`distill: plain`, `init: scratch`): g_m = identity, students trained from
    scratch. It is what every third-party UMT implements and what the recipes of the paper's data
    sets (`configs/*/umt.yaml`) use, with BalanceBenchmark's weight 10.
  * **ours, the default** (`distill: projected`, `init: teacher`, weight 1): g_m is a learned linear
    map, so the student must keep everything the teacher's features hold (linearly recoverable) but
    may hold more, such as the features only cross-modal training finds; each student starts from its
    teacher's weights, so it keeps the uni-modal features from the first step instead of chasing
    them. On our measurements it is never worse than the paper's form beyond noise and better where
    paired features matter (synthetic-paired: the plain forms fall 1-2 points below naive fusion).

The projector g_m maps to the teachers' feature size, `teacher_dim` (default: the student's
`model.feature_dim`, what the demo's teachers have); it is built with the method, before the
teachers are loaded, so the optimiser and a resumed checkpoint find it, and `prepare` refuses
teachers of another size with the option to set.

Teacher-feature cache (`teacher_cache: auto`, default): when the train split declares that it does
not augment, each teacher's features are the same every epoch, so they are computed once, stored in
this run's folder (`cache/teacher-<modality>-<key>.pt`, the key a hash of the teacher's checkpoint,
the train split's contents and transform) and read back with each batch instead of running the
teachers, which makes a UMT step cost what a naive step costs. When the split augments, the teachers
run live and the log says so. `teacher_cache: off` always runs them live.
"""

from __future__ import annotations

import logging
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from ..config import Section
from ..data import Batch, Inputs, Split, hash_parts
from ..engine import encode
from ..errors import CheckpointError, ConfigError
from ..runs import checkpoint_sha256
from ..storage import load_checkpoint, save_checkpoint
from ..style import Style
from .base import Method, StepInfo, StepOutput, TrainingContext
from .registry import METHODS
from .teachers import unimodal_models, unimodal_runs


class UMTOptions(Section):
    teachers: dict[str, str]  # modality -> uni-modal run folder
    weight: float = Field(1.0, ge=0)
    distill: Literal["projected", "plain"] = "projected"
    # Start each student encoder from its teacher's weights, or from a fresh initialisation.
    init: Literal["teacher", "scratch"] = "teacher"
    teacher_cache: Literal["auto", "off"] = "auto"
    # The projector maps the student's features to the teachers' size, known before the teachers are
    # loaded so that the projector is built with the method (`prepare` checks the teachers match).
    teacher_dim: int | None = Field(None, gt=0, description="size of the teachers' features (default: the student's model.feature_dim)")


log = logging.getLogger(__name__)
CACHED = "teacher:"  # input key prefix of cached teacher features


class WithTeacherFeatures(Split):
    """A split whose batches also carry each sample's precomputed teacher features."""

    def __init__(self, split: Split, features: dict[str, Tensor]) -> None:
        self.split, self.features = split, features

    def __len__(self) -> int:
        return len(self.split)

    def __getitems__(self, indices: list[int]) -> Batch:
        inputs, labels = self.split.__getitems__(indices)
        rows = torch.as_tensor(indices)
        return {**inputs, **{CACHED + m: f[rows] for m, f in self.features.items()}}, labels


@METHODS.register("umt")
class UMT(Method):
    name = "umt"
    Options = UMTOptions
    group = "paper"
    style = Style("UMT", "#CC79A7", "^", hatch="....")
    unimodal_runs_option = "teachers"

    def __init__(self, config, spec) -> None:
        super().__init__(config, spec)
        student_dim = config.model.feature_dim
        self.teacher_dim = self.options.teacher_dim or student_dim
        plain = self.options.distill == "plain"
        if plain and self.teacher_dim != student_dim:
            raise ConfigError(f"method.options.distill=plain needs teacher features of the student's size {student_dim} "
                              f"(model.feature_dim); teacher_dim is {self.teacher_dim}. Use distill=projected.")
        # Trained beside the model and saved in checkpoints: built here, before any optimiser exists.
        self.projectors = nn.ModuleDict({m: nn.Identity() if plain else nn.Linear(student_dim, self.teacher_dim) for m in self.modalities()})
        # The frozen uni-modal models, neither trained nor saved: loaded by `prepare` from their run folders.
        self.teachers: dict[str, nn.Module] = {}

    def prepare(self, model: nn.Module, context: TrainingContext) -> Split:
        runs = unimodal_runs(self.options.teachers, self.spec, "method.options.teachers", context)
        self.teachers = unimodal_models(runs, context.device)
        wrong = {m: t.encoders[m].out_dim for m, t in self.teachers.items() if t.encoders[m].out_dim != self.teacher_dim}
        if wrong:
            raise ConfigError(f"method.options.teachers: the teachers' features have sizes {wrong}, but this run expects {self.teacher_dim} "
                              f"(method.options.teacher_dim, default model.feature_dim); "
                              + ("with distill=plain they must match the student's" if self.options.distill == "plain"
                                 else f"set method.options.teacher_dim={next(iter(wrong.values()))}"))
        if self.options.init == "teacher":
            for m, teacher in self.teachers.items():
                try:
                    model.encoders[m].load_state_dict(teacher.encoders[m].state_dict())
                except RuntimeError:
                    raise ConfigError(f"method.options.init=teacher: the student's {m!r} encoder differs from its teacher's "
                                      f"({runs[m].path}); use the teacher's model settings or init=scratch") from None
        train = context.bundle.splits["train"]
        if self.options.teacher_cache == "off":
            return train
        if train.augments:
            log.info("UMT: the train split augments its inputs, so teacher features change every epoch: running the teachers live")
            return train
        return WithTeacherFeatures(train, {m: self.cached_features(m, checkpoint_sha256(runs[m]), train, context) for m in self.teachers})

    def cached_features(self, modality: str, teacher_sha256: str, train: Split, context: TrainingContext) -> Tensor:
        path = context.run.cache / f"teacher-{modality}-{hash_parts(teacher_sha256, train.content_hash())}.pt"
        try:
            return load_checkpoint(path)["features"]
        except CheckpointError:
            pass  # absent or damaged: compute it
        features, _ = encode(self.teachers[modality].encoders[modality], modality, train, self.config, context.device)
        if context.writes:
            save_checkpoint(path, {"features": features})
            log.info("UMT: cached %s teacher features of %d samples in %s", modality, len(features), path)
        return features

    def loss(self, model: nn.Module, inputs: Inputs, labels: Tensor, step: StepInfo) -> StepOutput:
        features = model.features(inputs)
        fused = F.cross_entropy(model.head(features), labels)
        logs = {"ce": fused.detach()}
        distill = fused.new_zeros(())
        for m in self.teachers:
            target = self.teacher_features(inputs, m)
            term = F.mse_loss(self.projectors[m](features[m]).float(), target.float())
            logs[f"distill_{m}"] = term.detach()
            distill = distill + term
        loss = fused + self.options.weight * distill
        logs["loss"] = loss.detach()
        return StepOutput(loss, logs)

    def teacher_features(self, inputs: Inputs, modality: str) -> Tensor:
        """t_m(x_m): read from the batch when cached, else computed by the frozen teacher."""
        if CACHED + modality in inputs:
            return inputs[CACHED + modality]
        with torch.no_grad():
            return self.teachers[modality].encoders[modality](inputs[modality])
