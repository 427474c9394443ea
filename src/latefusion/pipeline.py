"""The paper's whole pipeline on one data set (what `latefusion demo` runs):

  uni-modal runs (one per modality) -> naive late fusion -> UME (reuses the uni-modal runs)
  -> UMT (the uni-modal runs as teachers) -> [the baselines asked for] -> linear probes -> guide
  -> summary.json

Finished runs in `out` are reused, so an interrupted demo picks up where it stopped. Each run goes to
the folder `run_folder(key)` names; `latefusion report` (report.py) turns the folder into report.html.

summary.json (one seed; several seeds: see seeds.py):
  {"dataset": ..., "modalities": [...],
   "methods": {"unimodal:<m>" | "naive" | "ume" | "umt" | <baseline>: {"val_acc", "test_acc"}},
   "probe": {"unimodal" | "naive" | "umt": {modality: linear-probe test accuracy}},
   "guide": {"choice", "reason", "evidence"}}
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import distributed
from .config import RunConfig
from .data import build_dataset
from .guide import guide_from_runs
from .probe import probe_run
from .runs import write_json
from .train import train

PROBED = ("unimodal", "naive", "umt")
# The field's late-fusion methods the paper compares against; `latefusion demo --methods all` adds them.
BASELINES = ("gblend", "ogm_ge", "mmpareto", "mla")


def run_folder(key: str) -> str:
    """The run folder of a summary key: "unimodal:a" -> "unimodal-a", "naive" -> "naive"."""
    return key.replace(":", "-")


def method_config(base: RunConfig, name: str, options: dict[str, Any]) -> RunConfig:
    return base.model_copy(update={"method": base.method.model_copy(update={"name": name, "options": options})}, deep=True)


def run_pipeline(base: RunConfig, out: str | Path, *, method_options: dict[str, dict[str, Any]] | None = None,
                 methods: Sequence[str] = (), log=print) -> dict[str, Any]:
    """`base` holds the shared sections (data, model, optim, train); `method_options` per method name
    (e.g. {"umt": {"weight": 50}}) are added to what the pipeline sets itself. `methods`: baselines
    (names from BASELINES) to run and probe after the paper's set."""
    out = Path(out)
    extra = method_options or {}
    bundle = build_dataset(base.data)
    modalities = bundle.modality_names
    log(f"data set {bundle.name}: modalities {modalities}, {bundle.num_classes} classes, "
        f"train/val/test {len(bundle.splits['train'])}/{len(bundle.splits['val'])}/{len(bundle.splits['test'])}")

    def run(name: str, folder: str, options: dict[str, Any]) -> dict[str, Any]:
        log(f"  training {folder} ...")
        config = method_config(base, name, {**options, **extra.get(name, {})})
        result = train(config, out / folder, resume=True, bundle=bundle)
        log(f"  {folder}: val {result['val_acc']:.3f}  test {result['test_acc']:.3f}  ({result['wall_time_s']:.0f} s)")
        return result

    unimodal_dirs = {m: str(out / run_folder(f"unimodal:{m}")) for m in modalities}
    results = {f"unimodal:{m}": run("unimodal", run_folder(f"unimodal:{m}"), {"modality": m}) for m in modalities}
    results["naive"] = run("naive", "naive", {})
    results["ume"] = run("ume", "ume", {"members": unimodal_dirs})
    results["umt"] = run("umt", "umt", {"teachers": unimodal_dirs})
    for name in methods:
        results[name] = run(name, name, {})

    log("  probing encoders ...")
    probes = {f"unimodal:{m}": probe_run(path, bundle=bundle) for m, path in unimodal_dirs.items()}
    probes["naive"] = probe_run(out / "naive", bundle=bundle)
    probes["umt"] = probe_run(out / "umt", bundle=bundle)
    for name in methods:
        probes[name] = probe_run(out / name, bundle=bundle)
    verdict = guide_from_runs(unimodal_dirs, str(out / "naive"), str(out / "ume"), bundle=bundle)

    summary = {
        "dataset": bundle.name,
        "modalities": modalities,
        "methods": {name: {"val_acc": r["val_acc"], "test_acc": r["test_acc"]} for name, r in results.items()},
        "probe": {
            "unimodal": {m: probes[f"unimodal:{m}"][m]["test_acc"] for m in modalities},
            "naive": {m: probes["naive"][m]["test_acc"] for m in modalities},
            "umt": {m: probes["umt"][m]["test_acc"] for m in modalities},
            **{name: {m: probes[name][m]["test_acc"] for m in modalities} for name in methods},
        },
        "guide": verdict,
    }
    if distributed.is_main():
        write_json(out / "summary.json", summary)
    return summary
