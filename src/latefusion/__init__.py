"""latefusion: late-fusion multi-modal classification that learns from every modality.

Implements the uni-modal ensemble (UME), the uni-modal teacher (UMT), linear probes of each encoder
and the guide between them, after Du et al., "On Uni-Modal Feature Learning in Supervised
Multi-Modal Learning" (ICML 2023).

    from latefusion import resolve_config, run_demo
    summary = run_demo(resolve_config(None, ["data.name=synthetic-paired"]), "runs/paired", seeds=3)  # + report.html
"""

from .config import RunConfig
from .errors import UserError
from .guide import decide
from .methods import load_model
from .pipeline import Experiment, guide_folder, guide_from_runs, run_demo, run_demo_seeds, run_experiment, run_pipeline
from .probe import probe_run
from .resolve import resolve_config
from .runs import RunResult
from .train import train
from .version import __version__

__all__ = ["Experiment", "RunConfig", "RunResult", "UserError", "__version__", "decide", "guide_folder", "guide_from_runs",
           "load_model", "probe_run", "resolve_config", "run_demo", "run_demo_seeds", "run_experiment", "run_pipeline", "train"]
