import pytest
import torch

from latefusion.resolve import resolve_config

# Tiny models on 2 cores: one thread avoids OpenMP spin-waiting when other processes share the CPU.
torch.set_num_threads(1)


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
