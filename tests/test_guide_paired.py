"""The guide's paired test: exact McNemar p-values on constructed discordant counts, the verdicts they
give (naive vs UME; UMT vs UME when a UMT run exists), and the per-sample flags it is computed from."""

from fractions import Fraction
from math import comb

import pytest
import torch

from latefusion.guide import decide, discordant_counts
from latefusion.engine import evaluate
from latefusion.methods import build_method, load_model
from latefusion.stats import mcnemar_exact


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


PROBE = {"unimodal": {"a": 0.60, "b": 0.60}, "naive": {"a": 0.60, "b": 0.60}}
LAZY = {"unimodal": {"a": 0.60, "b": 0.60}, "naive": {"a": 0.45, "b": 0.60}}


def accuracies(naive: float, ume: float, **more: float) -> dict[str, float]:
    return {"unimodal:a": 0.6, "unimodal:b": 0.6, "naive": naive, "ume": ume, **more}


def test_a_small_consistent_gain_is_found_by_the_paired_test_where_the_noise_margin_missed_it():
    # 1.5 points on 1000 samples: within two independent standard errors (3.9 points), but all 15
    # discordant samples favour naive fusion: p = 2 / 2**15.
    by_margin = decide(accuracies(0.760, 0.745), PROBE, n_val=1000)
    paired = decide(accuracies(0.760, 0.745), PROBE, n_val=1000, discordant=(15, 0))
    assert by_margin["choice"] == "ume" and paired["choice"] == "umt"
    test = paired["evidence"]["paired_test"]
    assert (test["naive_only"], test["ume_only"]) == (15, 0)
    assert test["p_value"] == pytest.approx(2 / 2**15)
    assert "McNemar" in test["test"] and "validation" in test["test"]
    assert "McNemar" in paired["reason"] and "p < 0.0001" in paired["reason"]


@pytest.mark.parametrize("discordant, choice", [
    ((12, 3), "umt"),    # p = 0.035: naive fusion ahead beyond chance
    ((10, 4), "ume"),    # p = 0.18: ahead, but within chance
    ((3, 12), "ume"),    # UME ahead beyond chance
    ((0, 0), "ume"),     # identical predictions
])
def test_decide_by_the_paired_test(discordant, choice):
    b, c = discordant
    n = 200
    verdict = decide(accuracies(0.7 + b / n, 0.7 + c / n), PROBE, n_val=n, discordant=discordant)
    assert verdict["choice"] == choice
    assert verdict["evidence"]["paired_test"]["p_value"] == pytest.approx(float(reference_p(b, c)))
    assert verdict["evidence"]["clear_cut"]


def test_a_tie_while_lazy_is_not_clear_cut_until_a_umt_run_settles_it():
    tie = dict(n_val=1000, discordant=(40, 38))
    alone = decide(accuracies(0.75, 0.748), LAZY, **tie)
    assert alone["choice"] == "ume" and not alone["evidence"]["clear_cut"] and "not clear-cut" in alone["reason"]
    umt_wins = decide(accuracies(0.75, 0.748, umt=0.78), LAZY, **tie, umt_discordant=(40, 8))
    assert umt_wins["choice"] == "umt" and umt_wins["evidence"]["clear_cut"]
    umt_ties = decide(accuracies(0.75, 0.748, umt=0.75), LAZY, **tie, umt_discordant=(20, 18))
    assert umt_ties["choice"] == "ume" and umt_ties["evidence"]["clear_cut"]
    comparison = umt_wins["evidence"]["umt_vs_ume"]
    assert (comparison["umt_only"], comparison["ume_only"]) == (40, 8)
    assert comparison["p_value"] == pytest.approx(float(reference_p(40, 8)))
    assert "Measured UMT against UME on validation" in umt_wins["reason"]


def test_a_umt_run_that_contradicts_the_verdict_marks_it_not_clear_cut():
    umt_choice = decide(accuracies(0.80, 0.70, umt=0.70), PROBE, n_val=200, discordant=(30, 10), umt_discordant=(10, 10))
    assert umt_choice["choice"] == "umt" and not umt_choice["evidence"]["clear_cut"]
    assert "does not beat UME" in umt_choice["reason"]
    ume_choice = decide(accuracies(0.70, 0.70, umt=0.80), PROBE, n_val=200, discordant=(10, 10), umt_discordant=(30, 10))
    assert ume_choice["choice"] == "ume" and not ume_choice["evidence"]["clear_cut"]
    agrees = decide(accuracies(0.80, 0.70, umt=0.82), PROBE, n_val=200, discordant=(30, 10), umt_discordant=(34, 10))
    assert agrees["evidence"]["clear_cut"] and "in line with the verdict" in agrees["reason"]


def test_discordant_counts_from_per_sample_flags():
    naive = torch.tensor([True, True, False, False, True, False])
    ume = torch.tensor([True, False, True, False, False, False])
    assert discordant_counts(naive, ume) == (2, 1)
    with pytest.raises(ValueError):
        discordant_counts(naive, ume[:3])


def test_per_sample_flags_of_finished_runs_reproduce_their_validation_accuracy(tmp_path, tiny_config):
    from latefusion.data import build_dataset
    from latefusion.guide import guide_from_runs, val_correct
    from latefusion.runs import RunDir
    from latefusion.train import train

    config = tiny_config("train.epochs=1")
    bundle = build_dataset(config.data)
    runs = {}
    for name, options in (("unimodal-a", {"modality": "a"}), ("unimodal-b", {"modality": "b"}), ("naive", {})):
        method = "unimodal" if name.startswith("unimodal") else name
        runs[name] = tmp_path / name
        train(config.model_copy(update={"method": config.method.model_copy(update={"name": method, "options": options})}, deep=True),
              runs[name], bundle=bundle)
    members = {"members": {"a": str(runs["unimodal-a"]), "b": str(runs["unimodal-b"])}}
    runs["ume"] = tmp_path / "ume"
    train(config.model_copy(update={"method": config.method.model_copy(update={"name": "ume", "options": members})}, deep=True),
          runs["ume"], bundle=bundle)
    flags = {}
    for name in ("naive", "ume"):
        flags[name] = val_correct(str(runs[name]))
        result = RunDir(runs[name]).result()
        assert flags[name].dtype == torch.bool and len(flags[name]) == result["n_val"]
        assert flags[name].float().mean().item() == pytest.approx(result["val_acc"])
        # The saved flags are the reloaded model's, evaluated afresh.
        run = RunDir(runs[name])
        fresh = evaluate(build_method(run.config(), run.spec()), load_model(run, torch.device("cpu")), bundle.splits["val"],
                         run.config(), torch.device("cpu"), bundle.num_classes, per_sample=True)
        assert torch.equal(flags[name], fresh["predicted"] == fresh["labels"])
    verdict = guide_from_runs({"a": str(runs["unimodal-a"]), "b": str(runs["unimodal-b"])}, str(runs["naive"]), str(runs["ume"]),
                              bundle=bundle)
    test = verdict["evidence"]["paired_test"]
    assert (test["naive_only"], test["ume_only"]) == discordant_counts(flags["naive"], flags["ume"])


def test_seeds_pool_their_discordant_counts():
    from latefusion.seeds import pooled_guide_evidence

    def seed(naive_only: int, ume_only: int, fingerprint: str) -> dict:
        return {"data_fingerprint": fingerprint,
                "guide": {"evidence": {"paired_test": {"naive_only": naive_only, "ume_only": ume_only}}}}

    # Each seed alone: 6 vs 2, p = 0.289; pooled over three: 18 vs 6, p = 0.0227 -> UMT.
    pooled = pooled_guide_evidence({f"seed-{k}": seed(6, 2, f"d{k}") for k in range(3)})
    assert (pooled["naive_only"], pooled["ume_only"]) == (18, 6)
    assert pooled["p_value"] == pytest.approx(0.02266, abs=1e-4) and pooled["choice"] == "umt"
    assert pooled["same_samples"] is False
    assert pooled_guide_evidence({"seed-0": seed(6, 2, "d"), "seed-1": seed(6, 2, "d")})["same_samples"] is True
    assert pooled_guide_evidence({"seed-0": {"guide": {"evidence": {}}}}) is None
