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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import distributed
from .config import RunConfig
from .data import DataBundle, build_dataset
from .errors import ConfigError, RunFolderError
from .guide import MARGIN, PREFER, RunFacts, decide
from .methods import METHODS
from .probe import probe_run
from .registry import did_you_mean
from .resolve import check_free_form_options
from .runs import RunDir, RunResult
from .seeds import aggregate_summaries, each_seed, pooled_guide, seed_folders
from .stats import ALPHA
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


@dataclass(frozen=True)
class Experiment:
    """One demo, in memory: each run's result as training returned it (metrics and per-sample
    predictions), each probed run's linear probes ({key: {modality: probe result}}), and the guide's
    verdict read from both. summary.json is its written form (`summary()`), written once."""
    dataset: str
    modalities: list[str]
    data_fingerprint: str
    runs: dict[str, RunResult]
    probes: dict[str, dict[str, dict[str, Any]]]
    verdict: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        unimodal = {m: self.probes[unimodal_key(m)][m] for m in self.modalities}
        fused = [key for key in self.probes if not key.startswith(UNIMODAL)]
        return Summary(
            dataset=self.dataset,
            modalities=self.modalities,
            data_fingerprint=self.data_fingerprint,
            methods={key: {k: r[k] for k in Scores.model_fields if k in r} for key, r in self.runs.items()},
            probe={UNIMODAL: {m: unimodal[m]["test_acc"] for m in self.modalities},
                   **{key: {m: self.probes[key][m]["test_acc"] for m in self.modalities} for key in fused}},
            # Uni-modal minus each fusion method's encoder probe: on validation (what the guide reads) and on test.
            probe_gap={split: {key: {m: unimodal[m][f"{split}_acc"] - self.probes[key][m][f"{split}_acc"] for m in self.modalities}
                               for key in fused} for split in ("val", "test")},
            guide=self.verdict,
        ).model_dump(mode="json", exclude_none=True)


def run_demo(base: RunConfig, out: str | Path, *, seeds: int | None = None, method_options: dict[str, dict[str, Any]] | None = None,
             methods: Sequence[str] = (), bundle: DataBundle | None = None, prefer: str = PREFER, report: bool = True,
             log=print) -> dict[str, Any]:
    """What `latefusion demo` does, from Python: the pipeline once (`seeds=None`, into `out`) or once per
    seed (into out/seed-K/), summary.json, and, with `report`, report.html and report.md in `out`.
    Returns the summary (the one-seed or the several-seed form: summary.py)."""
    options = dict(method_options=method_options, methods=methods, bundle=bundle, prefer=prefer, log=log)
    summary = run_pipeline(base, out, **options) if seeds is None else run_demo_seeds(base, out, seeds, **options)
    if report and distributed.is_main():
        from .report import write_report  # drawing needs matplotlib: imported only when a report is written

        write_report([out])
    return summary


def run_pipeline(base: RunConfig, out: str | Path, *, method_options: dict[str, dict[str, Any]] | None = None,
                 methods: Sequence[str] = (), bundle: DataBundle | None = None, prefer: str = PREFER, log=print) -> dict[str, Any]:
    """The pipeline once, into `out`: its summary, also written to out/summary.json (see `run_experiment`)."""
    summary = run_experiment(base, out, method_options=method_options, methods=methods, bundle=bundle, prefer=prefer, log=log).summary()
    if distributed.is_main():
        write_json(Path(out) / "summary.json", summary)
    return summary


def run_experiment(base: RunConfig, out: str | Path, *, method_options: dict[str, dict[str, Any]] | None = None,
                   methods: Sequence[str] = (), bundle: DataBundle | None = None, prefer: str = PREFER, log=print) -> Experiment:
    """Train every planned run into `out` (reusing finished ones), probe, and decide. `base` holds the
    shared sections (data, model, optim, train); `method_options` per method name (e.g. {"umt": {"weight":
    50}}) are added to what the pipeline sets itself. `methods`: baselines to run and probe after the
    paper's set. `bundle`: the data, when built already (in-memory data). `prefer`: the guide's method
    for a near-tie between UMT and UME (guide.PREFERENCES)."""
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
    probes = {key: probe_run(out / run_folder(key), bundle=bundle) for key, config in plan.items() if METHODS.get(config.method.name).probed}
    guided = [*(unimodal_key(m) for m in modalities), "naive", "ume", *(["umt"] if "umt" in plan else [])]
    return Experiment(bundle.name, modalities, bundle.fingerprint, results, probes,
                      decide_from({key: results[key] for key in guided}, probes, prefer=prefer))


def run_demo_seeds(base: RunConfig, out: str | Path, n: int, *, method_options: dict[str, dict[str, Any]] | None = None,
                   methods: Sequence[str] = (), bundle: DataBundle | None = None, prefer: str = PREFER, log=print) -> dict[str, Any]:
    """The whole demo pipeline once per seed, into OUT/seed-K/, then OUT/summary.json over all of them.
    A `bundle` given is every seed's data (only training varies)."""
    per_seed, folders = {}, {}
    for label, config, folder in each_seed(base, out, n):
        log(f"{label} (train.seed={config.train.seed}, data.options.seed={config.data.options.get('seed', 'n/a')}):")
        per_seed[label] = run_pipeline(config, folder, method_options=method_options, methods=methods, bundle=bundle, prefer=prefer, log=log)
        folders[label] = folder
    summary = aggregate_summaries(per_seed, folders)
    if distributed.is_main():
        write_json(Path(out) / "summary.json", summary)
    return summary


# ------------------------------------------------------------------------ the guide, from run folders

def same_data(runs: dict[str, str], bundle=None, *, results: dict[str, dict[str, Any]] | None = None) -> str | None:
    """The one data fingerprint (result.json's `fingerprints.data`) the finished `runs` (label -> folder)
    were trained on; RunFolderError naming the runs that differ, when they were trained on different data,
    or when `bundle` (the data the guide would evaluate them on) is not that data. None if no run records one.
    `results`: the runs' result.json by label, when already read."""
    results = results or {label: RunDir(path).result() for label, path in runs.items()}
    found = {label: results[label].get("fingerprints", {}).get("data") for label in runs}
    groups: dict[str | None, list[str]] = {}
    for label, fingerprint in found.items():
        groups.setdefault(fingerprint, []).append(f"{label} ({runs[label]})")
    if len(groups) > 1:
        listed = "; ".join(f"data {fingerprint or 'not recorded'}: {', '.join(labels)}" for fingerprint, labels in groups.items())
        raise RunFolderError(f"the runs given to the guide were trained on different data, so comparing them would mix data sets: "
                             f"{listed}. Train them all on one data set (same data.name, data.path and data.options)")
    (fingerprint,) = groups
    if bundle is not None and fingerprint is not None and bundle.fingerprint != fingerprint:
        raise RunFolderError(f"the data to evaluate on (fingerprint {bundle.fingerprint}) is not the data these runs were trained on "
                             f"(fingerprint {fingerprint}); it changed since, or another data set was given")
    return fingerprint


def demo_runs(folder: str | Path) -> dict[str, Any]:
    """The runs the guide reads in a `latefusion demo` folder: {"unimodal": {modality: path}, "naive",
    "ume", "umt" (None when the folder holds no finished UMT run)}."""
    root = Path(folder)
    prefix = run_folder(unimodal_key(""))
    unimodal = {p.name.removeprefix(prefix): str(p) for p in sorted(root.glob(f"{prefix}*")) if p.is_dir()}
    if not unimodal:
        raise RunFolderError(f"{root} holds no {prefix}<modality> runs; is it a `latefusion demo` output folder?")
    umt = root / run_folder("umt")
    return {"unimodal": unimodal, "naive": str(root / "naive"), "ume": str(root / "ume"),
            "umt": str(umt) if RunDir(umt).is_finished() else None}


def guide_folder(folder: str | Path, *, bundle=None, prefer: str = PREFER) -> dict[str, Any]:
    """The guide's verdict on the finished runs of one demo folder (see `guide_from_runs`). For a
    folder of seed-K demo folders (`latefusion demo --seeds N`): {"per_seed": {label: verdict},
    "pooled": the verdict over the seeds (seeds.pooled_guide)}."""
    if folders := seed_folders(folder):
        per_seed = {path.name: guide_folder(path, bundle=bundle, prefer=prefer) for path in folders}
        return {"per_seed": per_seed, "pooled": pooled_guide(per_seed, {path.name: path for path in folders}, prefer=prefer)}
    runs = demo_runs(folder)
    return guide_from_runs(runs["unimodal"], runs["naive"], runs["ume"], umt=runs["umt"], bundle=bundle, prefer=prefer)


def guide_from_runs(unimodal: dict[str, str], naive: str, ume: str, *, umt: str | None = None, bundle=None,
                    margin: float = MARGIN, prefer: str = PREFER, alpha: float = ALPHA) -> dict[str, Any]:
    """Decide from finished run folders: their saved validation predictions, and linear probes of the
    uni-modal and naive encoders (computed if not yet stored). `bundle`: the data, else built from the
    naive run's config. All of them must have been trained on one data set, and `bundle` must be it."""
    use_umt = umt is not None and RunDir(umt).is_finished() and Path(umt).resolve() != Path(naive).resolve()
    paths = {**{unimodal_key(m): path for m, path in unimodal.items()}, "naive": naive, "ume": ume, **({"umt": umt} if use_umt else {})}
    results = {key: RunDir(path).result() for key, path in paths.items()}
    same_data(paths, results=results)  # before anything else is read: runs of other data are named, whatever else they lack
    bundle = bundle or build_dataset(RunDir(naive).config().data)
    same_data(paths, bundle, results=results)
    runs = {key: RunResult(Path(path), results[key], RunDir(path).predictions()) for key, path in paths.items()}
    probes = {key: probe_run(paths[key], bundle=bundle) for key in [*(unimodal_key(m) for m in unimodal), "naive"]}
    return decide_from(runs, probes, margin=margin, prefer=prefer, alpha=alpha)


def decide_from(runs: dict[str, RunResult], probes: dict[str, dict[str, dict[str, Any]]], *, margin: float = MARGIN,
                prefer: str = PREFER, alpha: float = ALPHA) -> dict[str, Any]:
    """guide.decide on results in memory: `runs` by summary key ("unimodal:<m>", "naive", "ume", optionally
    "umt"), `probes` the linear probes of the uni-modal runs and of the naive run, by the same keys."""
    facts = {key: RunFacts(r.predictions["val"].correct, r.get("steps_per_epoch"), r.get("optimizer_steps")) for key, r in runs.items()}
    modalities = [key.removeprefix(unimodal_key("")) for key in runs if key.startswith(UNIMODAL)]
    probe_val = {"unimodal": {m: probes[unimodal_key(m)][m]["val_acc"] for m in modalities},
                 "naive": {m: r["val_acc"] for m, r in probes["naive"].items()}}
    return decide(facts, probe_val, runs["naive"].predictions["val"].labels, margin=margin, prefer=prefer, alpha=alpha)


