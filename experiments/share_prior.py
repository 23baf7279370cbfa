"""Does `explain` recover a dominant group's training share? The shares' prior on skewed worlds.

    python experiments/share_prior.py --out benchmarks/results

Real training sets are far from uniform (LAION-like: one race 60-80% of the faces). For
worlds with one race at ``--skews`` of the training data (the rest split evenly, genders
evenly within a race), each drawn with ``--seeds`` seeds, the audit is simulated and
measured once and then explained with each Dirichlet concentration in
``--concentrations``. The table records, per concentration, how often the 90% equal-tailed
posterior interval of a group's effective share covers the true share, the mean error of
the posterior mean share, and the same for the dominant race's groups alone (where a
prior that pulls toward uniform shows first).

``--inputs`` finds where coverage is lost: besides the measured files (``measured``),
explain can be given the simulator's true FD between the realised generator and the target
population, projected into the audit space the measure stage estimated (``true-fd``;
standard errors kept), and the projected population means and covariances in place of the
reference sample's as well (``true-fd-and-targets``).

Every world's fits are appended to ``share_prior.fits.jsonl`` together; a rerun skips
finished worlds. Each (skew, seed) world has its own simulation seed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from faceaudit import runtime

LEVEL = 0.9


def skewed_shares(n_races: int, dominant: float) -> tuple[float, ...]:
    rest = (1.0 - dominant) / (n_races - 1)
    return tuple([rest] * (n_races - 1) + [dominant])


def world_seed(skew: float, seed: int) -> int:
    """The simulation seed of one world. Distinct across skews: with the plain ``seed``
    every skew drew the same noise (the same embeddings up to the shares), so its worlds'
    misses were one miss counted once per skew."""
    return 1000 * seed + round(1000 * skew)


# What explain is given: the measure stage's files, or (to find where coverage is lost)
# the same files with the simulator's values put in their place.
INPUTS = ("measured", "true-fd", "true-fd-and-targets")


def _with_true_values(folder: Path, inputs: str) -> Path:
    """A copy of ``folder`` whose per-group ``fd_audit`` is the FD between the realised
    generator and the target population projected into the audit space the measure stage
    estimated (its standard errors kept), and with ``true-fd-and-targets`` whose reference
    means and covariances in ``audit_space.npz`` are the population's, projected alike."""
    import jax.numpy as jnp
    import pandas as pd

    from faceaudit import core
    from faceaudit.tables.simulation import World

    if inputs == "measured":
        return folder
    copy = folder.parent / f"{folder.name}-{inputs}"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(folder, copy)
    world = World.from_npz(folder / "world.npz")
    generator = json.loads((folder / "truth.json").read_text())["generator"]
    with np.load(folder / "audit_space.npz") as z:
        space = dict(z)
    groups = [str(g) for g in space["groups"]]
    rows = [world.labels.index(g) for g in groups]
    basis, centre = space["basis"], space["centre"]

    def project(means, covs):
        return (np.asarray(means)[rows] - centre) @ basis, np.einsum("dk,gde,el->gkl", basis, np.asarray(covs)[rows], basis)

    target_means, target_covs = project(world.world.means, world.world.covs)
    gen_means, gen_covs = project(generator["means"], generator["covs"])
    true_fd = {g: float(core.gaussian_frechet(*map(jnp.asarray, (gen_means[i], gen_covs[i], target_means[i], target_covs[i]))))
               for i, g in enumerate(groups)}
    metrics = pd.read_parquet(copy / "metrics.parquet")
    fd_rows = (metrics["metric"] == "fd_audit") & (metrics["group"] != "all") & (metrics["edit"] == "")
    metrics.loc[fd_rows, "value"] = metrics.loc[fd_rows, "group"].map(true_fd)
    metrics.to_parquet(copy / "metrics.parquet")
    if inputs == "true-fd-and-targets":
        np.savez(copy / "audit_space.npz", **{**space, "reference_means": target_means, "reference_covs": target_covs})
    return copy


def fit_world(skew: float, seed: int, concentrations, draws: int, work: Path, inputs=("measured",)) -> list[dict]:
    from faceaudit.files.io import read_netcdf
    from faceaudit.pipeline import run_stage
    from faceaudit.stages import explain, measure, simulate
    from faceaudit.tables.simulation import SimulationConfig, World

    config = SimulationConfig(race_shares=skewed_shares(len(SimulationConfig.races), skew))
    measured = work / f"skew{skew}-seed{seed}"
    run_stage(measured, simulate, simulate.Settings(world_seed(skew, seed), config))
    run_stage(measured, measure, measure.Settings())
    world = World.from_npz(measured / "world.npz")
    truth = dict(zip(world.labels, np.asarray(world.mix.shares).tolist()))
    dominant = config.races[-1]
    rows = []
    for given, alpha in ((given, alpha) for given in inputs for alpha in concentrations):
        folder = _with_true_values(measured, given)
        run_stage(folder, explain, explain.Settings(float(config.training_size), draws=draws, chains=2, seed=seed,
                                                    share_concentration=alpha))
        post = read_netcdf(folder / "training_mix.nc", inference_data=True).posterior["shares"]
        groups = [str(g) for g in post["group"].values]
        draws_ = post.isel(generator=0).stack(sample=("chain", "draw")).transpose("sample", "group").values
        low, high = np.quantile(draws_, [(1 - LEVEL) / 2, (1 + LEVEL) / 2], axis=0)
        true = np.array([truth[g] for g in groups])
        rows.append({"skew": skew, "seed": seed, "world_seed": world_seed(skew, seed), "inputs": given,
                     "concentration": alpha, "groups": groups, "truth": true.tolist(),
                     "mean": draws_.mean(0).tolist(), "low": low.tolist(), "high": high.tolist(),
                     "covered": ((low <= true) & (true <= high)).tolist(),
                     "dominant": [g.startswith(dominant) for g in groups]})
    return rows


def summarise(rows: list[dict]) -> dict:
    """Per ``inputs`` and concentration: coverage, overall and by dominance, mean errors."""
    out = {}
    settings = sorted({(r.get("inputs", "measured"), r["concentration"]) for r in rows},
                      key=lambda s: (INPUTS.index(s[0]), s[1]))
    for given, alpha in settings:
        mine = [r for r in rows if r.get("inputs", "measured") == given and r["concentration"] == alpha]
        covered = np.concatenate([r["covered"] for r in mine])
        dom = np.concatenate([r["dominant"] for r in mine])
        error = np.concatenate([np.subtract(r["mean"], r["truth"]) for r in mine])
        out[f"{given} {alpha}"] = {
            "inputs": given, "concentration": alpha,
            "worlds": len({r.get("world_seed", (r["skew"], r["seed"])) for r in mine}),
            "fits": len(mine), "intervals": int(covered.size), "coverage": float(covered.mean()),
            "coverage_dominant": float(covered[dom].mean()), "coverage_rare": float(covered[~dom].mean()),
            "mean_error_dominant": float(error[dom].mean()), "mean_error_rare": float(error[~dom].mean()),
            "mc_se": float(np.sqrt(LEVEL * (1 - LEVEL) / covered.size)),
        }
    return out


def _read_checkpoint(path: Path) -> list[dict]:
    """Finished fits; a last line a kill cut off is dropped (its world is refitted)."""
    rows = []
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break
    worlds = {}
    for r in rows:
        worlds.setdefault((r["skew"], r["seed"]), []).append(r)
    # A world counts as finished only with all its fits (they are written together).
    width = max((len(v) for v in worlds.values()), default=0)
    return [r for v in worlds.values() if len(v) == width for r in v]


def main(args) -> dict:
    from faceaudit.files.io import atomic_write_text, write_json

    args.out.mkdir(parents=True, exist_ok=True)
    checkpoint = args.out / "share_prior.fits.jsonl"
    done = _read_checkpoint(checkpoint)
    atomic_write_text(checkpoint, "".join(json.dumps(r) + "\n" for r in done))  # without a cut-off line
    finished = {(r["skew"], r["seed"]) for r in done}
    with tempfile.TemporaryDirectory() as work:
        for skew in args.skews:
            for seed in range(args.seeds):
                if (skew, seed) in finished:
                    continue
                rows = fit_world(skew, seed, args.concentrations, args.draws, Path(work), args.inputs)
                with open(checkpoint, "a") as fh:  # one line per fit, appended once the world is done
                    fh.write("".join(json.dumps(r) + "\n" for r in rows))
                done.extend(rows)
                print(json.dumps(summarise(done)), flush=True)
    result = {"level": LEVEL, "skews": args.skews, "seeds": args.seeds, "draws": args.draws,
              "by_concentration": summarise(done)}
    write_json(args.out / "share_prior.json", result)
    lines = ["| explain given | concentration | worlds | intervals | coverage (all, MC SE) | dominant race | other races | "
             "mean error, dominant | mean error, others |", "|---|---|---|---|---|---|---|---|---|"]
    for s in result["by_concentration"].values():
        lines.append(f"| {s['inputs']} | {s['concentration']} | {s['worlds']} | {s['intervals']} | {s['coverage']:.2f} "
                     f"({s['mc_se']:.2f}) | {s['coverage_dominant']:.2f} | {s['coverage_rare']:.2f} | "
                     f"{s['mean_error_dominant']:+.3f} | {s['mean_error_rare']:+.3f} |")
    atomic_write_text(args.out / "share_prior.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return result


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--skews", type=lambda s: [float(v) for v in s.split(",")], default=[0.6, 0.7, 0.8])
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--concentrations", type=lambda s: [float(v) for v in s.split(",")], default=[1.0, 0.5])
    p.add_argument("--draws", type=int, default=200)
    p.add_argument("--inputs", type=lambda s: s.split(","), default=["measured"],
                   help=f"what explain is given, comma-separated from {', '.join(INPUTS)}: the measured files, or "
                        "with the simulator's true projected FD (and target populations) in their place")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = p.parse_args(argv)
    unknown = [i for i in args.inputs if i not in INPUTS]
    if unknown:
        p.error(f"--inputs: unknown {unknown}; choose from {', '.join(INPUTS)}")
    return args


if __name__ == "__main__":
    runtime.configure()
    main(parse())
