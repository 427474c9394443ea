"""OGM: On-the-fly Gradient Modulation as the journal extension of OGM-GE defines and runs it (Wei, Hu,
Du & Wen, "On-the-fly Modulation for Balanced Multimodal Learning", IEEE TPAMI 2024). Registered as
`ogm_tpami`: the bare name "ogm" would read as OGM-GE without its noise (`ogm_ge` with `noise: false`).

The rule is OGM-GE's (methods/ogm_ge.py, whose code this method reuses): after each backward pass,
the gradient of the dominant modality's encoder weights is scaled by k_m = 1 - tanh(alpha * rho_m)
(rho_m > 1: its summed true-class probability over the others'), plus Gaussian noise of the
unmodulated gradient's spread. What the journal version's official code changes is when and how
strongly it modulates:

    epochs 0..5          plain late fusion (a warm-up: the code's `warm_up = 1 if epoch <= 5`)
    epochs 6..60         modulated with alpha = 0.8
    later epochs         plain again

Where each detail comes from (GeWu-Lab/BML_TPAMI2024, `code/main.py`):
  * the warm-up (line 91) and modulation only when it is over and `modulation_starts <= epoch <=
    modulation_ends` (lines 116, 154): so `start_epoch` 6 here;
  * alpha 0.8 and the window end 60: `code/scripts/train_ogm.sh` (`--alpha 0.8 --modulation_starts 0
    --modulation_ends 60`);
  * the noise: the script does not pass `--modulation`, whose default is 'OGM_GE' (line 36), so the
    official OGM adds the generalisation-enhancement noise; `noise: false` gives the plain scaling
    (`--modulation OGM`, lines 161-162);
  * the score (batch sum of softmax(share_m)[y], each modality's share carrying half the bias:
    `code/models/Classifier.py` lines 139-143), k (main.py lines 138-148) and the 4-D convolution
    weights modulated (lines 155-169): OGM-GE's, with OGM-GE's rule for encoders without
    convolutions and for more than two modalities (see ogm_ge.py);
  * the journal paper's text could not be read here (only its abstract): the equations are taken
    from the official code, which implements the CVPR rule unchanged;
  * GeWu-Lab/BalanceBenchmark has no separate OGM: its `OGMTrainer` (balancemm/trainer/OGM_trainer.py)
    is the CVPR OGM-GE without a warm-up, modulating every parameter of more than one dimension whose
    name holds the modality's name (not only convolutions); ogm_ge.py covers that method.
"""

from __future__ import annotations

from pydantic import Field

from ..style import Style
from .ogm_ge import OGMGE, OGMGEOptions
from .registry import METHODS



class OGMOptions(OGMGEOptions):
    alpha: float = Field(0.8, ge=0, description="strength of the modulation (official script 0.8)")
    start_epoch: int = Field(6, ge=0, description="first epoch modulated (the official warm-up leaves epochs 0-5 plain)")
    end_epoch: int = Field(60, ge=0, description="last epoch modulated, inclusive (official script 60)")


@METHODS.register("ogm_tpami")
class OGMTPAMI(OGMGE):
    name = "ogm_tpami"
    Options = OGMOptions
    group = "baseline"
    style = Style("OGM (TPAMI)", "#332288", "p", (0, (5, 2, 1, 2)), "//")
