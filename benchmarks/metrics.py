"""Time faceaudit's metric kernels against the peer libraries on the same inputs.

Each case draws seeded float64 embeddings once, runs faceaudit and every installed peer on
them in this one process, and records for each: the first call (compilation included),
the median of >= 5 timed runs after it with their min, max and relative IQR, the peak
resident memory above the baseline (one way for every library), the ratio to the fastest
peer, and the relative disagreement of the values. prdc also runs in the float32 setting
its docstring asks for. The threads every library computes with are recorded beside the
versions.

    python benchmarks/metrics.py --out benchmarks/results/metrics.json          # default grid
    python benchmarks/metrics.py --quick --out /tmp/quick.json                 # smoke run
    python benchmarks/metrics.py --table benchmarks/results/metrics.json       # the README table

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
    """(value, first-call seconds, every timed run's seconds, peak RSS increase in bytes).

    Memory is measured one way for every library: the peak resident set size above the
    baseline, sampled every 5 ms during the first call and the timed runs (it sees torch's,
    BLAS's and XLA's allocations alike; ``tracemalloc`` sees only Python's)."""
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
    return value, first, times or [first], peak[0]


def _entry(value, first, times, peak, ref=None):
    """The median of the timed runs, their spread (min, max, relative IQR), the first call
    and the peak memory of one measured call."""
    med = statistics.median(times)
    q1, q3 = np.percentile(times, [25, 75])
    out = {"seconds": med, "runs": len(times), "min_seconds": min(times), "max_seconds": max(times),
           "iqr_over_median": float((q3 - q1) / med), "first_call_seconds": first,
           "compile_seconds": max(0.0, first - med), "peak_mb": peak / 2**20}
    if ref is not None:
        out["rel_diff"] = float(abs(float(value) - float(ref)) / abs(float(ref)))
    return out


def _threads() -> dict:
    """The threads each library computes with in this process: a ratio means little unless
    both sides had the same cores. faceaudit's host kernels use the BLAS below (KID and
    PRDC: one single-threaded BLAS per core); XLA's CPU client runs one Eigen pool of one
    thread per core (it has no public query; XLA_FLAGS is recorded)."""
    import torch
    from threadpoolctl import threadpool_info

    from faceaudit.core._linalg import host_cores

    return {
        "cores_available": host_cores(),
        "blas": [{k: pool.get(k) for k in ("user_api", "internal_api", "num_threads", "version", "filepath")}
                 for pool in threadpool_info()],
        "torch_intra_op": torch.get_num_threads(),
        "torch_inter_op": torch.get_num_interop_threads(),
        "faceaudit_host_map_workers": host_cores(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")},
    }


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

    case["floor"] = _entry(*_measure(floor, repeats))
    case["ratio_to_floor"] = case["faceaudit"]["seconds"] / case["floor"]["seconds"]
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
        # prdc's docstring asks for float32 features (its distances are then float32);
        # float64 is the setting that computes what faceaudit computes. Both are timed.
        for name, dtype in (("prdc", np.float64), ("prdc float32", np.float32)):
            xs, ys = x.astype(dtype), y.astype(dtype)
            v, *m = _measure(lambda: compute_prdc(xs, ys, 5), max(2, repeats // 2))
            case["peers"][name] = _entry(v["precision"], *m, ref=ours["precision"])
            case["peers"][name]["max_abs_diff_all_fields"] = max(abs(ours[f] - float(v[f])) for f in ours)
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
    scale = groups * (replicates + 1)
    case["peers"]["torch-fidelity loop (extrapolated)"] = {
        "seconds": per_call * scale,
        "seconds_per_replicate": per_call,
        "min_seconds": min(times) * scale,
        "max_seconds": max(times) * scale,
        "timed_replicates": peer_sample,
    }
    ref = fid_statistics_to_metric(
        {"mu": x[:per_group].mean(0), "sigma": np.cov(x[:per_group], rowvar=False)},
        {"mu": y[:per_group].mean(0), "sigma": np.cov(y[:per_group], rowvar=False)},
        verbose=False,
    )["frechet_inception_distance"]
    case["group0_rel_diff_vs_torch_fidelity"] = abs(float(v[0]) - ref) / ref
    return _summarise(case)


# --- the README table ------------------------------------------------------------------


def _seconds(entry) -> str:
    """``median (min-max)`` of the timed runs."""
    low, high = entry.get("min_seconds"), entry.get("max_seconds")
    spread = f" ({low:.3g}-{high:.3g})" if low is not None and high is not None else ""
    return f"{entry['seconds']:.3g}{spread}"


def _label(case) -> str:
    if case["metric"] == "fd_by_group_bootstrap":
        return f"per-group FD, {case['groups']} x {case['per_group']}, {case['replicates']} bootstrap"
    return {"fd": "FD", "kid": f"KID {case.get('subsets')} x {case.get('subset_size')}", "prdc": "PRDC k = 5",
            "vendi": "Vendi q = 1"}[case["metric"]]


def markdown_table(results: dict) -> str:
    """One row per case: faceaudit and every peer as ``median (min-max)`` seconds, first
    call and peak memory measured the same way for each, the speed-up over the fastest
    peer, the floor and the agreement."""
    lines = ["| case | n | d | faceaudit s | first call s | peak MB | fastest peer: s | first call s | peak MB "
             "| speed-up | other peers s | floor s (faceaudit / floor) | agreement (rel.) |",
             "|" + "---|" * 13]
    for case in results["cases"]:
        ours, peers = case["faceaudit"], case["peers"]
        fastest = case.get("fastest_peer")
        best = peers.get(fastest, {})
        others = ", ".join(f"{name} {_seconds(v)}" for name, v in peers.items() if name != fastest)
        agreement = [f"{v['rel_diff']:.0e}" for v in peers.values() if "rel_diff" in v]
        agreement += [f"{case[k]:.0e}" for k in ("agreement_same_subset_rel_diff", "group0_rel_diff_vs_torch_fidelity")
                      if k in case]
        floor = case.get("floor")
        lines.append("| " + " | ".join([
            _label(case), f"{case['n']:,}" if case.get("n") else "", str(case["d"]), _seconds(ours),
            f"{ours['first_call_seconds']:.3g}", f"{ours['peak_mb']:.0f}",
            f"{fastest} {_seconds(best)}" if fastest else "", f"{best['first_call_seconds']:.3g}" if "first_call_seconds" in best else "",
            f"{best['peak_mb']:.0f}" if "peak_mb" in best else "",
            f"**{case['speedup_vs_fastest_peer']:.2f}x**" if fastest else "", others,
            f"{_seconds(floor)} ({ours['seconds'] / floor['seconds']:.2f})" if floor else "",
            ", ".join(agreement)]) + " |")
    threads = results["machine"].get("threads", {})
    blas = "; ".join(f"{b['internal_api']} {b['num_threads']}" for b in threads.get("blas", []))
    lines.append("")
    lines.append(f"Threads: {threads.get('cores_available')} cores; BLAS pools {blas}; torch intra-op "
                 f"{threads.get('torch_intra_op')}, inter-op {threads.get('torch_inter_op')}; XLA one pool per core.")
    return "\n".join(lines)


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
    parser.add_argument("--table", type=Path, help="print the markdown table of an existing results JSON and stop")
    parser.add_argument("--only", default="fd,kid,prdc,vendi,group_fd",
                        help="comma-separated benchmarks to run; NAME:CASE picks one case, e.g. fd:50000x768 or group_fd:768")
    args = parser.parse_args(argv)
    if args.table:
        print(markdown_table(json.loads(args.table.read_text())))
        return
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
    results = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "jax_backend": jax.default_backend(),
                           "threads": _threads()},
               "versions": versions, "cases": []}
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
    print(markdown_table(results))


if __name__ == "__main__":
    main()
