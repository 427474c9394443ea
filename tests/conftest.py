import os
import random

import numpy as np
import pytest
import torch
from hypothesis import settings

from latefusion.resolve import resolve_config

# Tiny models on 2 cores: one thread by default avoids OpenMP spin-waiting when other processes share
# the CPU. An OMP_NUM_THREADS given explicitly is honoured, so that scripts/repeat_tests.sh can run the
# numerical tests with the reduction orders of several threads too; the training processes tests
# start and compare against this one get the same count.
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or 1))

# Hypothesis draws its examples from a fixed seed and replays nothing from a local example database,
# so a run on a fresh clone tries exactly the examples every other run tries. Loaded here, before
# the test modules are imported, so that their @settings(...) decorators inherit it.
settings.register_profile("deterministic", derandomize=True, database=None)
settings.load_profile("deterministic")

SEED = 0


@pytest.fixture(autouse=True)
def seeded_random_state():
    """Every test starts from the same random state, whatever ran before it and whichever tests were
    selected: model initialisation and any draw from the global generators are the same in every run.
    (tests/test_determinism.py checks that this fixture runs and that no test draws from an unseeded
    generator of its own.)"""
    torch.manual_seed(SEED)
    np.random.seed(SEED)
    random.seed(SEED)


@pytest.fixture
def tiny_config():
    """A factory for a small, fast run configuration on the synthetic data. The batch size is pinned
    to 128 (3 steps an epoch), what these tests were written for: data.batch_size=auto would choose
    16 for 300 training samples (tests/test_defaults.py tests the rule)."""

    def make(*overrides: str, data: str = "synthetic-unimodal"):
        return resolve_config(None, [
            f"data.name={data}", "data.options.train_size=300", "data.options.val_size=200",
            "data.options.test_size=200", "train.epochs=3", "train.progress=false", "data.batch_size=128", *overrides,
        ])

    return make
