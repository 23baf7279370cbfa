"""Finite-sample bias of every distribution-shift number at audit sizes (design/metric-numerics.md).

    python experiments/fd_bias.py --draws 50 --out benchmarks/results

Gaussian reference and generated sets of known distributions (anisotropic spectrum
``1/(1+i)^0.8``, the generated spectrum scaled by 0.6..1.5, a mean shift of 0.02 per
coordinate), at the sizes of the metric-numerics table. Each row gives, as a share of
the truth, the mean error of the raw FD, the first-order bias-corrected FD and FD-infinity
(truth: the populations' FD projected on the draw's audit space, which is estimated as
the measure stage does, from a held-out half of the reference rows, the FD measured on the
other half) and of KID's unbiased MMD^2 (truth: the closed form), with the Monte Carlo
standard error of each.

``--groups G`` adds the held-out reference rows of ``G - 1`` further groups (of the same
distribution) to the rows that estimate the audit space, as in an audit of ``G`` groups.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jax
import numpy as np

from faceaudit import core
from faceaudit.files.io import atomic_write_text, write_json
from faceaudit.tables.metrics import DistributionSettings, audit_space

ROWS = [(64, 200, 200), (256, 200, 200), (512, 200, 500), (512, 1000, 1000), (768, 300, 300)]


def populations(d):
    spectrum = 1.0 / (1.0 + np.arange(d)) ** 0.8
    return spectrum, spectrum * np.linspace(0.6, 1.5, d), np.full(d, 0.02)


def row(d, n_x, n_y, draws, seed, groups: int = 1) -> dict:
    s_x, s_y, shift = populations(d)
    fd_true = float(core.gaussian_frechet(np.zeros(d), np.diag(s_x), shift, np.diag(s_y)))
    mmd_true = float(core.gaussian_mmd2(np.zeros(d), np.diag(s_x), shift, np.diag(s_y)))
    rng = np.random.default_rng(seed)
    errors = {k: [] for k in ("fd", "fd_unbiased", "fd_infinity", "fd_audit", "mmd2")}
    audit_truth = []
    for i in range(draws):
        x = rng.normal(size=(n_x, d)) * np.sqrt(s_x)
        y = rng.normal(size=(n_y, d)) * np.sqrt(s_y) + shift
        errors["fd"].append(float(core.frechet_distance(x, y)) - fd_true)
        errors["fd_unbiased"].append(float(core.frechet_distance(x, y, unbiased=True)) - fd_true)
        errors["fd_infinity"].append(float(core.fd_infinity(jax.random.key(i), x, y).value) - fd_true)
        # The measure stage's audit space: the top directions of a held-out half of every
        # group's reference rows (this group's and, with --groups, the others'); the FD is
        # measured on the other half of this group's reference rows.
        others = [rng.normal(size=(n_x, d)) * np.sqrt(s_x) for _ in range(groups - 1)]
        space, rows = audit_space(np.concatenate([x, *others]), np.repeat(np.arange(groups), n_x), [n_y],
                                  DistributionSettings(metrics=("fd_audit",)), seed=i)
        measured = x[rows[:n_x]]
        b = space.basis
        truth = float(core.gaussian_frechet(np.zeros(b.shape[1]), b.T @ np.diag(s_x) @ b, b.T @ shift, b.T @ np.diag(s_y) @ b))
        audit_truth.append(truth)
        errors["fd_audit"].append(float(core.frechet_distance(space.project(measured), space.project(y), unbiased=True))
                                  - truth)
        errors["mmd2"].append(float(core.mmd2(x, y)) - mmd_true)
    truths = {"fd": fd_true, "fd_unbiased": fd_true, "fd_infinity": fd_true, "fd_audit": float(np.mean(audit_truth)),
              "mmd2": mmd_true}
    out = {"d": d, "n_x": n_x, "n_y": n_y, "draws": draws, "k_audit": int(b.shape[1]), "groups": groups}
    for name, e in errors.items():
        e = np.asarray(e)
        out[name] = {"truth": truths[name], "bias": float(e.mean()), "se": float(e.std() / np.sqrt(draws)),
                     "relative_bias": float(e.mean() / truths[name]),
                     "relative_se": float(e.std() / np.sqrt(draws) / truths[name]),
                     "within_4_se": bool(abs(e.mean()) <= 4 * e.std() / np.sqrt(draws))}
    return out


def markdown(rows) -> str:
    names = ("fd", "fd_unbiased", "fd_infinity", "fd_audit", "mmd2")
    lines = ["| d | n per set | k (audit space) | " + " | ".join(names) + " |", "|---|---|---|" + "---|" * len(names)]
    for r in rows:
        cells = [f"{100 * r[n]['relative_bias']:+.0f}% ({100 * r[n]['relative_se']:.0f}%)" for n in names]
        lines.append(f"| {r['d']} | {r['n_x']} / {r['n_y']} | {r['k_audit']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\nBias as a share of the truth (Monte Carlo SE in brackets).\n"


def main(args: argparse.Namespace) -> list[dict]:
    out = Path(args.out)
    rows = [row(d, nx, ny, args.draws, args.seed, args.groups) for d, nx, ny in (args.rows or ROWS)]
    for r in rows:
        print(json.dumps({k: (v if not isinstance(v, dict) else round(v["relative_bias"], 3)) for k, v in r.items()}),
              flush=True)
    stem = "fd_bias" if args.groups == 1 else f"fd_bias_{args.groups}groups"
    write_json(out / f"{stem}.json", rows)
    atomic_write_text(out / f"{stem}.md", markdown(rows))
    return rows


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--draws", type=int, default=50)
    p.add_argument("--rows", type=lambda s: [tuple(int(v) for v in r.split("x")) for r in s.split(",")], default=None,
                   help="rows as DxNXxNY,... (default: the metric-numerics table)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--groups", type=int, default=1, help="groups whose pooled rows estimate the audit space")
    p.add_argument("--out", default="benchmarks/results")
    return p.parse_args(argv)


if __name__ == "__main__":
    main(parse())
