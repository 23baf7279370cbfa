"""A small simulated audit for the README's first command: no models, no downloads.

Real and generated face embeddings for 4 races x 2 genders are drawn so that the
generator serves some groups worse (an off-centre mean and collapsed diversity for the
groups it saw least), which the metrics should then reveal. The full simulator of the
analytical model lives in ``faceaudit.simulate``; this is its smallest cousin.
"""

from __future__ import annotations

import itertools

import numpy as np

RACES = ("Asian", "Black", "Indian", "White")
GENDERS = ("man", "woman")
# Training share of each race in the simulated generator's data (White-heavy, as web data).
TRAINING_SHARE = {"Asian": 0.10, "Black": 0.12, "Indian": 0.06, "White": 0.72}


def simulated_embeddings(seed: int = 0, *, per_group: int = 250, dim: int = 64):
    """Return ``(real, real_groups, fake, fake_groups)`` with ``race x gender`` labels."""
    rng = np.random.default_rng(seed)
    spectrum = 1.0 / np.arange(1, dim + 1) ** 0.5
    real, fake, real_lab, fake_lab = [], [], [], []
    for race, gender in itertools.product(RACES, GENDERS):
        centre = rng.normal(size=dim) * 0.8
        share = TRAINING_SHARE[race]
        # Less data: larger mean error and more diversity lost (shrinkage to the pool).
        offset = rng.normal(size=dim) * 0.25 / np.sqrt(share * 10)
        keep = 1.0 - 0.4 * (1.0 - share)
        real.append(centre + rng.normal(size=(per_group, dim)) * np.sqrt(spectrum))
        fake.append(centre + offset + keep * rng.normal(size=(per_group, dim)) * np.sqrt(spectrum))
        label = f"{race} {gender}"
        real_lab += [label] * per_group
        fake_lab += [label] * per_group
    return np.concatenate(real), np.array(real_lab), np.concatenate(fake), np.array(fake_lab)
