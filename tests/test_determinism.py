"""The suite's own determinism: every test starts from the same seeded random state (the autouse
fixture in conftest.py), and no test file draws from a generator that fixture cannot reach."""

import random
import re
from pathlib import Path

import numpy as np
import torch

from conftest import SEED

TESTS = Path(__file__).parent

# Draws from the global generators: seeded by the fixture when made inside a test, not at import.
GLOBAL_DRAW = re.compile(r"\b(torch\.(rand|randn|randint|randperm|rand_like|randn_like|randint_like|normal|bernoulli|multinomial)"
                         r"|np\.random\.(?!default_rng|Generator|seed)\w+|random\.(random|randint|randrange|choice|choices|shuffle|uniform|gauss|sample))\(")
# Generators of a test's own that no fixture seeds.
UNSEEDED_SOURCES = {
    "a NumPy generator without a seed": re.compile(r"default_rng\(\s*\)"),
    "a torch.Generator not seeded where it is made": re.compile(r"torch\.Generator\([^)]*\)(?!\.manual_seed\()"),
    "a random.Random without a seed": re.compile(r"\brandom\.Random\(\s*\)"),
    "a seed from the clock or the system": re.compile(r"torch\.seed\(\)|np\.random\.seed\(\s*\)|\brandom\.seed\(\s*\)|SystemRandom|os\.urandom"),
}


def test_every_test_starts_from_the_seeded_random_state(request):
    assert "seeded_random_state" in request.fixturenames  # autouse: this test does not ask for it
    drawn = torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)]
    torch.manual_seed(SEED)
    np.random.seed(SEED)
    random.seed(SEED)
    assert torch.equal(drawn[0], torch.rand(3))
    assert np.array_equal(drawn[1], np.random.rand(3))
    assert drawn[2] == [random.random() for _ in range(3)]


def test_no_test_draws_from_an_unseeded_generator():
    found = []
    for path in sorted(TESTS.glob("*.py")):
        if path.name == Path(__file__).name:  # this file names the patterns it looks for
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#")[0]
            where = f"{path.name}:{number}: {line.strip()}"
            found += [f"{where} ({what})" for what, pattern in UNSEEDED_SOURCES.items() if pattern.search(code)]
            if GLOBAL_DRAW.search(code) and not line[:1].isspace():
                found.append(f"{where} (a draw at import time, before any test's seed)")
    assert not found, "unseeded random draws:\n" + "\n".join(found)
