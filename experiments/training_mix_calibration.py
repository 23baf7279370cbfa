"""Simulation-based calibration of the training-mix model (``faceaudit explain``).

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

    python experiments/training_mix_calibration.py --fits 60 --out experiments/out
"""

from __future__ import annotations

import argparse
import io
import json
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.diagnostics import split_gelman_rubin
from numpyro.infer import MCMC, Predictive

from faceaudit import core
from faceaudit.files.io import atomic_write_bytes, atomic_write_text
from faceaudit.models.training_mix import (
    TrainingMixDesign,
    VerificationDesign,
    training_mix_kernel,
    training_mix_model,
)
from faceaudit.tables.simulation import SimulationConfig, draw_world

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
    return TrainingMixDesign(target.means, target.covs, jnp.asarray(directions), float(config.training_size),
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


def _fit_once(mcmc, design, prior, i: int, seed: int, level: float) -> dict:
    """One refit: per family, whether each central interval covers the truth and its rank."""
    mcmc.run(jax.random.key(seed + 1000 + i), design, fd=prior["fd"][i], verification=prior["verification"][i])
    by_chain = _scalars(mcmc.get_samples(group_by_chain=True))
    draws = _scalars(mcmc.get_samples())
    truth = _scalars({name: prior[name][i] for name in FAMILIES})
    thin = np.linspace(0, len(next(iter(draws.values()))) - 1, RANK_DRAWS).astype(int)
    tail = (1 - level) / 2
    record = {"fit": i, "divergences": int(np.sum(np.asarray(mcmc.get_extra_fields()["diverging"]))),
              "max_rhat": max(float(np.max(split_gelman_rubin(v))) for v in by_chain.values()),
              "hits": {}, "ranks": {}}
    for name in FAMILIES:
        lo, hi = np.quantile(draws[name], [tail, 1 - tail], axis=0)
        record["hits"][name] = ((lo <= truth[name]) & (truth[name] <= hi)).tolist()
        record["ranks"][name] = np.sum(draws[name][thin] < truth[name], axis=0).tolist()
    return record


def _read_checkpoint(path: Path | None, settings: dict) -> dict[int, dict]:
    """Fits already done by an earlier, interrupted run with the same settings."""
    if path is None or not path.is_file():
        return {}
    lines = path.read_text().splitlines()
    header = json.loads(lines[0]) if lines else {}
    if header != settings:
        raise ValueError(f"{path} was written with other settings ({header}, now {settings}): "
                         "delete it or pass the same settings")
    done = {}
    for line in lines[1:]:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line cut off by a kill: that fit is redone
            continue
        done[record["fit"]] = record
    return done


def calibrate(fits: int, level: float = 0.9, seed: int = 0, samples: int = 300, warmup: int = 300,
              dim: int = 8, checkpoint: Path | None = None) -> dict:
    """Run (or resume, from ``checkpoint``: one JSON line per finished fit) the SBC.

    Long runs need the checkpoint: XLA's CPU backend keeps allocating memory for compiled
    code over many MCMC runs in one process, and after ~20 fits here it failed with "LLVM
    compilation error: Cannot allocate memory". Rerunning the same command continues
    where the last process stopped.
    """
    settings = {"fits": fits, "level": level, "seed": seed, "samples": samples, "warmup": warmup, "dim": dim}
    done = _read_checkpoint(checkpoint, settings)
    if checkpoint is not None:
        # Rewritten without any line a kill cut off, so the next append starts a fresh line.
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(checkpoint, "".join(json.dumps(r) + "\n" for r in [settings, *done.values()]))
    if len(done) < fits:
        design = calibration_design(seed, dim)
        prior = Predictive(training_mix_model, num_samples=fits)(jax.random.key(seed), design)
        # One MCMC object with traced arguments compiles once for all fits.
        mcmc = MCMC(training_mix_kernel(design), num_warmup=warmup, num_samples=samples,
                    num_chains=2, chain_method="vectorized", progress_bar=False, jit_model_args=True)
    for i in range(fits):
        if i not in done:
            done[i] = _fit_once(mcmc, design, prior, i, seed, level)
            if checkpoint is not None:
                with open(checkpoint, "a") as f:
                    f.write(json.dumps(done[i]) + "\n")
                    f.flush()
                    os.fsync(f.fileno())
        so_far = [done[j] for j in sorted(done) if j <= i]
        print(f"fit {i + 1}/{fits}: coverage so far " + ", ".join(
            f"{k} {np.mean([h for r in so_far for h in r['hits'][k]]):.2f}" for k in FAMILIES), flush=True)
    records = [done[i] for i in range(fits)]
    hits = {name: [h for r in records for h in r["hits"][name]] for name in FAMILIES}
    ranks = {name: [x for r in records for x in r["ranks"][name]] for name in FAMILIES}
    worst_rhat = np.array([r["max_rhat"] for r in records])
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
            "mc_se": float(np.sqrt(level * (1 - level) / len(every))),
            "divergences": int(sum(r["divergences"] for r in records)),
            "max_rhat": float(worst_rhat.max()), "fits_rhat_over_1.05": int(np.sum(worst_rhat > 1.05)),
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
    fig.suptitle(f"Training-mix model SBC: {result['fits']} fits, uniform ranks = calibrated", fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def main(args):
    checkpoint = args.out / "training_mix_calibration.fits.jsonl" if args.out else None
    result = calibrate(args.fits, args.level, args.seed, args.samples, args.warmup, args.dim, checkpoint)
    summary = {k: v for k, v in result.items() if k != "ranks"}
    print(json.dumps(summary, indent=1))
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(args.out) / "training_mix_calibration.json", json.dumps(result, indent=2))
        atomic_write_bytes(Path(args.out) / "training_mix_calibration.png", plot(result))
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
