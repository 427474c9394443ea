"""How often one demo (uni-modal runs, naive, UME, UMT, probes, guide) reads JSON, hashes a
checkpoint, evaluates a model and rebuilds one: the work a pipeline repeats instead of passing
results on. Prints a table of call counts.

    OMP_NUM_THREADS=1 python bench/call_counts.py                  # this checkout
    OMP_NUM_THREADS=1 PYTHONPATH=/path/to/old/src python bench/call_counts.py   # another commit

Each counted function is wrapped wherever a latefusion module holds it (a `from x import f` binds
the name in the importing module too), so every call is seen. The data are the synthetic preset at
a small size (the counts depend on the pipeline's structure, not on the data's size).
"""

from __future__ import annotations

import functools
import sys
import tempfile
from collections import Counter
from pathlib import Path

import torch

COUNTED = {
    "JSON reads": ("latefusion.storage", "read_json"),
    "checkpoint hashes": ("latefusion.storage", "file_sha256"),
    "saved-prediction reads": ("latefusion.storage", "read_arrays"),
    "evaluate calls": ("latefusion.engine", "evaluate"),
    "load_model calls": ("latefusion.methods.registry", "load_model"),
    "build_method calls": ("latefusion.methods.registry", "build_method"),
    "config parses": ("latefusion.config", "read_yaml"),
}


def count_calls(counts: Counter) -> None:
    for label, (module_name, name) in COUNTED.items():
        original = getattr(sys.modules[module_name], name)

        @functools.wraps(original)
        def counted(*args, _original=original, _label=label, **kwargs):
            counts[_label] += 1
            return _original(*args, **kwargs)

        for module in [m for key, m in sys.modules.items() if key.startswith("latefusion") and m is not None]:
            for attribute, value in list(vars(module).items()):
                if value is original:
                    setattr(module, attribute, counted)


def main() -> None:
    import latefusion  # noqa: F401  (every submodule the pipeline uses is imported by the package)
    from latefusion.pipeline import run_pipeline
    from latefusion.resolve import resolve_config

    torch.set_num_threads(1)
    counts: Counter = Counter()
    count_calls(counts)
    config = resolve_config(None, ["data.name=synthetic-unimodal", "data.options.train_size=300", "data.options.val_size=200",
                                   "data.options.test_size=200", "train.epochs=2", "train.progress=false"])
    with tempfile.TemporaryDirectory() as out:
        run_pipeline(config, Path(out) / "demo", log=lambda *_: None)
    print(f"latefusion from {Path(latefusion.__file__).parent}")
    print("| call | count in one 5-run demo |\n|---|---:|")
    for label in COUNTED:
        print(f"| {label} | {counts[label]} |")


if __name__ == "__main__":
    main()
