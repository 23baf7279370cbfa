"""faceaudit's JAX core against plain PyTorch on the same device, same inputs, one process.

The table of issue 16 as a script: FD, KID, PRDC, Vendi and the per-group FD bootstrap at
the large sizes a GPU is for, plus rows at an audit's real per-group sizes (n = 100 to
1,000 per group, d = 512 and 768), where dispatch and compile overheads dominate. Each peer
is the code a user would otherwise write in ten lines of torch (or torchmetrics' own
function), in float64 on the same device. faceaudit gets float32 inputs (upcast inside)
and returns float64; every value is compared with a float64 numpy/scipy reference.

Reported per case: median of ``--repeats`` (>= 5) calls after the first, the spread
(min, max), the first call (compile included), the relative difference to the reference,
and, for FD, the floor (two covariances and one ``eigvalsh`` in torch on the device).

    JAX_PLATFORMS=cuda python benchmarks/gpu.py --out benchmarks/results/gpu.json   # an H200: ~5 min
    python benchmarks/gpu.py --quick --out /tmp/gpu-quick.json                      # CPU check, ~1 min

Threads: the JSON records torch's intra-op threads, the BLAS pools threadpoolctl sees and
XLA's flags, so CPU rows can be read fairly.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import os
import platform
import statistics
import time
from pathlib import Path

import jax
import numpy as np
import scipy.linalg

import faceaudit.core as fc
from faceaudit.files.io import atomic_write_text


def _device(torch) -> str:
    return "cuda" if jax.default_backend() == "gpu" and torch.cuda.is_available() else "cpu"


def _sync(torch, device):
    if device == "cuda":
        torch.cuda.synchronize()


def _time(fn, repeats, sync):
    """(value, first-call s, median s, [min, max] s) of ``fn``."""
    t0 = time.perf_counter()
    value = jax.block_until_ready(fn())
    sync()
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        sync()
        times.append(time.perf_counter() - t0)
    return value, first, statistics.median(times), [min(times), max(times)]


def _entry(value, first, median, spread, reference):
    value = float(np.asarray(value))
    return {"seconds": median, "spread_seconds": spread, "first_call_seconds": first, "value": value,
            "rel_diff_to_float64_reference": abs(value - reference) / max(abs(reference), 1e-300)}


def _data(n, d, seed):
    rng = np.random.default_rng(seed)
    spectrum = 1.0 / np.arange(1, d + 1) ** 0.7
    x = rng.standard_normal((n, d)) * np.sqrt(spectrum)
    y = rng.standard_normal((n, d)) * np.sqrt(spectrum[::-1] * 0.5 + spectrum * 0.5) + 0.01
    return x.astype(np.float32), y.astype(np.float32)


def _reference_fd(x, y):
    """FD in float64 numpy by a route of its own: with fewer rows than dimensions the cross
    term is the nuclear norm of the centred cross product (sqrtm of a singular covariance
    loses digits); otherwise the eigenvalues of S1^(1/2) S2 S1^(1/2) with an eigh root."""
    x, y = x.astype(np.float64), y.astype(np.float64)
    xc, yc = x - x.mean(0), y - y.mean(0)
    n, m, d = len(x), len(y), x.shape[1]
    s1_trace, s2_trace = (xc * xc).sum() / (n - 1), (yc * yc).sum() / (m - 1)
    if min(n, m) <= d:
        cross = np.linalg.svd(xc @ yc.T, compute_uv=False).sum() / np.sqrt((n - 1) * (m - 1))
    else:
        vals, vecs = np.linalg.eigh(xc.T @ xc / (n - 1))
        root = (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T
        cross = np.sqrt(np.clip(np.linalg.eigvalsh(root @ (yc.T @ yc / (m - 1)) @ root), 0, None)).sum()
    gap = x.mean(0) - y.mean(0)
    return float(gap @ gap + s1_trace + s2_trace - 2 * cross)


def _torch_fd(torch, a, b):
    from torchmetrics.image.fid import _compute_fid

    return _compute_fid(a.mean(0), torch.cov(a.T), b.mean(0), torch.cov(b.T))


def bench_fd(torch, device, n, d, repeats):
    x, y = _data(n, d, 0)
    xt, yt = (torch.from_numpy(a).to(device, torch.float64) for a in (x, y))
    xj, yj = jax.device_put(x), jax.device_put(y)
    sync = lambda: _sync(torch, device)  # noqa: E731
    ref = _reference_fd(x, y)
    case = {"case": "fd", "n": n, "d": d}
    case["faceaudit"] = _entry(*_time(lambda: fc.frechet_distance(xj, yj), repeats, sync), ref)
    case["torchmetrics _compute_fid"] = _entry(*_time(lambda: _torch_fd(torch, xt, yt), repeats, sync), ref)

    def floor():
        return torch.linalg.eigvalsh(torch.cov(xt.T) + torch.cov(yt.T))[0]

    _, first, median, spread = _time(floor, repeats, sync)
    case["floor"] = {"seconds": median, "spread_seconds": spread, "what": "two covariances + one eigvalsh (torch)"}
    return case


def bench_kid(torch, device, n, d, repeats, subsets=100, size=1000):
    from torchmetrics.image.kid import poly_mmd

    x, y = _data(n, d, 1)
    key = jax.random.key(0)
    xj, yj = jax.device_put(x), jax.device_put(y)
    sync = lambda: _sync(torch, device)  # noqa: E731
    xt, yt = (torch.from_numpy(a).to(device, torch.float64) for a in (x, y))
    gen = torch.Generator(device="cpu").manual_seed(0)
    picks = [(torch.randperm(n, generator=gen)[:size].to(device), torch.randperm(n, generator=gen)[:size].to(device))
             for _ in range(subsets)]

    def torch_loop():
        return torch.stack([poly_mmd(xt[i], yt[j]) for i, j in picks]).mean()

    ours = float(fc.kid(xj, yj, key=key, num_subsets=subsets, subset_size=size).mean)
    case = {"case": "kid", "n": n, "d": d, "subsets": subsets, "subset_size": size,
            "note": "each draws its own random subsets: the values agree to the subset noise (KID's accuracy "
                    "against float64 is in tests/core)"}
    case["faceaudit"] = _entry(*_time(lambda: fc.kid(xj, yj, key=key, num_subsets=subsets, subset_size=size).mean,
                                      repeats, sync), ours)
    case["torchmetrics poly_mmd loop"] = _entry(*_time(torch_loop, repeats, sync), ours)
    return case


def bench_prdc(torch, device, n, d, repeats, k=5, block=4096):
    x, y = _data(n, d, 2)
    xj, yj = jax.device_put(x), jax.device_put(y)
    xt, yt = (torch.from_numpy(a).to(device, torch.float64) for a in (x, y))
    sync = lambda: _sync(torch, device)  # noqa: E731

    def torch_prdc():  # the prdc package's algorithm in torch: full distance matrices, kthvalue radii
        rr = torch.cdist(xt, xt)
        ff = torch.cdist(yt, yt)
        rf = torch.cdist(xt, yt)
        r_real = rr.kthvalue(k + 1, dim=1).values
        r_fake = ff.kthvalue(k + 1, dim=1).values
        precision = (rf < r_real[:, None]).any(0).double().mean()
        recall = (rf < r_fake[None, :]).any(1).double().mean()
        density = (rf < r_real[:, None]).double().sum(0).mean() / k
        coverage = (rf.min(1).values < r_real).double().mean()
        return torch.stack([precision, recall, density, coverage])

    peer = torch_prdc().cpu().numpy()
    case = {"case": "prdc", "n": n, "d": d, "k": k, "reference": "the torch implementation in float64 (all four)"}
    ours = lambda: jax.numpy.stack(list(fc.prdc(xj, yj, k=k, block_size=block)))  # noqa: E731
    value, first, median, spread = _time(ours, repeats, sync)
    case["faceaudit"] = {"seconds": median, "spread_seconds": spread, "first_call_seconds": first,
                         "max_abs_diff": float(np.abs(np.asarray(value) - peer).max())}
    _, first, median, spread = _time(torch_prdc, repeats, sync)
    case["torch cdist + kthvalue"] = {"seconds": median, "spread_seconds": spread, "first_call_seconds": first}
    return case


def bench_vendi(torch, device, n, d, repeats):
    x, _ = _data(n, d, 3)
    xj = jax.device_put(x)
    xt = torch.from_numpy(x).to(device, torch.float64)
    sync = lambda: _sync(torch, device)  # noqa: E731

    def torch_dual():  # cosine kernel: the nonzero spectrum of K / n is that of X^T X / n (d x d)
        z = torch.nn.functional.normalize(xt, dim=1)
        w = torch.linalg.eigvalsh(z.T @ z / n).clamp_min(0)
        w = w[w > 0]
        return torch.exp(-(w * torch.log(w)).sum())

    z = x.astype(np.float64)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    w = np.clip(scipy.linalg.eigvalsh(z.T @ z / n), 0, None)
    w = w[w > 0]
    ref = float(np.exp(-(w * np.log(w)).sum()))
    case = {"case": "vendi q=1 cosine", "n": n, "d": d}
    case["faceaudit"] = _entry(*_time(lambda: fc.vendi_score(xj), repeats, sync), ref)
    case["torch dual eigvalsh"] = _entry(*_time(torch_dual, repeats, sync), ref)
    return case


def bench_group_fd(torch, device, groups, per_group, d, repeats, replicates=0, peer_sample=10):
    """Per-group FD with its interval: the jackknife (the measure stage's default) or
    ``replicates`` bootstrap draws; the peer is a torchmetrics loop over the same number
    of evaluations (timed on ``peer_sample`` and scaled)."""
    x, y = _data(groups * per_group, d, 4)
    labels = np.repeat(np.arange(groups), per_group)
    key = jax.random.key(0)
    sync = lambda: _sync(torch, device)  # noqa: E731
    interval = "basic" if replicates else "jackknife"

    def ours():
        return fc.by_group("fd", x, labels, y, labels, key=key, interval=interval, num_bootstrap=replicates).estimate

    value, first, median, spread = _time(ours, max(1, repeats // 2) if replicates >= 100 else repeats, sync)
    # Evaluations per group: the estimate, 20 jackknife blocks per set, and the bootstrap replicates.
    evaluations = groups * (1 + 40 + replicates)
    xt, yt = (torch.from_numpy(a).to(device, torch.float64) for a in (x[:per_group], y[:per_group]))
    gen = torch.Generator(device="cpu").manual_seed(0)

    def one_peer_evaluation():
        i = torch.randint(0, per_group, (per_group,), generator=gen).to(device)
        j = torch.randint(0, per_group, (per_group,), generator=gen).to(device)
        return _torch_fd(torch, xt[i], yt[j])

    one_peer_evaluation()
    sync()
    times = []
    for _ in range(peer_sample):
        t0 = time.perf_counter()
        one_peer_evaluation()
        sync()
        times.append(time.perf_counter() - t0)
    ref = _reference_fd(x[:per_group], y[:per_group])
    return {"case": "per-group fd", "groups": groups, "per_group": per_group, "d": d, "interval": interval,
            "replicates": replicates, "evaluations": evaluations,
            "faceaudit": {"seconds": median, "spread_seconds": spread, "first_call_seconds": first,
                          "group0_rel_diff_to_float64_reference": abs(float(value[0]) - ref) / ref},
            "torchmetrics loop (extrapolated)": {"seconds": statistics.median(times) * evaluations,
                                                 "seconds_per_evaluation": statistics.median(times),
                                                 "timed_evaluations": peer_sample}}


GRIDS = {
    "gpu": {"fd": [(50000, 2048)], "kid": [(50000, 2048)], "prdc": [(20000, 2048)], "vendi": [(50000, 2048)],
            "group_fd": [(8, 500, 2048, 200)]},
    "quick": {"fd": [(2000, 256)], "kid": [(2000, 128)], "prdc": [(1000, 128)], "vendi": [(2000, 128)],
              "group_fd": [(4, 100, 64, 20)]},
    # An audit's real per-group sizes, on whatever device runs the script.
    "audit": {"group_fd": [(8, n, d, 0) for d in (512, 768) for n in (100, 300, 1000)] + [(8, 200, 128, 100)]},
}


def environment(torch) -> dict:
    try:
        import threadpoolctl

        pools = [(p["internal_api"], p["num_threads"]) for p in threadpoolctl.threadpool_info()]
    except ImportError:
        pools = "threadpoolctl not installed"
    return {
        "jax_backend": jax.default_backend(), "jax_devices": [str(dv) for dv in jax.devices()],
        "torch_device": torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or platform.machine(),
        "versions": {p: md.version(p) for p in ("jax", "jaxlib", "torch", "torchmetrics", "numpy", "scipy")},
        "torch_threads": torch.get_num_threads(), "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "blas_pools": pools,
        "cpu_count": os.cpu_count(),
    }


def main(args) -> dict:
    import torch

    device = _device(torch)
    result = {"environment": environment(torch), "device": device, "repeats": args.repeats, "cases": []}
    grids = [GRIDS["quick"]] if args.quick else [GRIDS["gpu"] if device == "cuda" else {}]
    if args.audit_sizes:
        grids.append(GRIDS["audit"])
    runners = {"fd": lambda c: bench_fd(torch, device, *c, args.repeats),
               "kid": lambda c: bench_kid(torch, device, *c, args.repeats),
               "prdc": lambda c: bench_prdc(torch, device, *c, args.repeats),
               "vendi": lambda c: bench_vendi(torch, device, *c, args.repeats),
               "group_fd": lambda c: bench_group_fd(torch, device, *c[:3], args.repeats, replicates=c[3])}
    for grid in grids:
        for name, cases in grid.items():
            for c in cases:
                case = runners[name](c)
                result["cases"].append(case)
                print(json.dumps(case), flush=True)
                if args.out:  # after every case: a run stopped by a time limit keeps what it measured
                    atomic_write_text(Path(args.out), json.dumps(result, indent=2) + "\n")
    return result


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes: checks the script on a CPU")
    p.add_argument("--audit-sizes", action="store_true", help="also the per-group rows at n = 100..1,000")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default="")
    return p.parse_args(argv)


if __name__ == "__main__":
    main(parse())
