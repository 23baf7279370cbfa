"""Time faceaudit's metric kernels against the peer libraries on the same inputs.

Each case draws seeded float64 embeddings once, runs faceaudit and every installed peer on
them in this one process, and records: median wall time of >= 5 runs after a warm-up
(compile time reported separately), peak resident memory above the baseline during the
call, the ratio to the fastest peer, and the relative disagreement of the values.

    python benchmarks/metrics.py --out benchmarks/results/metrics.json          # default grid
    python benchmarks/metrics.py --quick --out /tmp/quick.json                 # smoke run

The numbers in benchmarks/README.md come from this script on the development machine.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import os
import platform
import statistics
import threading
import time
from pathlib import Path

import jax
import numpy as np
import scipy.linalg

import faceaudit.core as fc
from faceaudit.files.io import atomic_write_text


# --- measurement helpers ---------------------------------------------------------------


def _rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _measure(fn, repeats: int):
    """(value, first-call seconds, median seconds, peak RSS increase in bytes)."""
    peak = [0]
    stop = threading.Event()

    def watch(base):
        while not stop.is_set():
            peak[0] = max(peak[0], _rss() - base)
            time.sleep(0.005)

    base = _rss()
    watcher = threading.Thread(target=watch, args=(base,), daemon=True)
    watcher.start()
    t0 = time.perf_counter()
    value = jax.block_until_ready(fn())
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    stop.set()
    watcher.join()
    med = statistics.median(times) if times else first
    return value, first, med, peak[0]


def _entry(value, first, med, peak, ref=None):
    out = {"seconds": med, "first_call_seconds": first, "compile_seconds": max(0.0, first - med), "peak_mb": peak / 2**20}
    if ref is not None:
        out["rel_diff"] = float(abs(float(value) - float(ref)) / abs(float(ref)))
    return out


def _data(n, d, seed):
    rng = np.random.default_rng(seed)
    spectrum = 1.0 / np.arange(1, d + 1) ** 0.7
    x = rng.standard_normal((n, d)) * np.sqrt(spectrum)
    y = rng.standard_normal((n, d)) * np.sqrt(spectrum[::-1] * 0.5 + spectrum * 0.5) + 0.01
    return x, y


def _summarise(case):
    ours = case["faceaudit"]["seconds"]
    peers = {k: v["seconds"] for k, v in case["peers"].items()}
    if peers:
        fastest = min(peers, key=peers.get)
        case["fastest_peer"] = fastest
        case["speedup_vs_fastest_peer"] = peers[fastest] / ours
    return case


# --- FD ----------------------------------------------------------------------------------


def bench_fd(n, d, repeats, seed=0):
    import torch
    from cleanfid.fid import frechet_distance as cleanfid_fd
    from torch_fidelity.metric_fid import fid_statistics_to_metric
    from torchmetrics.image.fid import _compute_fid

    x, y = _data(n, d, seed)
    case = {"metric": "fd", "n": n, "d": d, "peers": {}}
    v, *m = _measure(lambda: fc.frechet_distance(x, y), repeats)
    case["faceaudit"] = _entry(v, *m)
    ours = float(v)

    def torch_fidelity():
        s1 = {"mu": x.mean(0), "sigma": np.cov(x, rowvar=False)}
        s2 = {"mu": y.mean(0), "sigma": np.cov(y, rowvar=False)}
        return fid_statistics_to_metric(s1, s2, verbose=False)["frechet_inception_distance"]

    def torchmetrics():
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        return float(_compute_fid(xt.mean(0), torch.cov(xt.T), yt.mean(0), torch.cov(yt.T)))

    def clean_fid():
        return cleanfid_fd(x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False))

    slow = d >= 2048 and n >= 50000
    for name, fn in (("torch-fidelity", torch_fidelity), ("torchmetrics", torchmetrics), ("clean-fid", clean_fid)):
        v, *m = _measure(fn, 2 if slow or name == "clean-fid" else repeats)
        case["peers"][name] = _entry(v, *m, ref=ours)

    def floor():
        xc, yc = x - x.mean(0), y - y.mean(0)
        s1, s2 = xc.T @ xc / (n - 1), yc.T @ yc / (n - 1)
        return scipy.linalg.eigvalsh(s1 + s2, driver="evr", check_finite=False)[0]

    _, first, med, peak = _measure(floor, repeats)
    case["floor_seconds"] = med
    case["ratio_to_floor"] = case["faceaudit"]["seconds"] / med
    return _summarise(case)


# --- KID -------------------------------------------------------------------------------


def bench_kid(n, d, repeats, seed=0, subsets=100, size=1000):
    import torch
    from cleanfid.fid import kernel_distance
    from torchmetrics.image.kid import poly_mmd

    x, y = _data(n, d, seed)
    case = {"metric": "kid", "n": n, "d": d, "subsets": subsets, "subset_size": size, "peers": {}}
    key = jax.random.key(seed)
    v, *m = _measure(lambda: fc.kid(x, y, key=key, num_subsets=subsets, subset_size=size).mean, repeats)
    case["faceaudit"] = _entry(v, *m)

    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    def torchmetrics():
        gen = torch.Generator().manual_seed(seed)
        vals = [poly_mmd(xt[torch.randperm(n, generator=gen)[:size]], yt[torch.randperm(n, generator=gen)[:size]]) for _ in range(subsets)]
        return float(torch.stack(vals).mean())

    def clean_fid():
        np.random.seed(seed)  # clean-fid draws its subsets from numpy's global RNG
        return kernel_distance(x, y, num_subsets=subsets, max_subset_size=size)

    for name, fn in (("torchmetrics", torchmetrics), ("clean-fid", clean_fid)):
        v, *m = _measure(fn, repeats)
        case["peers"][name] = _entry(v, *m)
    # Agreement on identical subsets: faceaudit's MMD^2 against torchmetrics' poly_mmd.
    ix = np.random.default_rng(seed).choice(n, size, replace=False)
    iy = np.random.default_rng(seed + 1).choice(n, size, replace=False)
    ours = float(fc.mmd2(x[ix], y[iy]))
    case["agreement_same_subset_rel_diff"] = abs(ours - float(poly_mmd(xt[ix], yt[iy]))) / abs(ours)
    return _summarise(case)


# --- PRDC ------------------------------------------------------------------------------


def bench_prdc(n, d, repeats, seed=0):
    from prdc import compute_prdc

    x, y = _data(n, d, seed)
    case = {"metric": "prdc", "n": n, "d": d, "peers": {}}
    v, *m = _measure(lambda: fc.prdc(x, y, k=5), repeats)
    case["faceaudit"] = _entry(v.precision, *m)
    ours = {f: float(getattr(v, f)) for f in ("precision", "recall", "density", "coverage")}
    # prdc holds three n x n float64 matrices and a partitioned copy of one (n = 20,000:
    # ~13 GB); it runs where that fits in memory.
    peer_bytes = 4 * n * n * 8
    if peer_bytes < 0.8 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"):
        v, *m = _measure(lambda: compute_prdc(x, y, 5), max(2, repeats // 2))
        case["peers"]["prdc"] = _entry(v["precision"], *m, ref=ours["precision"])
        case["peers"]["prdc"]["max_abs_diff_all_fields"] = max(abs(ours[f] - float(v[f])) for f in ours)
    return _summarise(case)


# --- Vendi -----------------------------------------------------------------------------


def bench_vendi(n, d, repeats, seed=0):
    from vendi_score import vendi

    x, _ = _data(n, d, seed)
    case = {"metric": "vendi", "n": n, "d": d, "peers": {}}
    v, *m = _measure(lambda: fc.vendi_score(x), repeats)
    case["faceaudit"] = _entry(v, *m)
    ours = float(v)
    v, *m = _measure(lambda: vendi.score_dual(x), repeats)
    case["peers"]["vendi-score score_dual"] = _entry(v, *m, ref=ours)
    v, *m = _measure(lambda: vendi.score_X(x), 1 if n > 5000 else repeats)
    case["peers"]["vendi-score score_X"] = _entry(v, *m, ref=ours)
    case["speedup_vs_score_X"] = case["peers"]["vendi-score score_X"]["seconds"] / case["faceaudit"]["seconds"]
    return _summarise(case)


# --- per-group FD with bootstrap -------------------------------------------------------


def bench_group_fd(d, repeats, seed=0, groups=8, per_group=500, replicates=200, peer_sample=10):
    from torch_fidelity.metric_fid import fid_statistics_to_metric

    x, y = _data(groups * per_group, d, seed)
    labels = np.repeat(np.arange(groups), per_group)
    case = {"metric": "fd_by_group_bootstrap", "d": d, "groups": groups, "per_group": per_group, "replicates": replicates, "peers": {}}
    key = jax.random.key(seed)
    v, *m = _measure(lambda: fc.by_group("fd", x, labels, y, labels, key=key, num_bootstrap=replicates).estimate, max(1, repeats // 2))
    case["faceaudit"] = _entry(v[0], *m)
    rng = np.random.default_rng(seed)

    def one_peer_replicate():
        ix = rng.integers(0, per_group, per_group)
        iy = rng.integers(0, per_group, per_group)
        a, b = x[:per_group][ix], y[:per_group][iy]
        return fid_statistics_to_metric(
            {"mu": a.mean(0), "sigma": np.cov(a, rowvar=False)}, {"mu": b.mean(0), "sigma": np.cov(b, rowvar=False)}, verbose=False
        )["frechet_inception_distance"]

    # The loop over the peer is timed on `peer_sample` replicates and scaled to the
    # groups x replicates it would need (it would take hours at d = 2048).
    times = []
    for _ in range(peer_sample):
        t0 = time.perf_counter()
        one_peer_replicate()
        times.append(time.perf_counter() - t0)
    per_call = statistics.median(times)
    case["peers"]["torch-fidelity loop (extrapolated)"] = {
        "seconds": per_call * groups * (replicates + 1),
        "seconds_per_replicate": per_call,
        "timed_replicates": peer_sample,
    }
    ref = fid_statistics_to_metric(
        {"mu": x[:per_group].mean(0), "sigma": np.cov(x[:per_group], rowvar=False)},
        {"mu": y[:per_group].mean(0), "sigma": np.cov(y[:per_group], rowvar=False)},
        verbose=False,
    )["frechet_inception_distance"]
    case["group0_rel_diff_vs_torch_fidelity"] = abs(float(v[0]) - ref) / ref
    return _summarise(case)


GRIDS = {
    "default": {
        "fd": [(2000, 512), (10000, 512), (10000, 2048), (50000, 768)],
        "kid": [(10000, 512)],
        "prdc": [(10000, 2048), (20000, 2048)],
        "vendi": [(10000, 512)],
        "group_fd": [768, 2048],
    },
    "quick": {"fd": [(2000, 256)], "kid": [(2000, 128)], "prdc": [(2000, 256)], "vendi": [(2000, 128)], "group_fd": [256]},
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/metrics.json"))
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke test")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", default="fd,kid,prdc,vendi,group_fd",
                        help="comma-separated benchmarks to run; NAME:CASE picks one case, e.g. fd:50000x768 or group_fd:768")
    args = parser.parse_args(argv)
    grid = GRIDS["quick" if args.quick else "default"]
    only = {}
    for item in args.only.split(","):
        name, _, case = item.partition(":")
        only.setdefault(name, set()).add(case)

    def selected(name, cfg):
        label = "x".join(map(str, cfg)) if isinstance(cfg, tuple) else str(cfg)
        return name in only and ("" in only[name] or label in only[name])
    versions = {}
    for pkg in ("jax", "jaxlib", "numpy", "scipy", "torch", "torchmetrics", "torch-fidelity", "clean-fid", "prdc", "vendi-score"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    results = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "jax_backend": jax.default_backend()}, "versions": versions, "cases": []}
    runners = {
        "fd": lambda c: bench_fd(*c, args.repeats),
        "kid": lambda c: bench_kid(*c, args.repeats),
        "prdc": lambda c: bench_prdc(*c, args.repeats),
        "vendi": lambda c: bench_vendi(*c, args.repeats),
        "group_fd": lambda c: bench_group_fd(c, args.repeats, per_group=100 if args.quick else 500, replicates=20 if args.quick else 200),
    }
    for name in ("fd", "kid", "prdc", "vendi", "group_fd"):
        for cfg in grid[name]:
            if not selected(name, cfg):
                continue
            case = runners[name](cfg)
            results["cases"].append(case)
            print(json.dumps({k: v for k, v in case.items() if k not in ("peers",)}, default=float), flush=True)
            atomic_write_text(args.out, json.dumps(results, indent=2, default=float))  # keep partial results
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
