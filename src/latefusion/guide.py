"""The guiding strategy: UME or UMT for this task, and why.

The paper's principle [V]: without paired features (features only cross-modal interaction can
learn), train each modality alone and ensemble (UME); with them, train jointly with uni-modal
teachers (UMT). Its exact operational rule is not published, so this rule is ours [design choice]:

  Naive late fusion is the cheapest model that *can* use paired features, and it does so despite
  its laziness. UME has every uni-modal feature but no paired ones. So on the validation split:

      paired_gain = acc(naive) - acc(UME)

  If paired_gain exceeds the noise margin (two standard errors of a difference of two accuracies
  on the validation set, at least `min_margin`), joint training finds something the uni-modal
  models cannot: paired features matter, choose UMT (it keeps them and restores the uni-modal
  features laziness costs). Otherwise choose UME: it is at least as good and needs no joint training.

The linear-probe gap (uni-modal encoder minus naive encoder, validation accuracy) is reported as
evidence of laziness: it says how much UMT or UME stand to recover, not which of the two to pick.
One case is flagged as not clear-cut (`evidence.clear_cut = false`): naive fusion ties with UME
within the margin while its encoders are lazy, so laziness may be hiding paired features; the
verdict stays UME and the reason suggests training UMT as well.
Only validation numbers enter the decision; the test split is never read here.
"""

from __future__ import annotations

import math
from typing import Any

from .probe import probe_run
from .runs import RunDir


def noise_margin(acc_a: float, acc_b: float, n: int, min_margin: float = 0.01) -> float:
    standard_error = math.sqrt((acc_a * (1 - acc_a) + acc_b * (1 - acc_b)) / max(n, 1))
    return max(min_margin, 2 * standard_error)


def decide(val_acc: dict[str, float], probe_val: dict[str, dict[str, float]], n_val: int, min_margin: float = 0.01) -> dict[str, Any]:
    """`val_acc` has keys "unimodal:<m>", "naive" and "ume"; `probe_val` maps "unimodal"/"naive" to {modality: acc}."""
    naive, ume = val_acc["naive"], val_acc["ume"]
    gain = naive - ume
    margin = noise_margin(naive, ume, n_val, min_margin)
    gaps = {m: probe_val["unimodal"][m] - probe_val["naive"][m] for m in probe_val["unimodal"]}
    lazy = [m for m, gap in gaps.items() if gap > margin]
    laziness = (
        f"Joint training left encoder(s) {', '.join(lazy)} lazy: their linear probes trail the uni-modal "
        f"encoders by {', '.join(f'{gaps[m] * 100:.1f}' for m in lazy)} points."
        if lazy else "The naive encoders probe about as well as the uni-modal ones: little laziness to recover."
    )
    if gain > margin:
        choice = "umt"
        despite = ", although its encoders learn less of each modality" if lazy else ""
        reason = (
            f"Naive late fusion beats the uni-modal ensemble by {gain * 100:.1f} points on validation "
            f"({naive:.3f} vs {ume:.3f}; noise margin {margin * 100:.1f}){despite}: the modalities hold paired "
            f"features that only joint training finds. UMT keeps them and distils the uni-modal features "
            f"back in. {laziness}"
        )
    else:
        choice = "ume"
        reason = (
            f"Naive late fusion does not beat the uni-modal ensemble beyond noise on validation "
            f"({naive:.3f} vs {ume:.3f}; difference {gain * 100:+.1f} points, noise margin {margin * 100:.1f}): "
            f"paired features add little here, so training each modality alone and ensembling (UME) is "
            f"enough and avoids joint training. {laziness}"
        )
    # A tie between a lazy naive model and UME is the one case the rule cannot settle: the laziness
    # may be hiding paired features that UMT would keep. Say so rather than sound sure.
    ambiguous = choice == "ume" and abs(gain) <= margin and bool(lazy)
    if ambiguous:
        reason += (" This verdict is not clear-cut: naive fusion ties with UME while being lazy, so its laziness "
                   "may hide paired features; training UMT as well (one more run) would settle it.")
    evidence = {"val_acc": val_acc, "paired_gain": gain, "noise_margin": margin, "n_val": n_val, "probe_val": probe_val,
                "probe_gap": gaps, "clear_cut": not ambiguous}
    return {"choice": choice, "reason": reason, "evidence": evidence}


def guide_from_runs(unimodal: dict[str, str], naive: str, ume: str, *, bundle=None, min_margin: float = 0.01) -> dict[str, Any]:
    """Decide from finished run folders (probing the uni-modal and naive runs if not yet probed)."""
    val_acc = {f"unimodal:{m}": RunDir(path).result()["val_acc"] for m, path in unimodal.items()}
    val_acc["naive"] = RunDir(naive).result()["val_acc"]
    ume_result = RunDir(ume).result()
    val_acc["ume"] = ume_result["val_acc"]
    probe_val = {"unimodal": {m: probe_run(path, bundle=bundle)[m]["val_acc"] for m, path in unimodal.items()}}
    probe_val["naive"] = {m: r["val_acc"] for m, r in probe_run(naive, bundle=bundle).items()}
    return decide(val_acc, probe_val, ume_result["n_val"], min_margin)
