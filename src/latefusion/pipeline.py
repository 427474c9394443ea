"""The paper's whole pipeline on one data set (what `latefusion demo` runs):

  uni-modal runs (one per modality) -> the paper's methods (naive late fusion, UME, UMT: every
  registered method of group "paper") -> [the baselines asked for] -> linear probes -> guide
  -> summary.json (its shape: summary.py)

A method that reuses the uni-modal runs (UME's members, UMT's teachers) declares the option the
pipeline fills (`Method.unimodal_runs_option`), so a new method is one file. Every run's config is
built and checked before the first one trains. Finished runs in `out` are reused, so an interrupted
demo picks up where it stopped; `latefusion report` (report.py) turns the folder into report.html.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import distributed
from .config import RunConfig
from .data import DataBundle, build_dataset
from .errors import ConfigError
from .guide import guide_from_runs
from .methods import METHODS
from .probe import probe_run
from .registry import did_you_mean
from .resolve import check_free_form_options
from .storage import write_json
from .summary import UNIMODAL, Scores, Summary, run_folder, unimodal_key
from .train import train


def paper_methods() -> list[str]:
    return [name for name in METHODS.names() if METHODS.get(name).group == "paper"]


def baseline_methods() -> list[str]:
    return [name for name in METHODS.names() if METHODS.get(name).group == "baseline"]


def method_config(base: RunConfig, name: str, options: dict[str, Any]) -> RunConfig:
    return base.model_copy(update={"method": base.method.model_copy(update={"name": name, "options": options})}, deep=True)


def planned_runs(base: RunConfig, out: Path, modalities: list[str], methods: Sequence[str],
                 method_options: dict[str, dict[str, Any]]) -> dict[str, RunConfig]:
    """Summary key -> the config of its run, every one checked: an option typo fails here, before training."""
    unknown = sorted(set(method_options) - {UNIMODAL, *methods})
    if unknown:
        raise ConfigError(f"method options given for {unknown}, which this pipeline does not run; it runs {[UNIMODAL, *methods]}."
                          + did_you_mean(unknown[0], [UNIMODAL, *methods]))
    unimodal_dirs = {m: str(out / run_folder(unimodal_key(m))) for m in modalities}
    plan = {unimodal_key(m): method_config(base, UNIMODAL, {**method_options.get(UNIMODAL, {}), "modality": m}) for m in modalities}
    for name in methods:
        option = METHODS.get(name).unimodal_runs_option
        plan[name] = method_config(base, name, {**({option: unimodal_dirs} if option else {}), **method_options.get(name, {})})
    for config in plan.values():
        check_free_form_options(config)
    return plan


def run_pipeline(base: RunConfig, out: str | Path, *, method_options: dict[str, dict[str, Any]] | None = None,
                 methods: Sequence[str] = (), bundle: DataBundle | None = None, log=print) -> dict[str, Any]:
    """`base` holds the shared sections (data, model, optim, train); `method_options` per method name
    (e.g. {"umt": {"weight": 50}}) are added to what the pipeline sets itself. `methods`: baselines
    to run and probe after the paper's set. `bundle`: the data, when built already (in-memory data)."""
    out = Path(out)
    selected = [*paper_methods(), *(m for m in methods if m not in paper_methods())]
    for name in selected:
        METHODS.get(name)  # an unknown name fails here, with a did-you-mean
    bundle = bundle or build_dataset(base.data)
    modalities = bundle.modality_names
    plan = planned_runs(base, out, modalities, selected, method_options or {})
    log(f"data set {bundle.name}: modalities {modalities}, {bundle.num_classes} classes, "
        f"train/val/test {len(bundle.splits['train'])}/{len(bundle.splits['val'])}/{len(bundle.splits['test'])}")

    results = {}
    for key, config in plan.items():
        folder = run_folder(key)
        log(f"  training {folder} ...")
        results[key] = train(config, out / folder, resume=True, bundle=bundle)
        log(f"  {folder}: val {results[key]['val_acc']:.3f}  test {results[key]['test_acc']:.3f}  ({results[key]['wall_time_s']:.0f} s)")

    log("  probing encoders ...")
    probed = [key for key, config in plan.items() if METHODS.get(config.method.name).probed]
    probes = {key: probe_run(out / run_folder(key), bundle=bundle) for key in probed}
    unimodal_dirs = {m: str(out / run_folder(unimodal_key(m))) for m in modalities}
    verdict = guide_from_runs(unimodal_dirs, str(out / "naive"), str(out / "ume"), bundle=bundle,
                              umt=str(out / run_folder("umt")) if "umt" in plan else None)
    fused = [key for key in probed if not key.startswith(UNIMODAL)]

    summary = Summary(
        dataset=bundle.name,
        modalities=modalities,
        data_fingerprint=bundle.fingerprint,
        methods={key: {k: r[k] for k in Scores.model_fields if k in r} for key, r in results.items()},
        probe={UNIMODAL: {m: probes[unimodal_key(m)][m]["test_acc"] for m in modalities},
               **{key: {m: probes[key][m]["test_acc"] for m in modalities} for key in fused}},
        # Uni-modal minus each fusion method's encoder probe: on validation (what the guide reads) and on test.
        probe_gap={split: {key: {m: probes[unimodal_key(m)][m][f"{split}_acc"] - probes[key][m][f"{split}_acc"] for m in modalities}
                           for key in fused} for split in ("val", "test")},
        guide=verdict,
    ).model_dump(mode="json", exclude_none=True)
    if distributed.is_main():
        write_json(out / "summary.json", summary)
    return summary
