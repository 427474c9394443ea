"""The guide: its statistics against their definitions, its decision on constructed per-sample
flags (UMT vs UME model selection; naive vs UME without a UMT run), each warning that makes a
verdict inconclusive, the verdict over seeds, and the flags finished runs save."""

from fractions import Fraction
from itertools import product
from math import comb

import numpy as np
import pytest
import torch

from latefusion.guide import MARGIN, RunFacts, decide, pooled_verdict
from latefusion.stats import binomial_tail, mcnemar_exact, sign_flip_test, smallest_detectable_gap

N_CLASSES = 10


def reference_p(b: int, c: int) -> Fraction:
    """Two-sided exact McNemar by its definition: twice the binomial(b + c, 1/2) tail at min(b, c), at most 1."""
    n = b + c
    return min(Fraction(1), 2 * sum(Fraction(comb(n, k), 2**n) for k in range(min(b, c) + 1))) if n else Fraction(1)


@pytest.mark.parametrize("b, c, p", [
    (0, 0, 1.0),            # no discordant sample: no evidence either way
    (10, 0, 2 / 1024),      # ten coin flips all one way
    (0, 10, 2 / 1024),      # symmetric
    (5, 1, 14 / 64),        # 2 * (1 + 6) / 2**6 = 0.21875
    (12, 3, 1152 / 32768),  # 2 * (1 + 15 + 105 + 455) / 2**15 = 0.03515625: below 0.05
    (3, 3, 1.0),            # an even split: the doubled tail exceeds 1
    (1, 0, 1.0),
])
def test_mcnemar_exact_p_values(b, c, p):
    assert mcnemar_exact(b, c) == pytest.approx(p, rel=1e-12)


def test_mcnemar_exact_on_large_counts_agrees_with_exact_fractions():
    for b, c in ((600, 520), (2000, 1950), (37, 80)):
        assert mcnemar_exact(b, c) == pytest.approx(float(reference_p(b, c)), rel=1e-9)
    assert mcnemar_exact(600, 520) < 0.05 < mcnemar_exact(2000, 1950)


@pytest.mark.parametrize("k, n, p", [(3, 10, 0.1), (0, 5, 0.3), (20, 120, 0.1), (7, 7, 0.5), (8, 7, 0.5)])
def test_binomial_tail_is_the_upper_tail_of_the_binomial(k, n, p):
    expected = sum(comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1))
    assert binomial_tail(k, n, p) == pytest.approx(expected, rel=1e-9, abs=1e-15)


def test_sign_flip_test_enumerates_every_sign_pattern_for_few_samples():
    differences = [1.0, 1.0, 1.0, -1.0, 0.5, 0.0]  # the zero carries no sign
    values = [d for d in differences if d]
    sums = [abs(sum(s * v for s, v in zip(signs, values))) for signs in product((1, -1), repeat=len(values))]
    expected = sum(total >= abs(sum(values)) - 1e-12 for total in sums) / len(sums)
    assert sign_flip_test(differences) == pytest.approx(expected)
    assert sign_flip_test([0.0, 0.0]) == 1.0


def test_sign_flip_test_on_many_samples_matches_mcnemar_for_zero_one_differences():
    # With +-1 differences the sign-flip statistic is the McNemar count: the two tests agree.
    differences = [1.0] * 60 + [-1.0] * 35 + [0.0] * 500
    assert sign_flip_test(differences, draws=40000) == pytest.approx(mcnemar_exact(60, 35), abs=0.006)
    assert sign_flip_test(differences, seed=1) == sign_flip_test(differences, seed=1)  # seeded: the same every run


def test_smallest_detectable_gap_is_the_edge_of_significance():
    n, discordant = 1000, 100
    gap = smallest_detectable_gap(n, discordant)
    b_minus_c = round(gap * n)
    assert mcnemar_exact((discordant + b_minus_c) // 2, (discordant - b_minus_c) // 2) < 0.05
    assert mcnemar_exact((discordant + b_minus_c - 2) // 2, (discordant - b_minus_c + 2) // 2) >= 0.05
    assert smallest_detectable_gap(40, 4) > smallest_detectable_gap(4000, 400)


# ------------------------------------------------------------------------------- the decision

def pair(n: int, both: int, first_only: int, second_only: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample flags of two models: both right on `both` samples, each alone right on its count."""
    first, second = np.zeros(n, bool), np.zeros(n, bool)
    first[:both + first_only] = True
    second[:both] = True
    second[both + first_only:both + first_only + second_only] = True
    return first, second


def flags(n: int, right: int, offset: int = 0) -> np.ndarray:
    out = np.zeros(n, bool)
    out[offset:offset + right] = True
    return out


def facts(correct: np.ndarray, steps_per_epoch: int | None = 50, epochs: int = 30) -> RunFacts:
    return RunFacts(correct, steps_per_epoch, steps_per_epoch * epochs if steps_per_epoch else None)


LABELS = np.arange(1000) % N_CLASSES
HEALTHY_PROBES = {"unimodal": {"a": 0.62, "b": 0.60}, "naive": {"a": 0.60, "b": 0.59}}
LAZY_PROBES = {"unimodal": {"a": 0.62, "b": 0.60}, "naive": {"a": 0.45, "b": 0.59}}


def runs(naive_ume: tuple[int, int, int] = (700, 20, 20), umt_ume: tuple[int, int, int] | None = None,
         unimodal: tuple[int, int] = (600, 600), steps: int | None = 50) -> dict[str, RunFacts]:
    """Healthy runs on 1,000 validation samples of 10 balanced classes, with the given paired counts:
    (both right, naive alone, UME alone) and, for a UMT run, (both right, UMT alone, UME alone)."""
    naive, ume = pair(1000, *naive_ume)
    found = {"unimodal:a": facts(flags(1000, unimodal[0]), steps), "unimodal:b": facts(flags(1000, unimodal[1], 20), steps),
             "naive": facts(naive, steps), "ume": facts(ume, None)}
    if umt_ume is not None:
        umt, ume_again = pair(1000, *umt_ume)
        assert ume_again.sum() == ume.sum(), "the UME run's accuracy must agree between the two pairs"
        found["umt"], found["ume"] = facts(umt, steps), facts(ume_again, None)
    return found


def test_a_umt_run_that_beats_ume_on_validation_is_chosen_even_when_naive_fusion_ties_ume():
    # The audit's case: naive fusion level with UME (no paired features visible), UMT right alone on
    # 31 samples and UME on 13; the old rule said UME; model selection says UMT.
    verdict = decide(runs((700, 20, 20), umt_ume=(707, 31, 13)), HEALTHY_PROBES, LABELS)
    assert verdict["verdict"] == verdict["choice"] == "umt" and verdict["warnings"] == []
    comparison = verdict["evidence"]["umt_vs_ume"]
    assert (comparison["first_only"], comparison["second_only"]) == (31, 13)
    assert comparison["p_value"] == pytest.approx(float(reference_p(31, 13)))
    assert verdict["headline"].startswith("UMT: it beats UME by 1.8 points")
    assert "level within chance" in verdict["reason"]


@pytest.mark.parametrize("umt_ume, prefer, choice", [
    ((700, 24, 20), "umt", "umt"),  # +0.4 points: within the half-point margin, where the preferred method wins
    ((700, 24, 20), "ume", "ume"),
    ((700, 16, 20), "umt", "umt"),  # -0.4 points: within it too
    ((700, 16, 20), "ume", "ume"),
    ((700, 26, 20), "ume", "umt"),  # +0.6 points: above it, whatever the preference (within chance: said so)
    ((695, 15, 25), "umt", "ume"),  # -1.0 point: UME ahead beyond the margin
])
def test_with_a_umt_run_the_one_ahead_beyond_the_margin_wins_else_the_preferred_one(umt_ume, prefer, choice):
    verdict = decide(runs((700, 20, 20), umt_ume=umt_ume), HEALTHY_PROBES, LABELS, prefer=prefer)
    assert verdict["choice"] == verdict["verdict"] == choice
    assert verdict["evidence"]["margin"] == MARGIN and verdict["evidence"]["prefer"] == prefer
    gap = verdict["evidence"]["umt_vs_ume"]["gap"]
    if abs(gap) > MARGIN:
        assert "(within chance: the better estimate" in verdict["headline"] and verdict["headline"].startswith(f"{choice.upper()}: it beats")
    else:
        assert f"the guide prefers {prefer.upper()}" in verdict["headline"]


def test_the_default_preference_within_the_margin_is_umt():
    assert decide(runs((700, 20, 20), umt_ume=(700, 20, 20)), HEALTHY_PROBES, LABELS)["choice"] == "umt"
    with pytest.raises(ValueError, match="prefer"):
        decide(runs((700, 20, 20), umt_ume=(700, 20, 20)), HEALTHY_PROBES, LABELS, prefer="naive")


@pytest.mark.parametrize("naive_only, ume_only, probes, verdict_expected", [
    (40, 15, HEALTHY_PROBES, "umt"),        # naive fusion ahead beyond chance: paired features
    (22, 18, HEALTHY_PROBES, "ume"),        # level, encoders not lazy
    (15, 40, HEALTHY_PROBES, "ume"),        # UME ahead
    (22, 18, LAZY_PROBES, "inconclusive"),  # level while lazy: laziness may hide paired features
])
def test_without_a_umt_run_naive_fusion_stands_in_for_joint_training(naive_only, ume_only, probes, verdict_expected):
    verdict = decide(runs((700, naive_only, ume_only)), probes, LABELS)
    assert verdict["verdict"] == verdict_expected
    assert "umt_vs_ume" not in verdict["evidence"]
    if verdict_expected == "inconclusive":
        assert verdict["choice"] == "ume" and [w["kind"] for w in verdict["warnings"]] == ["laziness-may-hide-paired-features"]
        assert "train UMT" in verdict["headline"]


def test_healthy_runs_raise_no_warning():
    verdict = decide(runs((700, 20, 20), umt_ume=(710, 30, 10)), HEALTHY_PROBES, LABELS)
    assert verdict["warnings"] == [] and verdict["verdict"] == "umt"


def kinds(verdict: dict) -> list[str]:
    return [w["kind"] for w in verdict["warnings"]]


def test_every_candidate_near_chance_is_inconclusive():
    # 12 % on ten balanced classes for naive fusion, UME and UMT: nothing was learnt to compare.
    verdict = decide(runs((110, 10, 10), umt_ume=(110, 30, 10), unimodal=(115, 118)),
                     {"unimodal": {"a": 0.12, "b": 0.12}, "naive": {"a": 0.12, "b": 0.12}}, LABELS)
    assert verdict["verdict"] == "inconclusive" and verdict["choice"] == "umt" and kinds(verdict) == ["near-chance"]
    assert "near chance" in verdict["headline"] and "train.epochs" in verdict["headline"]


def test_a_model_far_below_the_probe_of_its_own_encoder_is_inconclusive():
    # The image-only model at 16.7 % while a linear probe of its own encoder reaches 89.6 %.
    probes = {"unimodal": {"a": 0.896, "b": 0.60}, "naive": {"a": 0.85, "b": 0.59}}
    verdict = decide(runs((800, 20, 20), umt_ume=(810, 30, 10), unimodal=(167, 600)), probes, LABELS)
    assert verdict["verdict"] == "inconclusive" and kinds(verdict) == ["below-probe"]
    assert "the a-only model" in verdict["headline"] and "0.896" in verdict["headline"]


def test_too_few_optimiser_steps_is_inconclusive():
    verdict = decide(runs((700, 20, 20), umt_ume=(710, 30, 10), steps=4), HEALTHY_PROBES, LABELS)
    assert verdict["verdict"] == "inconclusive" and kinds(verdict) == ["too-few-steps"]
    assert "4 optimiser steps per epoch" in verdict["headline"] and "data.batch_size" in verdict["headline"]


def test_a_validation_split_too_small_for_the_gap_is_inconclusive_and_says_what_it_could_detect():
    labels = np.arange(60) % N_CLASSES
    naive, ume = pair(60, 40, 2, 2)
    umt, _ = pair(60, 40, 3, 2)
    small = {"unimodal:a": facts(flags(60, 36)), "unimodal:b": facts(flags(60, 36)), "naive": facts(naive),
             "ume": facts(ume, None), "umt": facts(umt)}
    verdict = decide(small, HEALTHY_PROBES, labels)
    assert verdict["verdict"] == "inconclusive" and kinds(verdict) == ["small-validation"]
    detectable = verdict["evidence"]["umt_vs_ume"]["smallest_detectable_gap"]
    assert detectable > 0.05 and f"{detectable * 100:.1f} points" in verdict["headline"]
    # The same gap on 1,000 samples is simply a tie: no warning.
    assert decide(runs((700, 20, 20), umt_ume=(700, 21, 20)), HEALTHY_PROBES, LABELS)["warnings"] == []


# ------------------------------------------------------------------------------ over seeds

def seed_flags(first_only: int, second_only: int, n: int = 1000) -> dict[str, np.ndarray]:
    umt, ume = pair(n, 600, first_only, second_only)
    return {"umt": umt, "ume": ume, "naive": ume.copy()}


def test_one_seed_has_no_pooled_verdict():
    assert pooled_verdict({"seed-0": {"warnings": []}}, {"seed-0": seed_flags(30, 10)}, same_samples=True) is None


def test_seeds_with_their_own_samples_pool_their_counts():
    verdicts = {f"seed-{k}": {"warnings": []} for k in range(3)}
    pooled = pooled_verdict(verdicts, {label: seed_flags(12, 4) for label in verdicts}, same_samples=False)
    assert (pooled["first_only"], pooled["ume_only"]) == (36, 12)
    assert pooled["p_value"] == pytest.approx(float(reference_p(36, 12)))
    assert pooled["verdict"] == "umt" and "McNemar" in pooled["test"]


def test_seeds_that_share_their_samples_are_tested_over_samples_not_over_summed_counts():
    # Three seeds that make the same 6-vs-2 split on the same samples are one split seen three
    # times: summing the counts (18 vs 6, p = 0.02) would count each sample thrice. Averaged per
    # sample and sign-flipped over samples, the evidence is that of one seed (p = 0.29).
    verdicts = {f"seed-{k}": {"warnings": []} for k in range(3)}
    pooled = pooled_verdict(verdicts, {label: seed_flags(6, 2) for label in verdicts}, same_samples=True)
    assert pooled["p_value"] == pytest.approx(float(reference_p(6, 2)))
    assert "sign-flip" in pooled["test"] and pooled["same_samples"]
    assert pooled["gap"] == pytest.approx(0.004) and pooled["choice"] == "umt"  # 0.4 points: within the margin: the preferred one
    assert pooled_verdict(verdicts, {label: seed_flags(6, 2) for label in verdicts}, same_samples=True, prefer="ume")["choice"] == "ume"


def test_a_training_warning_of_any_seed_makes_the_pooled_verdict_inconclusive_but_a_small_split_does_not():
    small = {"kind": "small-validation", "message": "small", "next_step": "more"}
    steps = {"kind": "too-few-steps", "message": "few steps", "next_step": "lower data.batch_size"}
    correct = {f"seed-{k}": seed_flags(30, 10) for k in range(2)}
    pooled = pooled_verdict({"seed-0": {"warnings": [small]}, "seed-1": {"warnings": [small]}}, correct, same_samples=True)
    assert pooled["verdict"] == "umt" and pooled["warnings"] == []
    pooled = pooled_verdict({"seed-0": {"warnings": []}, "seed-1": {"warnings": [steps]}}, correct, same_samples=True)
    assert pooled["verdict"] == "inconclusive" and pooled["choice"] == "umt" and "(in seed-1)" in pooled["headline"]


# ------------------------------------------------------------------------ from run folders

def test_saved_per_sample_predictions_are_the_reloaded_models_and_feed_the_guide(tmp_path, tiny_config):
    from latefusion.data import build_dataset
    from latefusion.engine import evaluate
    from latefusion.methods import build_method, load_model
    from latefusion.pipeline import guide_from_runs
    from latefusion.runs import RunDir
    from latefusion.train import train

    config = tiny_config("train.epochs=1")
    bundle = build_dataset(config.data)
    folders = {}
    for name, options in (("unimodal-a", {"modality": "a"}), ("unimodal-b", {"modality": "b"}), ("naive", {})):
        method = "unimodal" if name.startswith("unimodal") else name
        folders[name] = tmp_path / name
        train(config.model_copy(update={"method": config.method.model_copy(update={"name": method, "options": options})}, deep=True),
              folders[name], bundle=bundle)
    members = {"members": {"a": str(folders["unimodal-a"]), "b": str(folders["unimodal-b"])}}
    folders["ume"] = tmp_path / "ume"
    train(config.model_copy(update={"method": config.method.model_copy(update={"name": "ume", "options": members})}, deep=True),
          folders["ume"], bundle=bundle)
    saved = {}
    for name in ("naive", "ume"):
        run = RunDir(folders[name])
        saved[name] = run.predictions()["val"].correct
        result = run.result()
        assert saved[name].dtype == bool and saved[name].size == result["n_val"]
        assert saved[name].mean() == pytest.approx(result["val_acc"])
        fresh = evaluate(build_method(run.config(), run.spec()), load_model(run, torch.device("cpu")), bundle.splits["val"],
                         run.config(), torch.device("cpu"), bundle.num_classes, per_sample=True)
        assert np.array_equal(saved[name], (fresh["predicted"] == fresh["labels"]).numpy())
        assert run.predictions()["test"].correct.mean() == pytest.approx(result["test_acc"])
    assert RunDir(folders["naive"]).result()["steps_per_epoch"] == 300 // config.data.batch_size + (300 % config.data.batch_size > 0)
    verdict = guide_from_runs({"a": str(folders["unimodal-a"]), "b": str(folders["unimodal-b"])}, str(folders["naive"]),
                              str(folders["ume"]), bundle=bundle)
    test = verdict["evidence"]["naive_vs_ume"]
    assert (test["first_only"], test["second_only"]) == (int((saved["naive"] & ~saved["ume"]).sum()), int((~saved["naive"] & saved["ume"]).sum()))
    # One epoch of a few steps: the guide says it cannot trust these runs.
    assert verdict["verdict"] == "inconclusive" and "too-few-steps" in kinds(verdict)


def test_the_verdict_over_seeds_keeps_the_preference_the_seeds_were_judged_with(tmp_path):
    from latefusion.runs import RunDir
    from latefusion.seeds import pooled_guide
    from latefusion.storage import write_arrays, write_json

    folders = {}
    for label in ("seed-0", "seed-1"):
        folders[label] = tmp_path / label
        for key, correct in seed_flags(6, 2).items():  # UMT ahead by 0.4 points: a near-tie
            run = RunDir(folders[label] / key)
            write_arrays(run.predictions_file, {"val_predicted": (~correct).astype(np.int32), "val_labels": np.zeros(correct.size, np.int32),
                                                "test_predicted": np.zeros(1, np.int32), "test_labels": np.zeros(1, np.int32)})
            write_json(run.result_file, {"fingerprints": {"data": "d"}})
    for prefer in ("ume", "umt"):
        verdicts = {label: {"warnings": [], "evidence": {"prefer": prefer}} for label in folders}
        assert pooled_guide(verdicts, folders)["choice"] == prefer
    assert pooled_guide({label: {"warnings": [], "evidence": {"prefer": "ume"}} for label in folders}, folders, prefer="umt")["choice"] == "umt"
