"""What a demo folder's summary.json holds, typed in one place, and the key -> run-folder convention.

One seed (pipeline.py writes it):
  {"dataset", "modalities", "data_fingerprint",
   "methods": {"unimodal:<m>" | <method name>: {"val_acc", "test_acc", "val_macro_f1", "test_macro_f1"}},
   "probe": {"unimodal" | <probed method>: {modality: linear-probe test accuracy}},
   "guide": {"choice", "reason", "evidence"}}
Several seeds (seeds.py): {"dataset", "modalities", "seeds", "mean", "std", "guide_choices", "per_seed"},
where `mean` and `std` mirror the one-seed "methods" and "probe" sections and `per_seed` holds the
one-seed summaries by label.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

UNIMODAL = "unimodal"


def unimodal_key(modality: str) -> str:
    return f"{UNIMODAL}:{modality}"


def run_folder(key: str) -> str:
    """The run folder of a summary key: "unimodal:a" -> "unimodal-a", "naive" -> "naive"."""
    return key.replace(":", "-")


class Scores(BaseModel):
    model_config = ConfigDict(extra="forbid")
    val_acc: float
    test_acc: float
    val_macro_f1: float
    test_macro_f1: float


class Verdict(BaseModel):
    model_config = ConfigDict(extra="forbid")
    choice: str
    reason: str
    evidence: dict[str, Any]


class Summary(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dataset: str
    modalities: list[str]
    data_fingerprint: str
    methods: dict[str, Scores]
    probe: dict[str, dict[str, float]]
    guide: Verdict


class SeedsSummary(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dataset: str
    modalities: list[str]
    seeds: list[str]
    mean: dict[str, Any]
    std: dict[str, Any]
    guide_choices: dict[str, str]
    per_seed: dict[str, Summary]
