"""Uni-Modal Teacher (UMT): late fusion trained with the fused cross-entropy plus, for each
modality, a distillation loss pulling its encoder's features toward those of a frozen encoder
trained on that modality alone:

    L = CE(fused logits, y) + weight * sum_m MSE(g_m(f_m(x_m)), t_m(x_m))

`t_m` is the teacher encoder (frozen, eval mode, no gradients). `g_m` is [design choice]:
  * `distill: plain`     g_m = identity, the form every third-party UMT uses: the student must copy
                         the teacher's features exactly, leaving no room for paired features;
  * `distill: projected` g_m = a learned linear map, so the student must keep all the teacher's
                         information (linearly recoverable) but may hold more, such as the features
                         only cross-modal training finds.
Teacher-feature cache (`teacher_cache: auto`, default): when the train split does not augment its
inputs, each teacher's features are the same every epoch, so they are computed once, stored in the
teacher's run folder (`features/<fingerprint>.pt`, keyed by the data config) and read back with each
batch instead of running the teachers, which makes a UMT step cost what a naive step costs. When the
split augments, the teachers run live and the log says so. `teacher_cache: off` always runs them live.

`init: teacher` (default) starts each student encoder from its teacher's weights; `init: scratch`
from a fresh initialisation [design choice; the paper does not say]. Starting from the teacher, the
student keeps the teacher's uni-modal features from the first step instead of chasing them; on the
synthetic presets it closes the probe gap to the uni-modal encoders that scratch leaves (docs/methods.md).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn
from torch.utils.data import Dataset

from .. import distributed
from ..config import ConfigError, Section
from ..data import Batch, Inputs
from ..runs import CheckpointError, load_checkpoint, save_checkpoint
from . import METHODS
from .base import Method
from .teachers import load_unimodal_runs


class UMTOptions(Section):
    teachers: dict[str, str]  # modality -> uni-modal run folder
    weight: float = Field(1.0, ge=0)
    distill: Literal["projected", "plain"] = "projected"
    # Start each student encoder from its teacher's weights, or from a fresh initialisation.
    init: Literal["teacher", "scratch"] = "teacher"
    teacher_cache: Literal["auto", "off"] = "auto"


log = logging.getLogger(__name__)
CACHED = "teacher:"  # input key prefix of cached teacher features


class WithTeacherFeatures(Dataset):
    """A split whose batches also carry each sample's precomputed teacher features."""

    def __init__(self, split: Dataset, features: dict[str, Tensor]) -> None:
        self.split, self.features = split, features

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int):
        inputs, labels = self.__getitems__([index])
        return {name: t[0] for name, t in inputs.items()}, int(labels[0])

    def __getitems__(self, indices: list[int]) -> Batch:
        inputs, labels = self.split.__getitems__(indices)
        rows = torch.as_tensor(indices)
        return {**inputs, **{CACHED + m: f[rows] for m, f in self.features.items()}}, labels


@METHODS.register("umt")
class UMT(Method):
    name = "umt"
    Options = UMTOptions

    def __init__(self, config, spec) -> None:
        super().__init__(config, spec)
        teachers = load_unimodal_runs(self.options.teachers, spec, "method.options.teachers")
        self.teachers = nn.ModuleDict({m: teachers[m].encoders[m] for m in spec.modality_names})
        self.teachers.requires_grad_(False)
        self.teachers.eval()
        student_dim = config.model.feature_dim
        if self.options.distill == "plain":
            wrong = {m: t.out_dim for m, t in self.teachers.items() if t.out_dim != student_dim}
            if wrong:
                raise ConfigError(f"method.options.distill=plain needs teacher features of the student's size {student_dim}; teachers have {wrong}. Use distill=projected.")
            self.projectors = nn.ModuleDict({m: nn.Identity() for m in self.teachers})
        else:
            self.projectors = nn.ModuleDict({m: nn.Linear(student_dim, t.out_dim) for m, t in self.teachers.items()})

    def build_model(self) -> nn.Module:
        model = super().build_model()
        if self.options.init == "teacher":
            for m, teacher in self.teachers.items():
                try:
                    model.encoders[m].load_state_dict(teacher.state_dict())
                except RuntimeError:
                    raise ConfigError(f"method.options.init=teacher: the student's {m!r} encoder differs from its teacher's "
                                      f"({self.options.teachers[m]}); use the teacher's model settings or init=scratch") from None
        return model

    def train_split(self, train: Dataset) -> Dataset:
        if self.options.teacher_cache == "off":
            return train
        if getattr(train, "transform", None) is not None:
            log.info("UMT: the train split augments its inputs, so teacher features change every epoch: running the teachers live")
            return train
        return WithTeacherFeatures(train, {m: self.cached_features(m, train) for m in self.teachers})

    def cached_features(self, modality: str, train: Dataset) -> Tensor:
        from ..train import encode  # here, not at the top: train imports the methods

        data = json.dumps(self.config.data.model_dump(mode="json", exclude={"batch_size", "eval_batch_size", "num_workers"}), sort_keys=True)
        fingerprint = hashlib.sha256(f"{data}|{len(train)}".encode()).hexdigest()[:16]
        path = Path(self.options.teachers[modality]) / "features" / f"{fingerprint}.pt"
        # In a distributed run the main process computes and stores the features; the others read them.
        with distributed.main_process_first():
            try:
                return load_checkpoint(path)["features"]
            except CheckpointError:
                pass  # absent or damaged: compute it again
            teacher = self.teachers[modality]
            features, _ = encode(teacher, modality, train, self.config, next(teacher.parameters()).device)
            save_checkpoint(path, {"features": features, "data": data})
            log.info("UMT: cached %s teacher features of %d samples in %s", modality, len(features), path)
            return features

    def train(self, mode: bool = True) -> "UMT":
        super().train(mode)
        self.teachers.eval()  # teachers stay frozen, batch-norm statistics included
        return self

    def training_loss(self, model: nn.Module, inputs: Inputs, labels: Tensor) -> tuple[Tensor, dict[str, float]]:
        features = model.features(inputs)
        fused = F.cross_entropy(model.head(features), labels)
        logs = {"ce": fused.item()}
        distill = fused.new_zeros(())
        for m, teacher in self.teachers.items():
            if CACHED + m in inputs:
                target = inputs[CACHED + m]
            else:
                with torch.no_grad():
                    target = teacher(inputs[m])
            term = F.mse_loss(self.projectors[m](features[m]).float(), target.float())
            logs[f"distill_{m}"] = term.item()
            distill = distill + term
        loss = fused + self.options.weight * distill
        logs["loss"] = loss.item()
        return loss, logs
