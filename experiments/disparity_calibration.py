"""Simulation-based calibration of the binary disparity model.

Draws group effects, edit effects and outcomes from the model's prior, refits, and counts
how often the central interval of each group's ``cell_mean`` covers the value it was
simulated with. Nominal coverage within Monte Carlo error means the intervals are honest.

    python experiments/disparity_calibration.py --fits 100 --out experiments/out
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jax
import numpy as np
from numpyro.infer import MCMC, NUTS, Predictive

from faceaudit.files.io import atomic_write_text
from faceaudit.models.disparity import Design, binary_model


def simulated_design(rng, groups=4, per_group=60, attributes=3):
    cell = np.repeat(np.arange(groups), per_group)
    attr = rng.integers(0, attributes, cell.size)
    return Design(
        (jax.numpy.asarray(cell),), (groups,), jax.numpy.asarray(cell), groups,
        jax.numpy.asarray(attr), attributes, jax.numpy.zeros(cell.size, int), 1,
    )


def coverage(fits: int, level: float = 0.9, seed: int = 0, samples: int = 300, warmup: int = 300) -> dict:
    rng = np.random.default_rng(seed)
    design = simulated_design(rng)
    prior = Predictive(binary_model, num_samples=fits)(jax.random.key(seed), design)
    kernel = NUTS(binary_model, target_accept_prob=0.9)
    # The data as arguments (jit_model_args): one compiled sampler serves every fit.
    mcmc = MCMC(kernel, num_warmup=warmup, num_samples=samples, num_chains=1, progress_bar=False, jit_model_args=True)
    hits = []
    tail = (1 - level) / 2
    for i in range(fits):
        mcmc.run(jax.random.key(seed + 1000 + i), design, y=prior["y"][i])
        draws = np.asarray(mcmc.get_samples()["cell_mean"])
        lo, hi = np.quantile(draws, [tail, 1 - tail], axis=0)
        truth = np.asarray(prior["cell_mean"][i])
        hits.extend(((lo <= truth) & (truth <= hi)).tolist())
    rate = float(np.mean(hits))
    return {"level": level, "intervals": len(hits), "coverage": rate, "mc_se": float(np.sqrt(level * (1 - level) / len(hits)))}


def main(args):
    result = coverage(args.fits, args.level, args.seed, args.samples, args.warmup)
    print(json.dumps(result))
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(args.out) / "disparity_calibration.json", json.dumps(result, indent=2))
    return result


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--fits", type=int, default=100)
    p.add_argument("--level", type=float, default=0.9)
    p.add_argument("--samples", type=int, default=300)
    p.add_argument("--warmup", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None)
    return p.parse_args(argv)


if __name__ == "__main__":
    main(parse())
