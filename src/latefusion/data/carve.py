"""Carving a validation split out of train, for data sets that come without one."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Hashable, Sequence


def carve_validation(splits: Sequence[str], fraction: float, seed: int, groups: Sequence[Hashable] | None = None) -> list[str]:
    """`splits` with train samples moved to "val": whole groups, in a seeded order, until `fraction`
    of the train samples are moved (at least one sample when `fraction` > 0).

    `groups` gives each sample's group (the source video of a clip, the object of a view): a group
    never straddles train and val, so validation never sees a near-copy of a training sample. Without
    `groups` every sample is its own group."""
    groups = list(range(len(splits))) if groups is None else list(groups)
    sizes = Counter(group for group, split in zip(groups, splits) if split == "train")
    order = sorted(sizes)
    random.Random(seed).shuffle(order)
    target = fraction * sum(sizes.values())
    held, moved = set(), 0
    for group in order:
        if moved >= target:
            break
        held.add(group)
        moved += sizes[group]
    return ["val" if split == "train" and group in held else split for split, group in zip(splits, groups)]


def settle_validation(splits: Sequence[str], fraction: float, seed: int, groups: Sequence[Hashable] | None = None) -> list[str]:
    """The splits training reads: as given when any sample is already "val", else with a validation
    split carved out of train (carve_validation). The one rule of the folder reader and of `prepare`."""
    if "val" in splits:
        return list(splits)
    return carve_validation(splits, fraction, seed, groups)
