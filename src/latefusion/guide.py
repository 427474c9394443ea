"""The guiding strategy: UME or UMT for this task, and why, or why the runs cannot tell yet.

The paper's principle [V]: without paired features (features only cross-modal interaction can
learn), train each modality alone and ensemble (UME); with them, train jointly with uni-modal
teachers (UMT). Its operational rule is not published; this one is ours [design choice], and
bench/guide_accuracy.py measures it (docs/methods.md, "How often the guide is right").

1. Can these runs support a verdict at all? Each check that fails is a warning with its reason and
   the concrete next step, and the verdict is then "inconclusive" (with the method it leans to):
   - every candidate model (naive fusion, UME, UMT) near chance: nothing was learnt to compare;
   - a trained model far below the linear probe of its own encoder(s) (PROBE_SHORTFALL): the
     encoder holds what the model did not learn, so the model, not the data, is what is measured;
   - too few optimiser steps per epoch or in all (MIN_STEPS_PER_EPOCH, MIN_OPTIMIZER_STEPS);
   - a validation split so small that the smallest gap it could show (exact McNemar test) is larger
     than MAX_UNDETECTABLE_GAP while the gap in question is within it.
2. With a UMT run (every `latefusion demo` trains one), the verdict is model selection on
   validation: the one of UMT and UME that is ahead by more than MARGIN (half a point); within it,
   the preferred one (PREFER: UMT, which was at least as good as UME on test in every case and seed
   of the guide's benchmark; `prefer="ume"` counts UME's cheaper training first). The run that wins
   is not overruled by a reading of why.
3. Without one, naive late fusion stands in for joint training: it can use paired features and
   UME cannot, so naive fusion beating UME beyond chance (exact McNemar test, alpha 0.05) says
   paired features matter: UMT. A tie while naive fusion's encoders are lazy is inconclusive
   (laziness may hide paired features): train UMT and ask again.
The "why" beside the verdict: the naive-vs-UME paired test (do joint models find something UME
cannot) and the linear-probe gap (uni-modal encoder minus naive encoder, validation: laziness).

Only validation numbers enter; the test split is never read here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .stats import ALPHA, MCNEMAR, SIGN_FLIP, binomial_tail, mcnemar_exact, noise_margin, p_text, paired_test, sign_flip_test, smallest_detectable_gap

MARGIN = 0.005
# Which method wins a near-tie (within MARGIN), and why. UMT by default: in every case and seed of the
# guide's benchmark it was at least as good as UME on test (docs/methods.md); UME for those who count
# its cheaper training (no joint run) first.
PREFERENCES = {"umt": "in every case of the guide's benchmark UMT was at least as good as UME on test (docs/methods.md); "
                      "`--prefer ume` takes the cheaper UME in such near-ties",
               "ume": "it needs no joint training, so it is the cheaper of the two"}
PREFER = "umt"
PROBE_SHORTFALL = 0.10
NEAR_CHANCE_LIFT = 0.05
MIN_STEPS_PER_EPOCH = 10
MIN_OPTIMIZER_STEPS = 300
MAX_UNDETECTABLE_GAP = 0.05
TEST_NAME = f"{MCNEMAR}, validation split"
LABELS = {"naive": "naive fusion", "ume": "UME", "umt": "UMT"}


@dataclass(frozen=True)
class RunFacts:
    """What the guide reads of one finished run: its per-sample validation correctness and, for a
    run that trained, how many optimiser steps it had (None when it did not train or did not say)."""
    correct: np.ndarray
    steps_per_epoch: int | None = None
    optimizer_steps: int | None = None

    @property
    def acc(self) -> float:
        return float(self.correct.mean()) if self.correct.size else 0.0


def label_of(key: str) -> str:
    return f"the {key.split(':', 1)[1]}-only model" if ":" in key else LABELS.get(key, key)


def chance_rate(labels: np.ndarray) -> float:
    """The accuracy of always predicting the most frequent validation class."""
    return float(np.bincount(labels).max() / labels.size) if labels.size else 0.0


def near_chance(facts: RunFacts, chance: float) -> bool:
    """Not above chance by NEAR_CHANCE_LIFT, or not above it beyond luck (one-sided binomial test)."""
    n, hits = facts.correct.size, int(facts.correct.sum())
    return facts.acc < chance + NEAR_CHANCE_LIFT or binomial_tail(hits, n, chance) >= ALPHA


def warning(kind: str, message: str, next_step: str) -> dict[str, str]:
    return {"kind": kind, "message": message, "next_step": next_step}


def warning_text(item: dict[str, str]) -> str:
    """A warning as a sentence: what was found, then the next step."""
    return f"{item['message']}. Next: {item['next_step']}."


def inconclusive_headline(choice: str, first: dict[str, str]) -> str:
    """An inconclusive verdict's headline: the method it leans to, the first warning and its next step."""
    return f"Inconclusive (leaning {choice.upper()}): {warning_text(first)}"


def input_warnings(runs: dict[str, RunFacts], probe_val: dict[str, dict[str, float]], chance: float,
                   umt_vs_ume: dict[str, Any] | None) -> list[dict[str, str]]:
    """Every reason these runs cannot support a verdict (section 1 of the module docstring)."""
    found = []
    candidates = [key for key in ("naive", "ume", "umt") if key in runs]
    if all(near_chance(runs[key], chance) for key in candidates):
        found.append(warning(
            "near-chance", f"every candidate model is near chance on validation ({', '.join(f'{label_of(k)} {runs[k].acc:.3f}' for k in candidates)}; "
            f"always guessing the most frequent class scores {chance:.3f}): nothing was learnt that could be compared",
            "train longer (train.epochs), with more steps per epoch (a smaller data.batch_size), or check the labels with `latefusion check-data`"))
    n = next(iter(runs.values())).correct.size
    for key, facts in runs.items():
        encoders = probe_val.get("naive" if key == "naive" else "unimodal", {})
        modalities = [key.split(":", 1)[1]] if ":" in key else list(encoders) if key == "naive" else []
        probes = {m: encoders[m] for m in modalities if m in encoders}
        if not probes:
            continue
        best = max(probes, key=probes.get)
        shortfall = probes[best] - facts.acc
        if shortfall > max(PROBE_SHORTFALL, noise_margin(probes[best], facts.acc, n)):
            found.append(warning(
                "below-probe", f"{label_of(key)} scores {facts.acc:.3f} on validation, {shortfall * 100:.1f} points below a linear probe "
                f"of its own {best} encoder ({probes[best]:.3f}): the model did not learn what its features hold, so comparing it "
                "measures its training, not the data",
                "give it more optimiser steps (a smaller data.batch_size or more train.epochs) or a lower optim.lr, then rerun"))
    trained = {key: facts for key, facts in runs.items() if facts.steps_per_epoch is not None}
    if trained:
        fewest_per_epoch = min(trained.values(), key=lambda f: f.steps_per_epoch)
        fewest_total = min(trained.values(), key=lambda f: f.optimizer_steps or 0)
        if fewest_per_epoch.steps_per_epoch < MIN_STEPS_PER_EPOCH or (fewest_total.optimizer_steps or 0) < MIN_OPTIMIZER_STEPS:
            found.append(warning(
                "too-few-steps", f"the models had as few as {fewest_per_epoch.steps_per_epoch} optimiser steps per epoch and "
                f"{fewest_total.optimizer_steps} in all (at least {MIN_STEPS_PER_EPOCH} per epoch and {MIN_OPTIMIZER_STEPS} in all "
                "are needed to trust a comparison)",
                "lower data.batch_size so that an epoch has at least 10 steps, or raise train.epochs"))
    if umt_vs_ume is not None:
        detectable = umt_vs_ume["smallest_detectable_gap"]
        gap = abs(umt_vs_ume["gap"])
        if detectable > MAX_UNDETECTABLE_GAP and gap < detectable:
            found.append(warning(
                "small-validation", f"the validation split has {n} samples: the smallest gap between UMT and UME it could tell from "
                f"chance is {detectable * 100:.1f} points, and they differ by {gap * 100:.1f}",
                "give the validation split more samples (e.g. a larger data.options.val_fraction), or pool several seeds "
                "(`latefusion demo --seeds 3`)"))
    return found


def paired_counts(first: np.ndarray, second: np.ndarray) -> tuple[int, int]:
    """(samples only `first` gets right, samples only `second` gets right) from per-sample correct flags."""
    if first.shape != second.shape:
        raise ValueError(f"per-sample flags of different lengths: {first.shape} and {second.shape}")
    return int((first & ~second).sum()), int((~first & second).sum())


def compare(first: RunFacts, second: RunFacts, alpha: float) -> dict[str, Any]:
    """The exact McNemar test of two runs on the validation samples, with the gap and what the split could detect."""
    first_only, second_only = paired_counts(first.correct, second.correct)
    test = {**paired_test(first_only, second_only, alpha), "test": TEST_NAME}
    n = first.correct.size
    return {**test, "gap": first.acc - second.acc,
            "smallest_detectable_gap": smallest_detectable_gap(n, first_only + second_only, alpha)}


def select(gap: float, margin: float, prefer: str, measured: str, significant: bool) -> tuple[str, str]:
    """UMT or UME from UMT's validation gap over UME: the one ahead by more than `margin`, else the
    preferred one; with the headline that says so. `measured` is the comparison in words."""
    if prefer not in PREFERENCES:
        raise ValueError(f"prefer must be one of {PREFERENCES}, got {prefer!r}")
    chance = "" if significant else " (within chance: the better estimate, not a sure one)"
    if gap > margin:
        return "umt", f"UMT: it beats UME by {gap * 100:.1f} points ({measured}){chance}."
    if -gap > margin:
        return "ume", f"UME: it beats UMT by {-gap * 100:.1f} points ({measured}){chance}."
    why = PREFERENCES[prefer]
    other = "UME" if prefer == "umt" else "UMT"
    return prefer, (f"{prefer.upper()}: {other} is within the {margin * 100:.1f}-point margin ({measured}), and within it the guide "
                    f"prefers {prefer.upper()}: {why}.")


def decide(runs: dict[str, RunFacts], probe_val: dict[str, dict[str, float]], labels: np.ndarray, *,
           margin: float = MARGIN, prefer: str = PREFER, alpha: float = ALPHA) -> dict[str, Any]:
    """The verdict from the finished runs' facts. `runs` has keys "unimodal:<m>", "naive", "ume" and,
    when a UMT run exists, "umt"; `probe_val` maps "unimodal"/"naive" to {modality: validation
    accuracy of a linear probe of that encoder}; `labels` are the validation labels (for chance)."""
    n = labels.size
    if any(f.correct.size != n for f in runs.values()):
        raise ValueError(f"per-sample flags of different lengths: {({k: f.correct.size for k, f in runs.items()})} for {n} labels")
    naive, ume, umt = runs["naive"], runs["ume"], runs.get("umt")
    naive_vs_ume = compare(naive, ume, alpha)
    umt_vs_ume = compare(umt, ume, alpha) if umt is not None else None
    gaps = {m: probe_val["unimodal"][m] - probe_val["naive"][m] for m in probe_val["unimodal"]}
    probe_margin = {m: noise_margin(probe_val["unimodal"][m], probe_val["naive"][m], n) for m in gaps}
    lazy = [m for m, gap in gaps.items() if gap > probe_margin[m]]
    laziness = (f"Joint training left encoder(s) {', '.join(lazy)} lazy: their linear probes trail the uni-modal encoders by "
                f"{', '.join(f'{gaps[m] * 100:.1f}' for m in lazy)} points." if lazy else
                "The naive encoders probe about as well as the uni-modal ones: little laziness to recover.")
    naive_says = (f"naive fusion {naive.acc:.3f} vs UME {ume.acc:.3f}, alone right on {naive_vs_ume['first_only']} vs "
                  f"{naive_vs_ume['second_only']} samples, {p_text(naive_vs_ume['p_value'])}")
    if naive_vs_ume["first_better"]:
        paired = (f"Joint training finds what the uni-modal ensemble misses ({naive_says}): paired features, or a better way "
                  "to combine the modalities than averaging their predictions.")
    elif naive_vs_ume["second_better"]:
        paired = f"Even lazy joint training loses to UME ({naive_says}): paired features add little here."
    else:
        paired = f"Naive fusion and UME are level within chance ({naive_says})."

    if umt_vs_ume is not None:
        gap = umt_vs_ume["gap"]
        measured = (f"UMT {umt.acc:.3f} vs UME {ume.acc:.3f} on validation, alone right on {umt_vs_ume['first_only']} vs "
                    f"{umt_vs_ume['second_only']} samples, {p_text(umt_vs_ume['p_value'])}")
        choice, headline = select(gap, margin, prefer, measured, significant=umt_vs_ume["p_value"] < alpha)
        rule = f"model selection on validation between the trained UMT and UME runs ({prefer.upper()} within the margin)"
    elif naive_vs_ume["first_better"]:
        choice, rule = "umt", "naive fusion vs UME (no UMT run)"
        headline = f"UMT: naive fusion beats UME on validation beyond chance ({naive_says}), so joint training is needed."
    else:
        choice, rule = "ume", "naive fusion vs UME (no UMT run)"
        headline = f"UME: naive fusion does not beat it beyond chance ({naive_says}), so training each modality alone is enough."

    chance = chance_rate(labels)
    warnings = input_warnings(runs, probe_val, chance, umt_vs_ume)
    if umt is None and lazy and not naive_vs_ume["first_better"] and not naive_vs_ume["second_better"]:
        warnings.append(warning(
            "laziness-may-hide-paired-features", "naive fusion ties with UME while its encoders are lazy, so laziness may hide "
            "paired features that UMT would keep", "train UMT as well (`latefusion demo` does) and ask the guide again"))
    verdict = "inconclusive" if warnings else choice
    if warnings:
        headline = (inconclusive_headline(choice, warnings[0])
                    + (f" ({len(warnings) - 1} more warning{'s' if len(warnings) > 2 else ''} below.)" if len(warnings) > 1 else ""))
    reason = " ".join([headline, paired, laziness])
    evidence = {"rule": rule, "margin": margin, "prefer": prefer, "val_acc": {key: facts.acc for key, facts in runs.items()}, "n_val": n,
                "chance": chance, "naive_vs_ume": naive_vs_ume, "probe_val": probe_val, "probe_gap": gaps,
                "probe_margin": probe_margin, "split": "val", **({"umt_vs_ume": umt_vs_ume} if umt_vs_ume else {})}
    return {"choice": choice, "verdict": verdict, "headline": headline, "reason": reason, "warnings": warnings, "evidence": evidence}


def pooled_verdict(per_seed: dict[str, dict[str, Any]], correct: dict[str, dict[str, np.ndarray]], *, same_samples: bool,
                   margin: float = MARGIN, prefer: str = PREFER, alpha: float = ALPHA) -> dict[str, Any] | None:
    """The verdict over several seeds. `per_seed`: each seed's one-seed verdict by label; `correct`:
    each seed's per-sample validation flags by run key ("ume", "umt" or "naive").

    Seeds that share their validation samples (only training varies) are not independent draws of
    those samples, so their counts are not added up: each sample's correctness is averaged over the
    seeds, and a paired sign-flip test over samples asks whether the per-sample difference is centred
    on zero. Seeds with samples of their own (each draws its data) are pooled as one larger split.
    The choice follows the one-seed rule on the pooled numbers; a warning of any seed other than a
    small validation split (which pooling answers) stands, naming its seeds. None for one seed."""
    if len(per_seed) < 2:
        return None
    first = "umt" if all("umt" in flags for flags in correct.values()) else "naive"
    # (seeds, samples) of correct flags for each of the two compared runs
    flags, ume_flags = (np.stack([by_key[key] for by_key in correct.values()]) for key in (first, "ume"))
    if same_samples:
        difference = (flags.astype(np.float64) - ume_flags).mean(axis=0)
        p, gap = sign_flip_test(difference), float(difference.mean())
        test = {"test": f"{SIGN_FLIP}, per-sample correctness averaged over {len(per_seed)} seeds that share their validation samples"}
    else:
        first_only, ume_only = paired_counts(flags.ravel(), ume_flags.ravel())
        p, gap = mcnemar_exact(first_only, ume_only), (first_only - ume_only) / flags.size
        test = {"test": f"{MCNEMAR} on the discordant counts of {len(per_seed)} seeds with their own validation samples",
                "first_only": first_only, "ume_only": ume_only}
    significant = p < alpha
    name = "UMT" if first == "umt" else "naive fusion"
    measured = f"{name} vs UME on validation over {len(per_seed)} seeds: {gap * 100:+.1f} points, {p_text(p)}"
    if first == "umt":
        choice, headline = select(gap, margin, prefer, measured, significant)
    else:
        choice = "umt" if gap > 0 and significant else "ume"
        headline = (f"UMT: naive fusion beats UME beyond chance ({measured}), so joint training is needed." if choice == "umt" else
                    f"UME: naive fusion does not beat it beyond chance ({measured}).")
    seeds_by_kind: dict[str, list[str]] = {}
    first_warning: dict[str, dict[str, str]] = {}
    for label, verdict in per_seed.items():
        for item in verdict.get("warnings", []):
            if item["kind"] != "small-validation":
                seeds_by_kind.setdefault(item["kind"], []).append(label)
                first_warning.setdefault(item["kind"], item)
    warnings = [{**first_warning[kind], "message": f"{first_warning[kind]['message']} (in {', '.join(labels)})"}
                for kind, labels in seeds_by_kind.items()]
    verdict = "inconclusive" if warnings else choice
    if warnings:
        headline = inconclusive_headline(choice, warnings[0])
    return {"choice": choice, "verdict": verdict, "headline": headline, "warnings": warnings, "compared": f"{first} vs ume",
            "gap": gap, "p_value": p, "significant": significant, "same_samples": same_samples, "seeds": list(per_seed), **test}


def verdict_text(verdict: dict[str, Any]) -> str:
    """The verdict as the console and the report open with it: the choice (or "INCONCLUSIVE"), the headline, the warnings."""
    lines = [f"Verdict: {verdict['verdict'].upper()}", verdict["headline"]]
    lines += [f"warning ({w['kind']}): {warning_text(w)}" for w in verdict.get("warnings", [])[1:]]
    return "\n".join(lines)

