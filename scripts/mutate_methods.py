"""A curated mutation check of the methods: does a fast test fail when a method's key step is wrong?

    OMP_NUM_THREADS=1 python scripts/mutate_methods.py              # every mutation, then the table
    OMP_NUM_THREADS=1 python scripts/mutate_methods.py --only NAME  # one (repeat --only for more)
    python scripts/mutate_methods.py --list                         # the mutations and their tests

Each mutation is a textual replacement in one source file: (file, original text, mutated text, a
one-line description, the test node ids expected to catch it). First, an unmutated scratch copy of
the repository (src/, tests/, pyproject.toml) must pass every test named (otherwise "caught" would
mean nothing), and it must import latefusion from the scratch copy, not from the installed
(editable) package. Then, one at a time, each mutation is applied to a fresh scratch copy and its
tests are run there with `-m "not slow"` and PYTHONPATH at the scratch src/. A mutation is caught
when one of its tests fails. The original text must occur exactly once in its file, so the list
cannot silently rot when the code changes: it fails loudly instead (exit status 2).

Exit status: 0 if every mutation was caught, 1 if one was missed (or its run went wrong), 2 if the
list or the unmutated copy is broken.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EQUATIONS = "tests/test_methods_equations.py"
PROBE_STATS = "tests/test_probe_and_paired_test_equations.py"
GUIDE = "tests/test_guide.py"


@dataclass(frozen=True)
class Mutation:
    name: str
    file: str  # relative to the repository root
    original: str
    mutated: str
    description: str
    tests: tuple[str, ...]  # pytest node ids, relative to the repository root


MUTATIONS = [
    # ---- UME
    Mutation("ume-max-of-probabilities", "src/latefusion/methods/ume.py",
             "return torch.logsumexp(logits.log_softmax(-1), dim=0) - torch.log(torch.tensor(float(len(logits))))",
             "return logits.log_softmax(-1).max(0).values",
             "UME combines its members by the max of their probabilities instead of the mean",
             (f"{EQUATIONS}::test_ume_predicts_the_mean_of_its_members_probabilities",)),
    # ---- UMT
    Mutation("umt-distillation-sign", "src/latefusion/methods/umt.py",
             "loss = fused + self.options.weight * distill",
             "loss = fused - self.options.weight * distill",
             "UMT's distillation term enters the loss with its sign flipped",
             (f"{EQUATIONS}::test_umt_loss_is_fused_cross_entropy_plus_weighted_distillation",)),
    Mutation("umt-projection-skipped", "src/latefusion/methods/umt.py",
             "term = F.mse_loss(self.projectors[m](features[m]).float(), target.float())",
             "term = F.mse_loss(features[m].float(), target.float())",
             "UMT distils the student's features without the learned projection g_m",
             (f"{EQUATIONS}::test_umt_loss_is_fused_cross_entropy_plus_weighted_distillation",)),
    # ---- G2D
    Mutation("g2d-prioritise-the-least-confident", "src/latefusion/methods/g2d.py",
             "leaders = confidences == confidences.max()",
             "leaders = confidences == confidences.min()",
             "G2D switches off the encoder of the least confident teacher's modality instead of the most confident's",
             ("tests/test_methods_g2d.py::test_g2d_loss_and_prioritised_gradients_follow_the_equations",)),
    Mutation("g2d-logit-distillation-reversed", "src/latefusion/methods/g2d.py",
             "return F.kl_div(log_student, log_teacher, reduction=\"batchmean\", log_target=True) * temperature**2",
             "return F.kl_div(log_teacher, log_student, reduction=\"batchmean\", log_target=True) * temperature**2",
             "G2D's logit distillation takes KL(student || teacher) instead of KL(teacher || student)",
             ("tests/test_methods_g2d.py::test_g2d_loss_and_prioritised_gradients_follow_the_equations",)),
    # ---- G-Blending
    Mutation("gblend-overfitting-end-values", "src/latefusion/methods/gblend.py",
             "return start[1] - end[1], (end[1] - end[0]) - (start[1] - start[0])",
             "return start[1] - end[1], end[1] - end[0]",
             "G-Blending's O is the end gap V - T, not its change over the super-epoch",
             (f"{EQUATIONS}::test_gblend_weights_are_generalisation_over_overfitting_squared",)),
    Mutation("gblend-unweighted-loss", "src/latefusion/methods/gblend.py",
             "loss = (self.weights * terms).sum()",
             "loss = terms.mean()",
             "G-Blending's loss averages the heads' cross-entropies, ignoring the blend weights",
             (f"{EQUATIONS}::test_gblend_loss_blends_every_heads_cross_entropy_with_its_weight",)),
    # ---- OGM-GE
    Mutation("ogm-window-end-exclusive", "src/latefusion/methods/base.py",
             "(self.end_epoch is None or epoch <= self.end_epoch)",
             "(self.end_epoch is None or epoch < self.end_epoch)",
             "the modulation window's end (EpochWindow, OGM-GE's) made exclusive (its last epoch unmodulated)",
             (f"{EQUATIONS}::test_ogm_ge_coefficient_applies_on_every_epoch_of_its_window_and_on_no_other",)),
    Mutation("ogm-noise-after-scaling", "src/latefusion/methods/ogm_ge.py",
             "spread = p.grad.std() if p.grad.numel() > 1 else p.grad.new_zeros(())\n                p.grad.mul_(k)",
             "p.grad.mul_(k)\n                spread = p.grad.std() if p.grad.numel() > 1 else p.grad.new_zeros(())",
             "OGM-GE's noise takes the spread of the scaled gradient, not the unmodulated one",
             (f"{EQUATIONS}::test_ogm_ge_noise_has_the_spread_of_the_unmodulated_gradient",)),
    # ---- MMPareto
    Mutation("mmpareto-no-factor-2", "src/latefusion/methods/mmpareto.py",
             "2 * (c * g_mm + (1 - c) * g_u)",
             "(c * g_mm + (1 - c) * g_u)",
             "MMPareto's factor 2 on the min-norm combination (conflict case) dropped",
             (f"{EQUATIONS}::test_mmpareto_integration_per_tensor_follows_the_official_rule",)),
    Mutation("mmpareto-rescale-whole-encoder", "src/latefusion/methods/mmpareto.py",
             "parts = [len(direction)] if sizes is None else sizes",
             "parts = [len(direction)]",
             "MMPareto restores the magnitude over the whole encoder, not per parameter tensor",
             (f"{EQUATIONS}::test_mmpareto_integration_per_tensor_follows_the_official_rule",)),
    # ---- MLA
    Mutation("mla-entropy-sign", "src/latefusion/methods/mla.py",
             "return (-entropy).softmax(0)",
             "return entropy.softmax(0)",
             "MLA's test-time fusion weights by +entropy: the less certain modality weighs more",
             (f"{EQUATIONS}::test_mla_test_time_fusion_weights_each_sample_by_its_modalities_entropies",)),
    Mutation("mla-owm-denominator", "src/latefusion/methods/mla.py",
             "projector -= torch.outer(k, k) / (alpha + r @ k)",
             "projector -= torch.outer(k, k) / (alpha + 1)",
             "MLA's OWM update divides by alpha + 1 instead of alpha + r^T P r (same on the first update)",
             (f"{EQUATIONS}::test_mla_projector_without_forgetting_is_the_owm_closed_form",
              f"{EQUATIONS}::test_mla_projector_with_forgetting_follows_the_documented_recursion")),
    # ---- PMR
    Mutation("pmr-entropy-sign", "src/latefusion/methods/pmr.py",
             "- self.options.mu * (gamma * per).sum()",
             "+ self.options.mu * (gamma * per).sum()",
             "PMR's prototypical entropy term (PER) added instead of subtracted",
             (f"{EQUATIONS}::test_pmr_prototypes_and_loss_follow_the_equations",)),
    Mutation("pmr-momentum-swapped", "src/latefusion/methods/pmr.py",
             "means = (1 - self.options.momentum) * means + self.options.momentum * self.prototypes",
             "means = self.options.momentum * means + (1 - self.options.momentum) * self.prototypes",
             "PMR's prototype update keeps 0.8 of the old prototypes instead of 0.2",
             (f"{EQUATIONS}::test_pmr_prototypes_and_loss_follow_the_equations",)),
    Mutation("pmr-squared-distance", "src/latefusion/methods/pmr.py",
             "return squared.sqrt()",
             "return squared",
             "PMR's prototype softmax on squared distances instead of Euclidean ones",
             (f"{EQUATIONS}::test_pmr_prototypes_and_loss_follow_the_equations",)),
    # ---- AGM
    Mutation("agm-gradient-scale-swapped", "src/latefusion/methods/agm.py",
             "fused = sum(k * o + (1 - k) * o.detach() for",
             "fused = sum(k * o.detach() + (1 - k) * o for",
             "AGM scales each response's gradient by 1 - k instead of k",
             (f"{EQUATIONS}::test_agm_steps_follow_the_equations_and_keep_the_running_means",)),
    Mutation("agm-running-mean-ema", "src/latefusion/methods/agm.py",
             "- self.running_scores) / self.steps",
             "- self.running_scores) * 0.1",
             "AGM's running score is an exponential average, not the mean of every step so far",
             (f"{EQUATIONS}::test_agm_steps_follow_the_equations_and_keep_the_running_means",)),
    Mutation("agm-response-without-empty-share", "src/latefusion/methods/agm.py",
             "responses[m] = phi + values[frozenset()] / M",
             "responses[m] = phi",
             "AGM's responses leave out f({})/M, so they no longer sum to the fused logits",
             (f"{EQUATIONS}::test_agm_steps_follow_the_equations_and_keep_the_running_means",)),
    # ---- MMCosine
    Mutation("mmcosine-weights-not-normalised", "src/latefusion/methods/mmcosine.py",
             "F.normalize(features[m], dim=1) @ F.normalize(linear.weight, dim=1).T",
             "F.normalize(features[m], dim=1) @ linear.weight.T",
             "MMCosine normalises the features but not the class weights",
             ("tests/test_methods_mmcosine.py::test_mmcosine_logits_and_loss_follow_the_equations",)),
    # ---- OGM (TPAMI 2024)
    Mutation("ogm-tpami-no-warm-up", "src/latefusion/methods/ogm_tpami.py",
             "start_epoch: int = Field(6, ge=0",
             "start_epoch: int = Field(0, ge=0",
             "the TPAMI OGM modulates from epoch 0, without the official warm-up of epochs 0-5",
             ("tests/test_methods_ogm_tpami.py::test_ogm_modulates_after_the_official_warm_up_with_the_official_alpha",)),
    # ---- OPM
    Mutation("opm-no-rescaling", "src/latefusion/methods/opm.py",
             "torch.where(execute, keep / (1 - theta), torch.ones_like(keep))",
             "torch.where(execute, keep, torch.ones_like(keep))",
             "OPM drops features without rescaling the kept ones by 1 / (1 - theta)",
             ("tests/test_methods_opm.py::test_opm_forward_drops_the_dominant_modality_and_rescales",)),
    Mutation("opm-tanh-of-ratio", "src/latefusion/methods/opm.py",
             "q_base * (1 + lam * torch.tanh(ratio - 1))",
             "q_base * (1 + lam * torch.tanh(ratio))",
             "OPM's drop probability grows with tanh(rho) instead of tanh(rho - 1)",
             ("tests/test_methods_opm.py::test_opm_drop_probabilities_follow_the_official_rule",
              "tests/test_methods_opm.py::test_opm_forward_drops_the_dominant_modality_and_rescales")),
    # ---- InfoReg
    Mutation("inforeg-proximal-sign", "src/latefusion/methods/inforeg.py",
             "p.grad.add_(k.to(p.grad.dtype) * (p - anchor))",
             "p.grad.add_(k.to(p.grad.dtype) * (anchor - p))",
             "InfoReg's regulation pushes the leading encoder away from its anchor instead of toward it",
             ("tests/test_methods_inforeg.py::test_inforeg_step_follows_the_equations",)),
    Mutation("inforeg-window-against-last-epoch", "src/latefusion/methods/inforeg.py",
             "return (traces[:, -1] - traces[:, 0]) / traces[:, 1:].sum(1)",
             "return (traces[:, -1] - traces[:, -2]) / traces[:, 1:].sum(1)",
             "InfoReg's window compares the trace with the last epoch's, not the 10-epoch moving averages",
             ("tests/test_methods_inforeg.py::test_inforeg_window_follows_the_official_moving_averages",)),
    # ---- LFM
    Mutation("lfm-update-sign", "src/latefusion/methods/lfm.py",
             "return (w - lr * hvp_first.mean())",
             "return (w + lr * hvp_first.mean())",
             "LFM's learned alignment weight steps up the Hessian-vector product instead of down",
             ("tests/test_methods_lfm.py::test_lfm_learned_weight_moves_by_the_mean_hessian_vector_product_of_the_first_parameter",)),
    Mutation("lfm-textbook-js", "src/latefusion/methods/lfm.py",
             'F.kl_div(p_m.log(), mid, reduction="batchmean") + F.kl_div(p_n.log(), mid, reduction="batchmean")',
             'F.kl_div(mid.log(), p_m, reduction="batchmean") + F.kl_div(mid.log(), p_n, reduction="batchmean")',
             "LFM's alignment term is the textbook Jensen-Shannon KL(p || mid), not the official KL(mid || p)",
             ("tests/test_methods_lfm.py::test_lfm_loss_is_twice_the_weighted_fused_cross_entropy_and_alignment_divergence",)),
    # ---- Greedy
    Mutation("greedy-cares-for-smallest-bdr", "src/latefusion/methods/greedy.py",
             "self.caring.copy_(torch.where(start, bdr.argmax(), self.caring))",
             "self.caring.copy_(torch.where(start, bdr.argmin(), self.caring))",
             "Greedy's re-balancing steps cut off the branch with the smallest BDR instead of the largest",
             ("tests/test_methods_greedy.py::test_greedy_speeds_trigger_windows_of_rebalancing_steps_for_the_largest_bdr",)),
    Mutation("greedy-window-one-longer", "src/latefusion/methods/greedy.py",
             "self.rebalance_step < self.options.window",
             "self.rebalance_step <= self.options.window",
             "Greedy takes window + 1 re-balancing steps each time instead of window",
             ("tests/test_methods_greedy.py::test_greedy_speeds_trigger_windows_of_rebalancing_steps_for_the_largest_bdr",)),
    Mutation("greedy-measures-rebalancing-steps", "src/latefusion/methods/greedy.py",
             "self.speed_sums += torch.stack(speeds) * regular",
             "self.speed_sums += torch.stack(speeds)",
             "Greedy adds the speeds of re-balancing steps to its sums too",
             ("tests/test_methods_greedy.py::test_greedy_speeds_trigger_windows_of_rebalancing_steps_for_the_largest_bdr",)),
    Mutation("greedy-cared-gate-kept", "src/latefusion/methods/greedy.py",
             "gate = gates[m] if constant is None else torch.where(use_constant[i], constant[i].to(gates[m].dtype), gates[m])",
             "gate = gates[m]",
             "Greedy's re-balancing steps keep the cross-modal gate of the cared branch",
             ("tests/test_methods_greedy.py::test_greedy_speeds_trigger_windows_of_rebalancing_steps_for_the_largest_bdr",)),
    # ---- ReconBoost
    Mutation("reconboost-reconcilement-sign", "src/latefusion/methods/reconboost.py",
             "return ((weight1 - weight2 * agree) * -log_p)",
             "return ((weight1 + weight2 * agree) * -log_p)",
             "ReconBoost weighs up the samples the other modalities already get right (reconcilement sign flipped)",
             ("tests/test_methods_reconboost.py::test_reconboost_boosting_step_follows_the_reconcilement_and_consolidation_terms",)),
    Mutation("reconboost-others-include-self", "src/latefusion/methods/reconboost.py",
             "sum(model.learner(m, inputs) for m in self.modalities() if m != k)",
             "sum(model.learner(m, inputs) for m in self.modalities())",
             "ReconBoost's reconcilement term counts the boosted learner among the others",
             ("tests/test_methods_reconboost.py::test_reconboost_boosting_step_follows_the_reconcilement_and_consolidation_terms",)),
    Mutation("reconboost-consolidation-inert", "src/latefusion/methods/reconboost.py",
             "consolidation = F.mse_loss(own.float().softmax(1), target)",
             "consolidation = F.mse_loss(own.detach().float().softmax(1), target)",
             "ReconBoost's consolidation term detached as in the official code, so it never acts",
             ("tests/test_methods_reconboost.py::test_reconboost_boosting_step_follows_the_reconcilement_and_consolidation_terms",)),
    Mutation("reconboost-stage-order", "src/latefusion/methods/reconboost.py",
             "self.modalities()[stage % len(self.modalities())] if boosting else None",
             "self.modalities()[(stage + 1) % len(self.modalities())] if boosting else None",
             "ReconBoost's first stage boosts the second modality (the order shifted by one)",
             ("tests/test_methods_reconboost.py::test_reconboost_stages_boost_each_modality_in_turn_then_rectify",)),
    # ---- Diagnosing and Re-learning
    Mutation("relearn-reinit-weights-swapped", "src/latefusion/methods/relearn.py",
             "current.mul_(1 - alpha).add_(initial, alpha=alpha)",
             "current.mul_(alpha).add_(initial, alpha=1 - alpha)",
             "Re-learning keeps alpha of the current encoder and takes 1 - alpha of its initial weights",
             ("tests/test_methods_relearn.py::test_relearn_reinitialises_each_encoder_by_tanh_of_its_purity_gap",)),
    Mutation("relearn-signed-purity-gap", "src/latefusion/methods/relearn.py",
             "math.tanh(strength * abs(train_purity - val_purity))",
             "math.tanh(strength * (train_purity - val_purity))",
             "Re-learning's strength uses the signed purity gap, not its size",
             ("tests/test_methods_relearn.py::test_relearn_reinitialises_each_encoder_by_tanh_of_its_purity_gap",)),
    # ---- Data Remixing
    Mutation("remix-assign-most-confident", "src/latefusion/methods/remix.py",
             "self.assignment.copy_(torch.stack(divergences).argmin(0))",
             "self.assignment.copy_(torch.stack(divergences).argmax(0))",
             "Remix gives each sample to the modality most confident on it instead of the least",
             ("tests/test_methods_remix.py::test_remix_assigns_each_sample_to_its_least_confident_modality",)),
    Mutation("remix-other-modalities-not-zeroed", "src/latefusion/methods/remix.py",
             "fused = F.cross_entropy(model.head({m: z * masks[m] for m, z in features.items()}), labels)",
             "fused = F.cross_entropy(model.head(features), labels)",
             "Remix's fused loss keeps the features of the modalities a sample is not assigned to",
             ("tests/test_methods_remix.py::test_remix_losses_follow_the_official_code",)),
    Mutation("remix-batches-not-reassembled", "src/latefusion/methods/remix.py",
             "if (self.assignment < 0).all():\n            return super().training_order(generator)",
             "if True:\n            return super().training_order(generator)",
             "Remix's epochs stay a random permutation, mixing the modalities' samples in every batch",
             ("tests/test_methods_remix.py::test_remix_epoch_batches_one_modality_at_a_time",)),
    # ---- linear probe
    Mutation("agm-padded-present-in-train-mode", "src/latefusion/methods/agm.py",
             "    with evaluation_mode(model):\n        present = model.features(inputs)\n",
             "    present = model.features(inputs)\n    with evaluation_mode(model):\n",
             "AGM's padded passes reuse the present modalities' train-mode features instead of running the whole network in eval mode",
             ("tests/test_methods_pmr_agm.py::test_agm_padded_passes_run_the_whole_network_in_eval_mode",)),
    Mutation("agm-coefficients-reset-after-window", "src/latefusion/methods/agm.py",
             "coefficients = self.coefficients.clone()",
             "coefficients = torch.ones_like(self.coefficients)",
             "AGM's coefficients fall back to 1 after the window instead of keeping the window's last",
             ("tests/test_methods_pmr_agm.py::test_agm_coefficients_are_one_before_the_window_and_keep_their_last_value_after_it",)),
    Mutation("probe-select-on-test", "src/latefusion/probe.py",
             'val_acc = accuracy("val")',
             'val_acc = accuracy("test")',
             "the probe chooses its step by test accuracy instead of validation accuracy",
             (f"{PROBE_STATS}::test_probe_reports_test_accuracy_at_the_step_chosen_on_validation",)),
    Mutation("probe-own-split-statistics", "src/latefusion/probe.py",
             "scaled = {split: ((x - mean) / std, y) for split, (x, y) in features.items()}",
             "scaled = {split: ((x - x.mean(0)) / std, y) for split, (x, y) in features.items()}",
             "the probe centres each split on its own mean instead of the train mean",
             (f"{PROBE_STATS}::test_probe_reports_test_accuracy_at_the_step_chosen_on_validation",)),
    Mutation("probe-last-of-tied-steps", "src/latefusion/probe.py",
             'if val_acc > best["val_acc"]:',
             'if val_acc >= best["val_acc"]:',
             "the probe reports the last of the steps tied on validation accuracy, not the first",
             (f"{PROBE_STATS}::test_probe_reports_test_accuracy_at_the_step_chosen_on_validation",)),
    # ---- the guide's paired test (stats.py; guide.py itself is not mutated)
    Mutation("mcnemar-one-sided", "src/latefusion/stats.py",
             "return min(1.0, 2 * tail / 2**n)",
             "return min(1.0, tail / 2**n)",
             "the exact McNemar p-value is one-sided (the tail not doubled)",
             (f"{PROBE_STATS}::test_mcnemar_exact_is_the_doubled_binomial_tail_on_every_small_table",
              f"{PROBE_STATS}::test_mcnemar_exact_at_the_edges_of_significance")),
    Mutation("mcnemar-tail-without-observed", "src/latefusion/stats.py",
             "for k in range(min(b, c) + 1)",
             "for k in range(min(b, c))",
             "the exact McNemar tail leaves out the observed count min(b, c)",
             (f"{PROBE_STATS}::test_mcnemar_exact_is_the_doubled_binomial_tail_on_every_small_table",
              f"{PROBE_STATS}::test_mcnemar_exact_at_the_edges_of_significance")),
    # ---- the guide's decision
    Mutation("guide-umt-overruled-without-paired-reading", "src/latefusion/guide.py",
             "choice, headline = select(gap, margin, prefer, measured, significant=umt_vs_ume[\"p_value\"] < alpha)",
             "choice, headline = select(gap if naive_vs_ume[\"first_better\"] else -1.0, margin, prefer, measured, significant=umt_vs_ume[\"p_value\"] < alpha)",
             "the guide overrules a UMT run that beats UME when naive fusion does not beat UME (the old rule's flaw)",
             (f"{GUIDE}::test_a_umt_run_that_beats_ume_on_validation_is_chosen_even_when_naive_fusion_ties_ume",)),
    Mutation("guide-warnings-ignored", "src/latefusion/guide.py",
             "verdict = \"inconclusive\" if warnings else choice\n    if warnings:\n        headline = (",
             "verdict = choice\n    if warnings:\n        headline = (",
             "the guide gives a confident verdict whatever its input checks found",
             (f"{GUIDE}::test_too_few_optimiser_steps_is_inconclusive", f"{GUIDE}::test_every_candidate_near_chance_is_inconclusive")),
    Mutation("guide-near-tie-ignores-preference", "src/latefusion/guide.py",
             "    return prefer, (f\"{prefer.upper()}: {other} is within",
             "    return \"umt\", (f\"{prefer.upper()}: {other} is within",
             "a near-tie between UMT and UME goes to UMT whatever the declared preference",
             (f"{GUIDE}::test_with_a_umt_run_the_one_ahead_beyond_the_margin_wins_else_the_preferred_one",)),
    Mutation("guide-seeds-counted-as-samples", "src/latefusion/guide.py",
             "    if same_samples:\n        difference",
             "    if False:\n        difference",
             "seeds that share their validation samples are pooled as if each seed brought samples of its own",
             (f"{GUIDE}::test_seeds_that_share_their_samples_are_tested_over_samples_not_over_summed_counts",)),
]

# A pytest plugin loaded into each run: it records every test's outcome and where latefusion was
# imported from, so the runner knows which test caught a mutation and that the scratch copy ran.
PLUGIN = '''
import json, os

_outcomes = {}


def pytest_collectreport(report):
    if report.failed:
        _outcomes["collection error: " + report.nodeid] = "failed"


def pytest_runtest_logreport(report):
    if report.failed:
        _outcomes[report.nodeid] = "failed"
    elif report.skipped:
        _outcomes.setdefault(report.nodeid, "skipped")
    elif report.when == "call":
        _outcomes.setdefault(report.nodeid, "passed")


def pytest_sessionfinish(session, exitstatus):
    import latefusion
    with open(os.environ["MUTATION_REPORT"], "w") as f:
        json.dump({"latefusion": latefusion.__file__, "outcomes": _outcomes, "exitstatus": int(exitstatus)}, f)
'''


class ListError(Exception):
    """The list or the unmutated copy is broken: exit status 2."""


def check_list(mutations: list[Mutation]) -> None:
    """Every original text occurs exactly once in its file, and every mutation changes it."""
    names = [m.name for m in mutations]
    if len(set(names)) != len(names):
        raise ListError(f"duplicate mutation names: {sorted({n for n in names if names.count(n) > 1})}")
    for m in mutations:
        path = REPO / m.file
        if not path.is_file():
            raise ListError(f"mutation {m.name}: {m.file} does not exist")
        count = path.read_text().count(m.original)
        if count != 1:
            raise ListError(f"mutation {m.name}: the original text occurs {count} times in {m.file} (must be exactly once):\n    {m.original!r}")
        if m.mutated == m.original:
            raise ListError(f"mutation {m.name}: the mutated text is the original")
        if not m.tests:
            raise ListError(f"mutation {m.name}: no tests named")


def scratch_copy(root: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", ".pytest_cache")
    for folder in ("src", "tests"):
        shutil.copytree(REPO / folder, root / folder, ignore=ignore)
    for name in ("pyproject.toml", "conftest.py"):
        if (REPO / name).is_file():
            shutil.copy2(REPO / name, root / name)
    plugin = root / "_mutation_plugin"
    plugin.mkdir()
    (plugin / "mutation_report.py").write_text(PLUGIN)


def apply(root: Path, m: Mutation) -> None:
    path = root / m.file
    text = path.read_text()
    if text.count(m.original) != 1:  # checked on the repository already; the copy must agree
        raise ListError(f"mutation {m.name}: the original text is not in the scratch copy exactly once")
    path.write_text(text.replace(m.original, m.mutated))


def run_tests(root: Path, tests: list[str], timeout: float) -> dict:
    report = root / "report.json"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(root / "src"), str(root / "_mutation_plugin")])
    env["MUTATION_REPORT"] = str(report)
    env.setdefault("OMP_NUM_THREADS", "1")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    command = [sys.executable, "-m", "pytest", "-q", "-m", "not slow", "-p", "no:cacheprovider", "-p", "mutation_report",
               "--rootdir", str(root), "-c", str(root / "pyproject.toml"), *tests]
    started = time.monotonic()
    try:
        done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"returncode": None, "outcomes": {}, "latefusion": None, "seconds": timeout, "output": f"timed out after {timeout:.0f} s"}
    result = json.loads(report.read_text()) if report.is_file() else {"outcomes": {}, "latefusion": None}
    return {**result, "returncode": done.returncode, "seconds": time.monotonic() - started, "output": done.stdout + done.stderr}


def matches(nodeid: str, listed: str) -> bool:
    return nodeid == listed or nodeid.startswith(listed + "[")


def check_import_location(root: Path, result: dict) -> None:
    where = result.get("latefusion")
    if where is None or not Path(where).resolve().is_relative_to((root / "src").resolve()):
        raise ListError(f"the tests imported latefusion from {where}, not from the scratch copy {root / 'src'}:"
                        " a mutation there would not be tested\n" + result["output"][-3000:])


def baseline(mutations: list[Mutation], timeout: float) -> None:
    """The unmutated copy passes every named test, each of which ran (none deselected as slow)."""
    tests = sorted({t for m in mutations for t in m.tests})
    with tempfile.TemporaryDirectory(prefix="mutate-") as tmp:
        root = Path(tmp)
        scratch_copy(root)
        result = run_tests(root, tests, timeout)
        check_import_location(root, result)
        failed = [n for n, o in result["outcomes"].items() if o != "passed"]
        missing = [t for t in tests if not any(matches(n, t) and o == "passed" for n, o in result["outcomes"].items())]
        if result["returncode"] != 0 or failed or missing:
            raise ListError("the unmutated copy does not pass the named fast tests, so 'caught' would mean nothing:\n"
                            + "".join(f"  not passed: {t}\n" for t in failed + missing) + result["output"][-3000:])
        print(f"unmutated copy: {sum(o == 'passed' for o in result['outcomes'].values())} tests passed in {result['seconds']:.1f} s; "
              f"latefusion imported from the scratch copy ({Path(result['latefusion']).relative_to(root)} under {root})", flush=True)


def run_mutation(m: Mutation, timeout: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="mutate-") as tmp:
        root = Path(tmp)
        scratch_copy(root)
        apply(root, m)
        result = run_tests(root, list(m.tests), timeout)
        if result["returncode"] is not None:
            check_import_location(root, result)
    failed = sorted(n for n, o in result["outcomes"].items() if o == "failed")
    by = [n for n in failed if any(matches(n, t) for t in m.tests)]
    if result["returncode"] == 0:
        status = "MISSED"
    elif result["returncode"] == 1 and by:
        status = "caught"
    else:  # a collection error, a timeout, a crash: not a test catching the mutation
        status = "ERROR"
        by = failed or [result["output"].strip().splitlines()[-1] if result["output"].strip() else f"exit status {result['returncode']}"]
    return {"status": status, "by": by, "seconds": result["seconds"], "output": result["output"]}


def short(nodeid: str) -> str:
    return nodeid.removeprefix("tests/")


def print_table(rows: list[tuple[Mutation, dict]]) -> None:
    print()
    print("| # | mutation | file | what it changes | result | caught by (failing fast tests) |")
    print("|---:|---|---|---|---|---|")
    for i, (m, r) in enumerate(rows, 1):
        print(f"| {i} | {m.name} | {m.file.removeprefix('src/latefusion/')} | {m.description} | {r['status']} | "
              f"{'<br>'.join(short(n) for n in r['by']) or '-'} |")
    caught = sum(r["status"] == "caught" for _, r in rows)
    print(f"\n{caught} of {len(rows)} mutations caught by a fast test"
          + ("" if caught == len(rows) else f"; not caught: {', '.join(m.name for m, r in rows if r['status'] != 'caught')}"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", metavar="NAME", help="run only this mutation (repeatable)")
    parser.add_argument("--list", action="store_true", help="list the mutations and the tests expected to catch them")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per pytest run (default 600)")
    parser.add_argument("--show-failures", action="store_true", help="print the end of pytest's output for each mutation")
    args = parser.parse_args()
    try:
        check_list(MUTATIONS)
        if args.list:
            for m in MUTATIONS:
                print(f"{m.name}  ({m.file})\n    {m.description}\n" + "".join(f"    test: {t}\n" for t in m.tests))
            return 0
        selected = MUTATIONS
        if args.only:
            unknown = sorted(set(args.only) - {m.name for m in MUTATIONS})
            if unknown:
                raise ListError(f"unknown mutation(s) {unknown}; --list shows the names")
            selected = [m for m in MUTATIONS if m.name in args.only]
        baseline(selected, args.timeout)
    except ListError as error:
        print(f"mutate_methods: {error}", file=sys.stderr)
        return 2
    rows = []
    for i, m in enumerate(selected, 1):
        result = run_mutation(m, args.timeout)
        rows.append((m, result))
        print(f"[{i}/{len(selected)}] {m.name}: {result['status']} ({result['seconds']:.1f} s)", flush=True)
        if result["status"] == "ERROR" or args.show_failures:
            print(result["output"][-2000:], flush=True)
    print_table(rows)
    return 0 if all(r["status"] == "caught" for _, r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
