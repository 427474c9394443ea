#!/usr/bin/env python3
"""MLA's projector over many updates: the largest and smallest eigenvalue of P, and the size of a
projected head gradient relative to the plain one, after 1k, 5k and 20k updates, for the
never-forgetting OWM projector (`projection_forget: 0`) and the default (0.01).

    OMP_NUM_THREADS=1 PYTHONPATH=src python bench/mla_projector.py

Features: 512-d, ReLU of a fixed random centre plus unit noise, mean over a batch of 64 (what the
projector absorbs); gradients: (random errors)^T x over the same kind of batch. Seed 0.
"""

from __future__ import annotations

import torch

from latefusion.methods.mla import absorb


def main() -> None:
    dim, batch, classes = 512, 64, 10
    for forget in (0.0, 0.01):
        g = torch.Generator().manual_seed(0)
        centre = torch.rand(dim, generator=g)
        projector = torch.eye(dim)
        sizes = []
        for step in range(1, 20_001):
            x = (centre + torch.randn(batch, dim, generator=g)).relu()
            gradient = torch.randn(classes, batch, generator=g) @ x / batch
            sizes.append(((gradient @ projector).norm() / gradient.norm()).item())
            absorb(projector, x.mean(0), 0.1, forget)
            if step in (1_000, 5_000, 20_000):
                eig = torch.linalg.eigvalsh(projector)
                recent = sum(sizes[-100:]) / 100
                print(f"forget {forget}: after {step:>6} updates  largest eigenvalue {eig.max():.4f}  smallest {eig.min():.2e}  "
                      f"|grad P| / |grad| (last 100) {recent:.4f}  (first 100: {sum(sizes[:100]) / 100:.4f})", flush=True)


if __name__ == "__main__":
    main()
