"""latefusion: late-fusion multi-modal classification that learns from every modality.

Implements the uni-modal ensemble (UME), the uni-modal teacher (UMT), linear probes of each encoder
and the guide between them, after Du et al., "On Uni-Modal Feature Learning in Supervised
Multi-Modal Learning" (ICML 2023).

    from latefusion import resolve_config, run_pipeline
    summary = run_pipeline(resolve_config(None, ["data.name=synthetic-paired"]), "runs/paired")
"""

__version__ = "0.1.0"

from .config import RunConfig, resolve_config  # noqa: E402
from .guide import decide, guide_from_runs  # noqa: E402
from .pipeline import run_pipeline  # noqa: E402
from .probe import probe_run  # noqa: E402
from .train import load_model, train  # noqa: E402

__all__ = ["RunConfig", "decide", "guide_from_runs", "load_model", "probe_run", "resolve_config", "run_pipeline", "train"]
