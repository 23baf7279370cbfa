"""Simulation-based calibration of the selection model (``faceaudit explain``).

Fixes a design like a small audit's (target populations of a simulated world, per-group
standard errors of FD and of same-group verification, impostor mixtures of invented and
celebrity identities), then repeatedly draws every parameter from the model's prior and
audit results from its likelihood, refits with NUTS, and records

* the *coverage* of central intervals: how often they contain the value the data were
  simulated with (nominal within Monte Carlo error means the intervals are honest);
* the *rank* of the truth among thinned posterior draws, whose histogram is uniform when
  the sampler and the model agree (Talts et al. 2018);

for each scalar parameter family: effective shares, transfer, log shrinkage, diversity and
source-shift magnitudes. Writes JSON and a rank-histogram figure.

    python experiments/selection_calibration.py --fits 60 --out experiments/out
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer import MCMC, NUTS, Predictive

from faceaudit import core
from faceaudit.io import atomic_write_bytes, atomic_write_text
from faceaudit.models.selection import SelectionDesign, VerificationDesign, selection_model
from faceaudit.simulate import SimulationConfig, draw_world

FAMILIES = ("shares", "transfer", "log_shrinkage", "diversity", "shift")
RANK_DRAWS = 99  # thinned posterior draws per rank: ranks take 100 values


def calibration_design(seed: int = 0, dim: int = 8, fd_se: float = 0.04, verification_se: float = 0.02):
    """The fixed design: a simulated world's targets (2 races x 2 genders), audit-sized SEs."""
    config = SimulationConfig(races=("Asian", "White"), genders=("man", "woman"), race_shares=(0.15, 0.85), dim=dim)
    world = draw_world(config, np.random.default_rng(seed))
    g = len(world.labels)
    directions = np.linalg.qr(np.random.default_rng(seed).normal(size=(dim, g)))[0].T
    target = core.TargetWorld(world.world.means, world.world.covs, jnp.zeros_like(world.world.means))
    # 6 invented and 2 celebrity identities of 3 images each, as in a small audit.
    n = np.array([18.0, 6.0])
    pairs = np.outer(n, n) - np.diag([6 * 9.0, 2 * 9.0])
    verification = VerificationDesign(dim, float(world.identity.within), jnp.asarray(world.identity.between),
                                      jnp.broadcast_to(jnp.asarray(pairs), (1, g, 2, 2)),
                                      jnp.full((1, g), verification_se), jnp.ones((1, g), bool))
    return SelectionDesign(target.means, target.covs, jnp.asarray(directions), float(config.training_size),
                           config.length_scale, jnp.full((1, g), fd_se), core.target_roots(target),
                           verification=verification)


def _scalars(sample: dict) -> dict[str, np.ndarray]:
    """Each family as ``(..., k)`` scalars (the leading axes are draws, if any)."""
    out = {}
    for name in FAMILIES:
        value = np.asarray(sample[name])
        if name == "shares":  # (..., J, G)
            value = value.reshape(value.shape[:-2] + (-1,))
        elif name in ("transfer", "log_shrinkage"):  # shared scalars
            value = value[..., None]
        out[name] = value  # diversity (..., J), shift (..., G)
    return out


def calibrate(fits: int, level: float = 0.9, seed: int = 0, samples: int = 300, warmup: int = 300,
              dim: int = 8) -> dict:
    design = calibration_design(seed, dim)
    prior = Predictive(selection_model, num_samples=fits)(jax.random.key(seed), design)
    # One MCMC object with traced arguments compiles once for all fits.
    mcmc = MCMC(NUTS(selection_model, target_accept_prob=0.9), num_warmup=warmup, num_samples=samples,
                num_chains=2, chain_method="vectorized", progress_bar=False, jit_model_args=True)
    tail = (1 - level) / 2
    hits = {name: [] for name in FAMILIES}
    ranks = {name: [] for name in FAMILIES}
    divergences = 0
    for i in range(fits):
        mcmc.run(jax.random.key(seed + 1000 + i), design, fd=prior["fd"][i], verification=prior["verification"][i])
        divergences += int(np.sum(np.asarray(mcmc.get_extra_fields()["diverging"])))
        draws = _scalars(mcmc.get_samples())
        truth = _scalars({name: prior[name][i] for name in FAMILIES})
        thin = np.linspace(0, 2 * samples - 1, RANK_DRAWS).astype(int)
        for name in FAMILIES:
            lo, hi = np.quantile(draws[name], [tail, 1 - tail], axis=0)
            hits[name].extend(((lo <= truth[name]) & (truth[name] <= hi)).tolist())
            ranks[name].extend(np.sum(draws[name][thin] < truth[name], axis=0).tolist())
        print(f"fit {i + 1}/{fits}: coverage so far "
              + ", ".join(f"{k} {np.mean(v):.2f}" for k, v in hits.items()), flush=True)
    families = {}
    for name in FAMILIES:
        k = len(hits[name])
        counts = np.histogram(ranks[name], bins=10, range=(0, RANK_DRAWS + 1))[0]
        expected = k / 10
        families[name] = {"intervals": k, "coverage": float(np.mean(hits[name])),
                          "mc_se": float(np.sqrt(level * (1 - level) / k)), "rank_histogram": counts.tolist(),
                          "rank_chi2": float(np.sum((counts - expected) ** 2 / expected))}
    every = [h for name in FAMILIES for h in hits[name]]
    return {"level": level, "fits": fits, "samples": samples, "warmup": warmup, "dim": dim,
            "coverage": float(np.mean(every)), "intervals": len(every),
            "mc_se": float(np.sqrt(level * (1 - level) / len(every))), "divergences": divergences,
            "families": families, "ranks": {k: list(map(int, v)) for k, v in ranks.items()}}


def plot(result: dict) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(FAMILIES), figsize=(3.0 * len(FAMILIES), 2.8), sharey=False)
    for ax, name in zip(axes, FAMILIES):
        fam = result["families"][name]
        ax.bar(np.arange(10), fam["rank_histogram"], width=0.9, color="#4c72b0")
        ax.axhline(fam["intervals"] / 10, color="k", lw=1, ls="--")
        ax.set_title(f"{name}\ncoverage {fam['coverage']:.2f} (nominal {result['level']:.2f})", fontsize=9)
        ax.set_xticks([])
        ax.set_xlabel("rank of the truth (deciles)", fontsize=8)
    fig.suptitle(f"Selection model SBC: {result['fits']} fits, uniform ranks = calibrated", fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def main(args):
    result = calibrate(args.fits, args.level, args.seed, args.samples, args.warmup, args.dim)
    summary = {k: v for k, v in result.items() if k != "ranks"}
    print(json.dumps(summary, indent=1))
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(args.out) / "selection_calibration.json", json.dumps(result, indent=2))
        atomic_write_bytes(Path(args.out) / "selection_calibration.png", plot(result))
    return result


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--fits", type=int, default=60)
    p.add_argument("--level", type=float, default=0.9)
    p.add_argument("--samples", type=int, default=300)
    p.add_argument("--warmup", type=int, default=300)
    p.add_argument("--dim", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None)
    return p.parse_args(argv)


if __name__ == "__main__":
    main(parse())
