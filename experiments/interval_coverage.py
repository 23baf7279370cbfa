"""Coverage of faceaudit's per-group intervals, and the bias of its per-group estimates,
over simulated worlds with a known truth.

    python experiments/interval_coverage.py --worlds 400 --out benchmarks/results

For each dimension ``d`` and group size ``n`` a reference set ``N(0, S)`` and a generated
set ``N(delta, S')`` are drawn ``--worlds`` times (``S`` an anisotropic spectrum
``1/(1+i)^0.8``, ``S'`` it scaled by 0.8..1.2, a mean shift of ``0.3/sqrt(d)`` per
coordinate). Every per-group metric is evaluated as ``by_group`` evaluates it, with every
interval type it offers, and the table records how often the 95% interval covers the truth:

* closed forms for the population FD (``fd_unbiased``'s estimand) and MMD^2 (``mmd2``);
* the FD of the projected Gaussians for ``fd_audit`` (per world: its audit space is
  estimated from a held-out half of the world's reference rows, as the measure stage
  does, and the FD measured on the other half);
* ``E[T_n]`` by Monte Carlo (``--truth-draws`` independent worlds) for the raw FD and the
  size-dependent metrics (Vendi, PRDC), whose estimand is defined at the size ``n``.

A second part draws two groups with *equal* truth and sizes ``n_small`` vs ``n_large``
(100 vs 1,000 by default) and records how often the 95% interval of their difference
covers 0: a disparity manufactured by group size shows up as a low share.

Every finished cell is appended to ``interval_coverage.cells.jsonl``; a rerun (after a
kill) skips finished cells. The summary is ``interval_coverage.json`` and a markdown table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import numpy as np

from faceaudit import core
from faceaudit.files.io import atomic_write_text, write_json
from faceaudit.tables.metrics import DistributionSettings, audit_space

LEVEL = 0.95
INTERVALS = {  # what each metric offers (bootstrap intervals only where no row duplicates distort it)
    "mmd2": ("jackknife", "basic", "percentile", "bca"),
    "fd_unbiased": ("jackknife", "basic", "percentile", "bca"),
    "fd_audit": ("jackknife",),
    "fd": ("jackknife",),
    "vendi": ("jackknife",),
    "precision": ("jackknife",),
    "recall": ("jackknife",),
    "density": ("jackknife",),
    "coverage": ("jackknife",),
}
MC_TRUTH = ("fd", "vendi", "precision", "recall", "density", "coverage")


def world(d: int):
    spectrum = 1.0 / (1.0 + np.arange(d)) ** 0.8
    return spectrum, spectrum * np.linspace(0.8, 1.2, d), np.full(d, 0.3 / np.sqrt(d))


def draw(rng, n, d):
    s_x, s_y, shift = world(d)
    return rng.normal(size=(n, d)) * np.sqrt(s_x), rng.normal(size=(n, d)) * np.sqrt(s_y) + shift


def _value(metric, x, y, key):
    labels_x, labels_y = np.zeros(len(x), int), np.zeros(len(y), int)
    if metric == "vendi":
        return core.by_group("vendi", y, labels_y, key=key)
    return core.by_group(metric, x, labels_x, y, labels_y, key=key)


def plain_value(metric, x, y):
    """The statistic on one sample, as the estimate at that sample's size."""
    if metric == "fd":
        return float(core.frechet_distance(x, y))
    if metric == "vendi":
        return float(core.vendi_score(y))
    return float(getattr(core.prdc(x, y), metric))


def mc_truth(metric, n, d, draws, seed):
    rng = np.random.default_rng(10_000 + seed)
    values = [plain_value(metric, *draw(rng, n, d)) for _ in range(draws)]
    return float(np.mean(values)), float(np.std(values) / np.sqrt(draws))


def closed_truth(metric, d):
    s_x, s_y, shift = world(d)
    if metric == "mmd2":
        return float(core.gaussian_mmd2(np.zeros(d), np.diag(s_x), shift, np.diag(s_y)))
    return float(core.gaussian_frechet(np.zeros(d), np.diag(s_x), shift, np.diag(s_y)))


def held_out_space(x, labels, seed):
    """The measure stage's audit space (``tables.metrics.audit_space``): spanned by half of
    each group's reference rows, ``k`` from the other half, which the FD is measured on."""
    return audit_space(x, labels, [], DistributionSettings(metrics=("fd_audit",)), seed)


def coverage_cell(metric, interval, n, d, worlds, seed, truth=None) -> dict:
    rng = np.random.default_rng(seed)
    s_x, s_y, shift = world(d)
    covered, estimates, ses, truths = 0, [], [], []
    start = time.perf_counter()
    for w in range(worlds):
        x, y = draw(rng, n, d)
        key = jax.random.key(w)
        if metric == "fd_audit":
            space, measured = held_out_space(x, np.zeros(n, int), w)
            b = space.basis  # FD is translation invariant: the centre drops out
            t = float(core.gaussian_frechet(np.zeros(b.shape[1]), b.T @ np.diag(s_x) @ b, b.T @ shift, b.T @ np.diag(s_y) @ b))
            est = core.by_group("fd_unbiased", space.project(x[measured]), np.zeros(measured.sum(), int),
                                space.project(y), np.zeros(n, int), key=key)
        else:
            t = truth
            est = (_value(metric, x, y, key) if interval == "jackknife" else
                   core.by_group(metric, x, np.zeros(n, int), y, np.zeros(n, int), key=key, interval=interval,
                                 num_bootstrap=200))
        covered += float(est.low[0]) <= t <= float(est.high[0])
        estimates.append(float(est.estimate[0]))
        ses.append(float(est.se[0]))
        truths.append(t)
    estimates, truths = np.asarray(estimates), np.asarray(truths)
    return {"metric": metric, "interval": interval, "n": n, "d": d, "worlds": worlds, "covered": covered,
            "coverage": covered / worlds, "truth": float(np.mean(truths)),
            "bias": float(np.mean(estimates - truths)), "bias_se": float(np.std(estimates - truths) / np.sqrt(worlds)),
            "sd": float(np.std(estimates)), "mean_se": float(np.mean(ses)), "seconds": time.perf_counter() - start}


PRDC = ("precision", "recall", "density", "coverage")


def difference_cells(metrics, n_small, n_large, d, worlds, seed) -> list[dict]:
    """Two groups with equal truth and unequal sizes: does the difference's interval cover 0?

    One record per metric. The PRDC metrics share one evaluation per world (one k-NN pass
    gives all four, as ``by_group`` computes them for the audit: the same numbers as one
    metric at a time, a quarter of the time)."""
    rng = np.random.default_rng(seed)
    labels = np.array(["small"] * n_small + ["large"] * n_large)
    covered = dict.fromkeys(metrics, 0)
    diffs, ses = {m: [] for m in metrics}, {m: [] for m in metrics}
    for w in range(worlds):
        x, y = draw(rng, n_small + n_large, d)
        key = jax.random.key(w)
        if set(metrics) <= set(PRDC):
            found = core.by_group(core.metrics.PRDC(which=tuple(metrics)), x, labels, y, labels, key=key)
            found = found if len(metrics) > 1 else {metrics[0]: found}  # one output comes back bare
        elif len(metrics) != 1:
            raise ValueError(f"only the PRDC metrics are evaluated together, got {metrics}")
        elif metrics[0] == "fd_audit":
            space, measured = held_out_space(x, labels, w)
            found = {"fd_audit": core.by_group("fd_unbiased", space.project(x[measured]), labels[measured],
                                               space.project(y), labels, key=key)}
        elif metrics[0] == "vendi":
            found = {"vendi": core.by_group("vendi", y, labels, key=key)}
        else:
            found = {metrics[0]: core.by_group(metrics[0], x, labels, y, labels, key=key)}
        for metric in metrics:
            c = core.group_contrast(found[metric], "large", "small")
            covered[metric] += c.low <= 0.0 <= c.high
            diffs[metric].append(c.difference)
            ses[metric].append(c.se)
    return [{"metric": m, "n_small": n_small, "n_large": n_large, "d": d, "worlds": worlds, "covered": covered[m],
             "coverage_of_zero": covered[m] / worlds, "mean_difference": float(np.mean(diffs[m])),
             "difference_se": float(np.std(diffs[m]) / np.sqrt(worlds)), "mean_se": float(np.mean(ses[m]))}
            for m in metrics]


def _done(path: Path) -> dict:
    cells = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line a kill cut off: that cell is redone
            cells[record["id"]] = record
    return cells


def main(args: argparse.Namespace) -> dict:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = out / "interval_coverage.cells.jsonl"
    done = _done(checkpoint)
    atomic_write_text(checkpoint, "".join(json.dumps(r) + "\n" for r in done.values()))
    metrics = [m for m in INTERVALS if m in args.metrics.split(",")]
    jobs = []
    for d in args.dims:
        for n in args.sizes:
            for metric in metrics:
                for interval in INTERVALS[metric]:
                    if interval != "jackknife" and args.jackknife_only:
                        continue
                    jobs.append(("coverage", metric, interval, n, d))
        together = tuple(m for m in metrics if m in PRDC)
        for group in [(m,) for m in metrics if m not in PRDC] + ([together] if together else []):
            jobs.append(("difference", group, "jackknife", (args.n_small, args.n_large), d))

    def cell_id(kind, metric, interval, n, d):
        return f"{kind}:{metric}:{interval}:{n}:{d}:{args.worlds}:{args.seed}"

    for kind, metric, interval, n, d in jobs:
        if kind == "coverage":
            if cell_id(kind, metric, interval, n, d) in done:
                continue
            truth, truth_se = None, 0.0
            if metric in MC_TRUTH:
                truth, truth_se = mc_truth(metric, n, d, args.truth_draws, args.seed)
            elif metric != "fd_audit":
                truth = closed_truth(metric, d)
            record = coverage_cell(metric, interval, n, d, args.worlds, args.seed, truth)
            record["truth_se"] = truth_se
            records = [record]
        else:
            missing = tuple(m for m in metric if cell_id(kind, m, interval, n, d) not in done)
            if not missing:
                continue
            records = difference_cells(missing, n[0], n[1], d, args.worlds, args.seed)
        for record in records:
            record["id"] = cell_id(kind, record["metric"], interval, n, d)
            done[record["id"]] = record
        with open(checkpoint, "a") as fh:  # a cell's records together: a kill redoes the whole cell
            fh.write("".join(json.dumps(r) + "\n" for r in records))
        for record in records:
            print(json.dumps(record), flush=True)
    cells = [done[c] for c in sorted(done)]
    summary = {"level": LEVEL, "worlds": args.worlds, "cells": cells}
    write_json(out / "interval_coverage.json", summary)
    atomic_write_text(out / "interval_coverage.md", markdown(cells))
    return summary


def grid(cells) -> str:
    """Coverage of every (metric, interval) at every (d, n) in one table: the README's view."""
    cover = {(c["metric"], c["interval"], c["d"], c["n"]): c for c in cells if "coverage" in c}
    columns = sorted({(d, n) for _, _, d, n in cover})
    rows = sorted({(m, i) for m, i, _, _ in cover}, key=lambda r: (list(INTERVALS).index(r[0]), INTERVALS[r[0]].index(r[1])))
    lines = ["| metric | interval | " + " | ".join(f"d = {d}, n = {n}" for d, n in columns) + " |",
             "|---|---|" + "---|" * len(columns)]
    for m, i in rows:
        found = [cover.get((m, i, d, n)) for d, n in columns]
        lines.append(f"| {m} | {i} | " + " | ".join(f"{c['coverage']:.3f}" + ("" if c["worlds"] >= 400 else f" ({c['worlds']})")
                                                  if c else "-" for c in found) + " |")
    return "\n".join(lines) + "\n\nShare of nominal 95% intervals that cover the truth (400 worlds; fewer in brackets).\n"


def markdown(cells) -> str:
    lines = ["| metric | interval | d | n | worlds | coverage (95%) | bias / truth | bias / mean SE | mean SE / SD |",
             "|---|---|---|---|---|---|---|---|---|"]
    for c in sorted((c for c in cells if "coverage" in c), key=lambda c: (c["d"], c["metric"], c["interval"], c["n"])):
        rel = c["bias"] / c["truth"] if c["truth"] else float("nan")
        lines.append(f"| {c['metric']} | {c['interval']} | {c['d']} | {c['n']} | {c['worlds']} | {c['coverage']:.3f} | "
                     f"{rel:+.1%} | {c['bias'] / c['mean_se']:+.2f} | {c['mean_se'] / c['sd']:.2f} |")
    lines += ["", "| metric | d | sizes | worlds | 95% interval of the difference covers 0 | mean difference (SE) | "
              "mean difference / mean SE |", "|---|---|---|---|---|---|---|"]
    for c in sorted((c for c in cells if "coverage_of_zero" in c), key=lambda c: (c["d"], c["metric"])):
        lines.append(f"| {c['metric']} | {c['d']} | {c['n_small']} vs {c['n_large']} | {c['worlds']} | "
                     f"{c['coverage_of_zero']:.3f} | {c['mean_difference']:.3g} ({c['difference_se']:.2g}) | "
                     f"{c['mean_difference'] / c['mean_se']:+.2f} |")
    return grid(cells) + "\n" + "\n".join(lines) + "\n"


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--worlds", type=int, default=400)
    p.add_argument("--sizes", type=lambda s: [int(v) for v in s.split(",")], default=[100, 300, 1000])
    p.add_argument("--dims", type=lambda s: [int(v) for v in s.split(",")], default=[32, 512])
    p.add_argument("--metrics", default=",".join(INTERVALS))
    p.add_argument("--n-small", type=int, default=100)
    p.add_argument("--n-large", type=int, default=1000)
    p.add_argument("--truth-draws", type=int, default=400)
    p.add_argument("--jackknife-only", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="benchmarks/results")
    return p.parse_args(argv)


if __name__ == "__main__":
    main(parse())
