"""The guiding strategy: UME or UMT for this task, and why.

The paper's principle [V]: without paired features (features only cross-modal interaction can
learn), train each modality alone and ensemble (UME); with them, train jointly with uni-modal
teachers (UMT). Its exact operational rule is not published, so this rule is ours [design choice]:

  Naive late fusion is the cheapest model that *can* use paired features, and it does so despite
  its laziness. UME has every uni-modal feature but no paired ones. Both are evaluated on the same
  validation samples, so they are compared sample by sample (a paired test):

      naive_only = samples naive fusion gets right and UME gets wrong
      ume_only   = samples UME gets right and naive fusion gets wrong

  The exact McNemar test asks whether naive_only and ume_only differ by more than chance (under no
  difference, each discordant sample is a fair coin: a binomial test with p = 1/2, two-sided). If
  naive fusion is ahead (naive_only > ume_only) with p < alpha (0.05), joint training finds
  something the uni-modal models cannot: paired features matter, choose UMT (it keeps them and
  restores the uni-modal features laziness costs). Otherwise choose UME: it is at least as good and
  needs no joint training.

When a UMT run exists, UMT and UME are compared the same way (umt_only, ume_only, p-value); that
measured comparison is reported beside the verdict, and where it disagrees with the verdict the
verdict is flagged as not clear-cut.

The linear-probe gap (uni-modal encoder minus naive encoder, validation accuracy) is reported as
evidence of laziness: it says how much UMT or UME stand to recover, not which of the two to pick.
A gap counts as laziness when it exceeds the probe margin (two standard errors of the difference of
the two probe accuracies, at least `min_margin`). One case is flagged as not clear-cut
(`evidence.clear_cut = false`): naive fusion ties with UME while its encoders are lazy, so laziness
may be hiding paired features; the verdict stays UME and the reason suggests training UMT as well
(a UMT run, when there is one, settles it).

Only validation numbers enter the decision; the test split is never read here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .data import build_dataset
from .errors import RunFolderError
from .probe import probe_run
from .runs import RunDir
from .stats import ALPHA, MCNEMAR, noise_margin, p_text, paired_test
from .summary import run_folder, unimodal_key

TEST_NAME = f"{MCNEMAR}, validation split"


def decide(val_acc: dict[str, float], probe_val: dict[str, dict[str, float]], n_val: int, min_margin: float = 0.01,
           *, discordant: tuple[int, int] | None = None, umt_discordant: tuple[int, int] | None = None,
           alpha: float = ALPHA) -> dict[str, Any]:
    """`val_acc` has keys "unimodal:<m>", "naive" and "ume" (and "umt" with `umt_discordant`); `probe_val`
    maps "unimodal"/"naive" to {modality: acc}. `discordant` = (naive_only, ume_only): validation samples
    only naive fusion, resp. only UME, gets right; `umt_discordant` = (umt_only, ume_only) likewise.

    Without `discordant` (numbers from summaries alone, no per-sample flags), the paired test cannot be
    run and the older independent-samples noise margin decides; the evidence says which test was used."""
    naive, ume = val_acc["naive"], val_acc["ume"]
    gain = naive - ume
    gaps = {m: probe_val["unimodal"][m] - probe_val["naive"][m] for m in probe_val["unimodal"]}
    probe_margin = {m: noise_margin(probe_val["unimodal"][m], probe_val["naive"][m], n_val, min_margin) for m in gaps}
    lazy = [m for m, gap in gaps.items() if gap > probe_margin[m]]
    laziness = (
        f"Joint training left encoder(s) {', '.join(lazy)} lazy: their linear probes trail the uni-modal "
        f"encoders by {', '.join(f'{gaps[m] * 100:.1f}' for m in lazy)} points (validation)."
        if lazy else "The naive encoders probe about as well as the uni-modal ones (validation): little laziness to recover."
    )
    if discordant is not None:
        test = {**paired_test(*discordant, alpha=alpha), "test": TEST_NAME}
        test.update(naive_only=test.pop("first_only"), ume_only=test.pop("second_only"))
        naive_wins, ume_wins = test.pop("first_better"), test.pop("second_better")
        how = (f"naive fusion alone right on {test['naive_only']} samples, UME alone on {test['ume_only']}; "
               f"{TEST_NAME.replace(', validation split', '')}: {p_text(test['p_value'])}")
    else:
        margin = noise_margin(naive, ume, n_val, min_margin)
        test = {"test": "noise margin (independent samples; no per-sample data given)", "noise_margin": margin}
        naive_wins, ume_wins = gain > margin, -gain > margin
        how = f"difference {gain * 100:+.1f} points, noise margin {margin * 100:.1f}"
    if naive_wins:
        choice = "umt"
        despite = ", although its encoders learn less of each modality" if lazy else ""
        reason = (
            f"Naive late fusion beats the uni-modal ensemble on validation ({naive:.3f} vs {ume:.3f}; {how}){despite}: "
            f"the modalities hold paired features that only joint training finds. UMT keeps them and distils the "
            f"uni-modal features back in. {laziness}"
        )
    else:
        choice = "ume"
        finding = (f"The uni-modal ensemble beats naive late fusion on validation ({ume:.3f} vs {naive:.3f}; {how})" if ume_wins else
                   f"Naive late fusion does not beat the uni-modal ensemble beyond chance on validation ({naive:.3f} vs {ume:.3f}; {how})")
        reason = (
            f"{finding}: paired features add little here, so training each modality alone and ensembling (UME) is "
            f"enough and avoids joint training. {laziness}"
        )
    # A tie between a lazy naive model and UME is the one case the rule cannot settle: the laziness
    # may be hiding paired features that UMT would keep. Say so rather than sound sure.
    tie_while_lazy = not naive_wins and not ume_wins and bool(lazy)
    clear_cut = not tie_while_lazy
    evidence = {"val_acc": val_acc, "paired_gain": gain, "n_val": n_val, "paired_test": test, "probe_val": probe_val,
                "probe_gap": gaps, "probe_margin": probe_margin, "split": "val"}
    if umt_discordant is not None:
        umt = {**paired_test(*umt_discordant, alpha=alpha), "test": TEST_NAME}
        umt.update(umt_only=umt.pop("first_only"), ume_only=umt.pop("second_only"))
        umt_wins = umt.pop("first_better")
        umt.pop("second_better")
        evidence["umt_vs_ume"] = umt
        measured = (f" Measured UMT against UME on validation: {val_acc['umt']:.3f} vs {ume:.3f} (UMT alone right on "
                    f"{umt['umt_only']} samples, UME alone on {umt['ume_only']}; {p_text(umt['p_value'])})")
        if tie_while_lazy:
            clear_cut = True
            if umt_wins:
                choice = "umt"
                reason += f"{measured}: the UMT run settles the tie, it beats UME, so laziness was hiding paired features; choose UMT."
            else:
                reason += f"{measured}: the UMT run settles the tie, it does not beat UME, so UME it is."
        elif choice == "umt" and not umt_wins:
            clear_cut = False
            reason += f"{measured}: the UMT run trained here does not beat UME beyond chance, so this verdict is not clear-cut."
        elif choice == "ume" and umt_wins:
            clear_cut = False
            reason += f"{measured}: the UMT run trained here does beat UME, so this verdict is not clear-cut; UMT is worth its cost."
        else:
            reason += f"{measured}, in line with the verdict."
    elif tie_while_lazy:
        reason += (" This verdict is not clear-cut: naive fusion ties with UME while being lazy, so its laziness "
                   "may hide paired features; training UMT as well (one more run) would settle it.")
    evidence["clear_cut"] = clear_cut
    return {"choice": choice, "reason": reason, "evidence": evidence}


def discordant_counts(first, second) -> tuple[int, int]:
    """(samples only `first` gets right, samples only `second` gets right) from two per-sample correct flags."""
    if first.shape != second.shape:
        raise ValueError(f"per-sample flags of different lengths: {tuple(first.shape)} and {tuple(second.shape)}")
    return int((first & ~second).sum()), int((~first & second).sum())


def val_correct(run_dir: str) -> Any:
    """Per-sample correct flags (bool tensor, sample order) of a finished run's best model on the
    validation split, as training evaluated it (so their mean is the run's val_acc)."""
    return torch.from_numpy(RunDir(run_dir).correct("val"))


def same_data(runs: dict[str, str], bundle=None) -> str | None:
    """The one data fingerprint (result.json's `fingerprints.data`) the finished `runs` (label -> folder)
    were trained on; RunFolderError naming the runs that differ, when they were trained on different data,
    or when `bundle` (the data the guide would evaluate them on) is not that data. None if no run records one."""
    found = {label: RunDir(path).result().get("fingerprints", {}).get("data") for label, path in runs.items()}
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


def guide_folder(folder: str | Path, *, bundle=None) -> dict[str, Any]:
    """The guide's verdict on the finished runs of one demo folder (see `guide_from_runs`)."""
    runs = demo_runs(folder)
    return guide_from_runs(runs["unimodal"], runs["naive"], runs["ume"], umt=runs["umt"], bundle=bundle)


def guide_from_runs(unimodal: dict[str, str], naive: str, ume: str, *, umt: str | None = None, bundle=None,
                    min_margin: float = 0.01, alpha: float = ALPHA) -> dict[str, Any]:
    """Decide from finished run folders: the naive and UME models (and UMT's, when `umt` names a
    finished run) are run on the validation split for the paired test; the uni-modal and naive runs
    are probed if not yet probed. `bundle`: the data, else built from the naive run's config.
    All of them must have been trained on one data set, and `bundle` must be it (`same_data`)."""
    use_umt = umt is not None and RunDir(umt).is_finished() and Path(umt).resolve() != Path(naive).resolve()
    runs = {**{unimodal_key(m): path for m, path in unimodal.items()}, "naive": naive, "ume": ume, **({"umt": umt} if use_umt else {})}
    same_data(runs)
    bundle = bundle or build_dataset(RunDir(naive).config().data)
    same_data(runs, bundle)
    val_acc = {unimodal_key(m): RunDir(path).result()["val_acc"] for m, path in unimodal.items()}
    val_acc["naive"] = RunDir(naive).result()["val_acc"]
    ume_result = RunDir(ume).result()
    val_acc["ume"] = ume_result["val_acc"]
    correct = {"naive": val_correct(naive), "ume": val_correct(ume)}
    umt_discordant = None
    if use_umt:
        val_acc["umt"] = RunDir(umt).result()["val_acc"]
        umt_discordant = discordant_counts(val_correct(umt), correct["ume"])
    probe_val = {"unimodal": {m: probe_run(path, bundle=bundle)[m]["val_acc"] for m, path in unimodal.items()}}
    probe_val["naive"] = {m: r["val_acc"] for m, r in probe_run(naive, bundle=bundle).items()}
    return decide(val_acc, probe_val, ume_result["n_val"], min_margin,
                  discordant=discordant_counts(correct["naive"], correct["ume"]), umt_discordant=umt_discordant, alpha=alpha)
