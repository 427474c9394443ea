import pytest
import torch

from latefusion.resolve import resolve_config

# Tiny models on 2 cores: one thread avoids OpenMP spin-waiting when other processes share the CPU.
torch.set_num_threads(1)


@pytest.fixture
def tiny_config():
    """A factory for a small, fast run configuration on the synthetic data."""

    def make(*overrides: str, data: str = "synthetic-unimodal"):
        return resolve_config(None, [
            f"data.name={data}", "data.options.train_size=300", "data.options.val_size=200",
            "data.options.test_size=200", "train.epochs=3", "train.progress=false", *overrides,
        ])

    return make
