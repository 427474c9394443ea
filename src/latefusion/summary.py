"""What a demo folder's summary.json holds, typed in one place, and the key -> run-folder convention.

One seed (pipeline.py writes it):
  {"dataset", "modalities", "data_fingerprint",
   "methods": {"unimodal:<m>" | <method name>: {"val_acc", "test_acc", "val_macro_f1", "test_macro_f1",
               and for models of several modalities "test_acc_by_modality" {modality: acc} and
               "test_modality_imbalance" (best minus worst modality)}},
   "probe": {"unimodal" | <probed method>: {modality: linear-probe test accuracy}},
   "probe_gap": {"val" | "test": {<probed method>: {modality: uni-modal minus that method's encoder probe}}},
   "guide": {"choice", "verdict", "headline", "reason", "warnings", "evidence"}}  (guide.decide)
Several seeds (seeds.py): {"dataset", "modalities", "seeds", "mean", "std", "guide_choices" (each seed's
verdict), "guide_pooled" (the verdict over the seeds: guide.pooled_verdict), "per_seed"},
where `mean` and `std` mirror the one-seed "methods" and "probe" sections and `per_seed` holds the
one-seed summaries by label.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .errors import RunFolderError

UNIMODAL = "unimodal"


def unimodal_key(modality: str) -> str:
    return f"{UNIMODAL}:{modality}"


def run_folder(key: str) -> str:
    """The run folder of a summary key: "unimodal:a" -> "unimodal-a", "naive" -> "naive"."""
    return key.replace(":", "-")


def run_folder_in(demo: str | Path, key: str) -> Path:
    """The run folder of summary key `key` inside the demo folder `demo`, refused (naming the key) when
    the key would lead anywhere else: an absolute path, `..`, or a link out of the folder."""
    demo = Path(demo)
    path = demo / run_folder(key)
    root, resolved = demo.resolve(), path.resolve()
    if resolved == root or not resolved.is_relative_to(root):
        raise RunFolderError(f"{demo / 'summary.json'}: method key {key!r} names {path}, which is not a run folder inside "
                             f"{demo}; a summary's keys may only name run folders in its own folder")
    return path


class Scores(BaseModel):
    model_config = ConfigDict(extra="forbid")
    val_acc: float
    test_acc: float
    val_macro_f1: float
    test_macro_f1: float
    test_acc_by_modality: dict[str, float] | None = None
    test_modality_imbalance: float | None = None


class Verdict(BaseModel):
    """guide.decide's answer: `verdict` is "ume", "umt" or "inconclusive"; `choice` the method it
    recommends or, when inconclusive, leans to; `headline` the one-sentence answer with its evidence."""
    model_config = ConfigDict(extra="forbid")
    choice: str
    verdict: str
    headline: str
    reason: str
    warnings: list[dict[str, str]]
    evidence: dict[str, Any]


class Summary(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dataset: str
    modalities: list[str]
    data_fingerprint: str
    methods: dict[str, Scores]
    probe: dict[str, dict[str, float]]
    # "val" (the split the guide reads) and "test" (the split of `probe`); absent in older summaries.
    probe_gap: dict[str, dict[str, dict[str, float]]] = Field(default_factory=dict)
    guide: Verdict


class SeedsSummary(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dataset: str
    modalities: list[str]
    seeds: list[str]
    mean: dict[str, Any]
    std: dict[str, Any]
    guide_choices: dict[str, str]
    guide_pooled: dict[str, Any] | None = None
    per_seed: dict[str, Summary]
