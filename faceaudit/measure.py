"""Distributional metrics of one real/generated pair of embedding sets, overall and per group.

The labelled layer over ``faceaudit.core``: reads arrays and labels from files with errors
that name the file, runs the requested metrics, and returns a plain, JSON-ready report
(also the data behind the ``faceaudit metrics`` table).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable
from pathlib import Path

import jax
import numpy as np

from faceaudit import core
from faceaudit.core import _validate

# name -> (description, needs groups?) ; order is the table's order
METRICS: dict[str, str] = {
    "fd": "Frechet distance (raw)",
    "fd_unbiased": "Frechet distance, finite-sample bias removed",
    "kid": "KID: cubic-kernel MMD^2 over subsets (x1e3 in the table)",
    "precision": "share of generated faces on the real manifold",
    "recall": "share of real faces on the generated manifold",
    "density": "how densely generated faces sit in real neighbourhoods",
    "coverage": "share of real neighbourhoods holding a generated face",
    "vendi": "Vendi score of the generated set (effective number of distinct faces)",
}
DEFAULT_METRICS = tuple(METRICS)
_PER_GROUP_NAME = {"kid": "mmd2"}  # per group, KID's estimand is the all-sample MMD^2


@dataclasses.dataclass(frozen=True)
class MetricsRequest:
    metrics: tuple[str, ...] = DEFAULT_METRICS
    num_bootstrap: int = 200
    seed: int = 0
    confidence: float = 0.95
    k: int = 5
    kid_subsets: int = 100
    kid_subset_size: int = 1000

    def __post_init__(self):
        unknown = [m for m in self.metrics if m not in METRICS]
        if unknown:
            raise ValueError(f"unknown metric(s) {unknown}; choose from {list(METRICS)}")
        if not self.metrics:
            raise ValueError("no metrics requested")
        _validate.positive_int(self.num_bootstrap, "bootstrap", minimum=0)
        if not 0 < self.confidence < 1:
            raise ValueError(f"confidence must lie in (0, 1), got {self.confidence}")


def load_embeddings(path: str | Path) -> np.ndarray:
    """Load an ``(n, d)`` float array from ``.npy``; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"embeddings file not found: {path}")
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise ValueError(f"{path} is not a readable .npy array: {err}") from None
    return np.asarray(_validate.features(array, str(path)))


def load_labels(path: str | Path, n: int, *, of: str) -> np.ndarray:
    """Group labels, one per row of the embeddings ``of``: ``.npy`` or text (one per line)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"group labels file not found: {path}")
    if path.suffix == ".npy":
        labels = np.load(path, allow_pickle=False)
    else:
        lines = [line.strip() for line in path.read_text().splitlines()]
        while lines and not lines[-1]:  # a trailing newline is not a label
            lines.pop()
        if "" in lines:
            raise ValueError(f"{path}: empty label on line {lines.index('') + 1}")
        labels = np.array(lines, dtype=object)
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] != n:
        raise ValueError(f"{path} has {labels.shape[0] if labels.ndim else 0} labels but {of} has {n} rows")
    return labels


def _scalar(v) -> float:
    return float(np.asarray(v))


def compute(
    real: np.ndarray,
    fake: np.ndarray,
    request: MetricsRequest,
    *,
    real_groups=None,
    fake_groups=None,
    progress: Callable[[Iterable], Iterable] = lambda it: it,
) -> dict:
    """Overall metrics and, when labels are given, per-group values with intervals."""
    real = np.asarray(_validate.features(real, "real"))
    fake = np.asarray(_validate.features(fake, "fake"))
    _validate.same_dim(jax.numpy.asarray(real), jax.numpy.asarray(fake), ("real", "fake"))
    if (real_groups is None) != (fake_groups is None):
        raise ValueError("pass group labels for both sets, or for neither")
    key = jax.random.key(request.seed)
    overall: dict[str, float] = {}
    prdc_cache = None
    for name in progress(request.metrics):
        if name in ("fd", "fd_unbiased"):
            overall[name] = _scalar(core.frechet_distance(real, fake, unbiased=name == "fd_unbiased"))
        elif name == "kid":
            size = min(request.kid_subset_size, len(real), len(fake))
            result = core.kid(real, fake, key=key, num_subsets=request.kid_subsets, subset_size=size)
            overall["kid"], overall["kid_std"] = _scalar(result.mean), _scalar(result.std)
        elif name in ("precision", "recall", "density", "coverage"):
            if prdc_cache is None:
                prdc_cache = core.prdc(real, fake, k=request.k)
            overall[name] = _scalar(getattr(prdc_cache, name))
        elif name == "vendi":
            overall[name] = _scalar(core.vendi_score(fake))
    report = {
        "n_real": int(len(real)),
        "n_fake": int(len(fake)),
        "dim": int(real.shape[1]),
        "seed": request.seed,
        "num_bootstrap": request.num_bootstrap,
        "confidence": request.confidence,
        "overall": overall,
        "groups": {},
    }
    if real_groups is None:
        return report
    for name in progress(request.metrics):
        metric = _PER_GROUP_NAME.get(name, name)
        gkey = jax.random.fold_in(key, list(METRICS).index(name))
        if metric == "vendi":
            est = core.by_group("vendi", fake, fake_groups, key=gkey, confidence=request.confidence)
        else:
            options = {"k": request.k} if metric in ("precision", "recall", "density", "coverage") else {}
            est = core.by_group(
                metric, real, real_groups, fake, fake_groups, key=gkey, confidence=request.confidence, **options,
            )
        report["groups"][name] = [
            {
                "group": g,
                "n_real": int(est.n_x[i]) if metric != "vendi" else None,
                "n_fake": int(est.n_y[i]) if metric != "vendi" else int(est.n_x[i]),
                "value": _scalar(est.estimate[i]),
                "low": _none_if_nan(est.low[i]),
                "high": _none_if_nan(est.high[i]),
            }
            for i, g in enumerate(est.groups)
        ]
    return report


def _none_if_nan(v):
    v = _scalar(v)
    return None if math.isnan(v) else v
