"""A real-size audit's distribution metrics, timed end to end beside the floor its work sets.

Each case writes seeded Gaussian embeddings (float32, as encoders return them) for
``groups`` groups of ``n`` reference and ``n`` generated faces at width ``d``, then runs
``faceaudit metrics`` on them as a user would, in a fresh process (start-up, loading and
the printed table included), ``--repeats`` times. It records the median wall time, the
peak resident memory of the process (``wait4``'s ``ru_maxrss``) and the floor: the time
the operation counts of those metrics need at this machine's rates, measured in the same
run (float64 GEMM, a values-only eigensolve at the Vendi dual's width, one comparison pass
over a PRDC distance matrix, and the start-up of ``faceaudit metrics --help``).

    python benchmarks/scale.py --out benchmarks/results/scale.json        # the issue's cases
    python benchmarks/scale.py --quick --out /tmp/scale.json               # a smoke run

The table goes to ``scale.md`` beside ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.linalg

DEFAULT = "mmd2,fd_audit,precision,recall,density,coverage,vendi"
WITH_FDS = DEFAULT + ",fd,fd_unbiased"
POOLED_MAX_ROWS = 8192  # faceaudit.core._groups.POOLED_MAX_ROWS (not imported: no jax here)
BLOCKS, HALF_SAMPLES = 20, 20  # jackknife blocks; PRDC's random half-samples per set

# (groups, n per group and set, d, metrics, repeats): the cases, then the memory
# series at n = 10,000 with 2 and 8 groups (memory should follow one group, not all).
CASES = [
    (8, 1000, 768, DEFAULT, 3),
    (8, 1000, 768, WITH_FDS, 3),
    (8, 2500, 512, DEFAULT, 3),
    (2, 10000, 512, DEFAULT, 1),
    (8, 10000, 512, DEFAULT, 1),
]
QUICK = [(4, 300, 64, DEFAULT, 2)]


def write_world(folder: Path, groups: int, n: int, d: int, seed: int = 0) -> list[str]:
    """Reference and generated embeddings with a per-group shift, and their labels."""
    rng = np.random.default_rng(seed)
    labels = np.repeat([f"g{g}" for g in range(groups)], n)
    shift = np.repeat(np.linspace(0.0, 0.3, groups), n)[:, None] / math.sqrt(d)
    real = rng.normal(size=(groups * n, d)).astype(np.float32)
    fake = (rng.normal(size=(groups * n, d)) * 1.05 + shift).astype(np.float32)
    np.save(folder / "real.npy", real)
    np.save(folder / "fake.npy", fake)
    (folder / "groups.txt").write_text("\n".join(labels) + "\n")
    return [str(folder / "real.npy"), str(folder / "fake.npy"), "--reference-groups", str(folder / "groups.txt"),
            "--generated-groups", str(folder / "groups.txt")]


def run_cli(args: list[str]) -> tuple[float, int]:
    """Wall seconds and peak resident bytes of one ``faceaudit`` process."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "faceaudit", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"faceaudit {' '.join(args)} failed: {proc.stderr.read().decode()[-2000:]}")
    return wall, usage.ru_maxrss * 1024


def machine_rates(d: int) -> dict:
    """This machine's rates for the operations the metrics are made of (medians of 5)."""
    rng = np.random.default_rng(1)

    def median_time(fn, repeats=5):
        fn()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    a, b = rng.normal(size=(2000, d)), rng.normal(size=(2000, d))
    gemm = 2 * 2000 * 2000 * d / median_time(lambda: a @ b.T)
    dual = np.cov(rng.normal(size=(2 * d, d)), rowvar=False)
    eig = median_time(lambda: scipy.linalg.eigvalsh(dual, driver="evr", check_finite=False))
    dist, radius = rng.random((2000, 2000)), rng.random(2000)
    compare = 2000 * 2000 / median_time(lambda: (dist < radius[:, None]).any(axis=0))
    start = median_time(lambda: run_cli(["metrics", "--help"]), repeats=3)
    return {"gemm_flops_per_s": gemm, "eig_seconds": eig, "eig_width": d, "compares_per_s": compare,
            "start_seconds": start}


def floor_seconds(groups: int, n: int, d: int, metrics: str, rates: dict) -> dict:
    """Seconds the operation counts of one run need at ``rates``: the kernel, distance and
    scatter products, the Vendi eigensolves and one comparison pass per PRDC weighting."""
    asked = set(metrics.split(","))
    pooled = groups * n
    parts = math.ceil(pooled / POOLED_MAX_ROWS)
    flops, eigs, compares = 0.0, 0, 0.0
    if "mmd2" in asked:  # within-set kernels on and above the diagonal, the cross kernel whole
        flops += groups * 2 * d * (n * n / 2 + n * n / 2 + n * n)
        flops += parts * 2 * d * 2 * (pooled / parts) ** 2
    if asked & {"precision", "recall", "density", "coverage"}:
        flops += groups * 2 * d * 3 * n * n
        # the group, then each half-sample of one set against the whole other set
        compares += groups * (n * n + 2 * HALF_SAMPLES * (n / 2) * n)
    if "vendi" in asked:
        flops += groups * 2 * n * d * d
        eigs += groups * (1 + BLOCKS)
    if "fd_audit" in asked:
        flops += 2 * (pooled / 2) * d * d  # the audit space's scatter
    if asked & {"fd", "fd_unbiased"}:  # one scatter per set and group, one d x d spectrum per weighting
        flops += 2 * (groups + 1) * 2 * n * d * d
        eigs += (groups + 1) * (1 + 2 * BLOCKS) * 2
    parts_s = {"start": rates["start_seconds"], "products": flops / rates["gemm_flops_per_s"],
               "eigensolves": eigs * rates["eig_seconds"] * (d / rates["eig_width"]) ** 3,
               "comparisons": compares / rates["compares_per_s"]}
    return {**parts_s, "total": sum(parts_s.values())}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/scale.json"))
    parser.add_argument("--quick", action="store_true", help="one small case (a smoke run)")
    args = parser.parse_args(argv)
    cases = QUICK if args.quick else CASES
    rates = {d: machine_rates(d) for d in sorted({c[2] for c in cases})}
    results = []
    for groups, n, d, metrics, repeats in cases:
        with tempfile.TemporaryDirectory() as tmp:
            inputs = write_world(Path(tmp), groups, n, d)
            runs = [run_cli(["metrics", *inputs, "--metrics", metrics, "--json", str(Path(tmp) / "rows.json")])
                    for _ in range(repeats)]
        walls = [w for w, _ in runs]
        floor = floor_seconds(groups, n, d, metrics, rates[d])
        row = {"groups": groups, "n": n, "d": d, "metrics": metrics, "runs": walls, "median_s": statistics.median(walls),
               "peak_gb": max(m for _, m in runs) / 1e9, "floor": floor,
               "ratio_to_floor": statistics.median(walls) / floor["total"]}
        results.append(row)
        print(json.dumps(row), flush=True)
    info = {"machine": platform.processor() or platform.machine(), "cores": len(os.sched_getaffinity(0)),
            "python": platform.python_version(), "rates": rates}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"info": info, "results": results}, indent=1))
    args.out.with_suffix(".md").write_text(table(results, info))
    print(table(results, info))


def table(results: list[dict], info: dict) -> str:
    lines = [f"# `faceaudit metrics` at real sizes ({info['cores']} cores; fresh process per run)", "",
             "| groups x n per set | d | metrics | runs | median s | floor s | median / floor | peak GB |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        label = "default" if r["metrics"] == DEFAULT else ("default + fd, fd_unbiased" if r["metrics"] == WITH_FDS
                                                             else r["metrics"])
        lines.append(f"| {r['groups']} x {r['n']:,} | {r['d']} | {label} | {len(r['runs'])} | {r['median_s']:.1f} | "
                     f"{r['floor']['total']:.1f} | {r['ratio_to_floor']:.1f} | {r['peak_gb']:.2f} |")
    lines += ["", "Floor: start-up (`faceaudit metrics --help`) + the kernel, distance and scatter products at this "
              "machine's float64 GEMM rate + the Vendi eigensolves + one comparison pass per PRDC weighting, each "
              "rate measured in the same run:", ""]
    for d, rate in info["rates"].items():
        lines.append(f"- d = {d}: GEMM {rate['gemm_flops_per_s'] / 1e9:.0f} GFLOP/s, eigensolve "
                     f"{rate['eig_seconds'] * 1e3:.1f} ms, {rate['compares_per_s'] / 1e9:.2f} G comparisons/s, "
                     f"start-up {rate['start_seconds']:.1f} s")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
